"""The training configuration: one flag per dataclass field with one default and one help, the
flags that were never settable reach the run, and the command line's defaults stay those
that scripts, tests and the dashboard rely on."""

import re
from dataclasses import fields

import pytest
from test_train import TINY

from core.config import (
    MODEL_HELP,
    SET_BY_RUN,
    ConfigError,
    RunOptions,
    TrainArgs,
    TrainConfig,
    build_parser,
    flag_name,
)
from core.model import ModelArgs
from core.runs import SWITCHES, TRAIN_FLAGS
from core.trainrun import build_run

# the command line's defaults before it was generated from the dataclasses (a field that is
# None here had no default: absent means "not given")
CLI_DEFAULTS = {
    "val_size": 2000, "batch_size": 128, "lr": 1e-3, "warmup": 300, "clip": 1.0, "beta": 0.5,
    "kl_anneal": 2000, "free_bits": 0.1, "cond_drop": 0.15, "uncond_drop": 0.0,
    "target_noise": 0.0, "n_fourier": 16, "seed": 0, "max_len": 72, "d_model": 256,
    "n_heads": 4, "n_layers": 4, "d_ff": 1024, "enc_d_model": 128, "enc_heads": 4,
    "enc_layers": 2, "enc_d_ff": 512, "latent_dim": 16, "activation": "relu", "log_every": 50,
    "eval_every": 500, "save_every": 5.0, "backend": "ring", "feedback": False,
    "resume": False, "overwrite": False, "distributed": False, "max_steps": None,
    "max_minutes": None, "limit": None, "properties": None, "init_from": None,
}  # fmt: skip


def parser_flags() -> dict[str, object]:
    """Every flag of ``core.train`` (without --help) -> its argparse action."""
    return {
        action.option_strings[0]: action
        for action in build_parser()._actions
        if action.option_strings and action.dest != "help"
    }


def test_every_field_has_exactly_one_flag_with_help():
    model = [f.name for f in fields(ModelArgs) if f.name not in SET_BY_RUN]
    names = [f.name for cls in (RunOptions, TrainArgs) for f in fields(cls)] + model
    assert len(names) == len(set(names))  # no field in two dataclasses: one flag, one default
    flags = parser_flags()
    assert sorted(flags) == sorted(flag_name(n) for n in names)
    for flag, action in flags.items():
        assert action.help and len(action.help) > 8, flag
    assert set(MODEL_HELP) | set(SET_BY_RUN) == {f.name for f in fields(ModelArgs)}


def test_flags_that_had_none_now_reach_the_configuration():
    argv = ["--out", "ck", "--weight-decay", "0.05", "--min-lr-ratio", "0.2", "--prop-weight",
            "0.3", "--norm-eps", "1e-6"]  # fmt: skip
    config = TrainConfig.from_flags(vars(build_parser().parse_args(argv)))
    assert (config.train.weight_decay, config.train.min_lr_ratio) == (0.05, 0.2)
    assert config.train.prop_weight == 0.3 and config.model.norm_eps == 1e-6
    assert config.flags == {"out": "ck", "weight_decay": 0.05, "min_lr_ratio": 0.2,
                            "prop_weight": 0.3, "norm_eps": 1e-6}  # fmt: skip


def test_command_line_defaults_are_unchanged():
    config = TrainConfig.from_flags(vars(build_parser().parse_args(["--out", "ck"])))
    values = {**vars(config.model), **vars(config.train), **vars(config.run)}
    for name, default in CLI_DEFAULTS.items():
        assert values[name] == default, name
    assert config.train.total_steps == 10_000 and config.model.properties == ["logp", "tpsa"]
    assert config.run.data.endswith("data/moses_subset.parquet")


@pytest.mark.parametrize(
    "argv, total", [([], 10_000), (["--max-steps", "12"], 12), (["--max-steps", "12",
                    "--total-steps", "30"], 30), (["--total-steps", "30"], 30)],
)  # fmt: skip
def test_schedule_length_defaults_to_max_steps(argv, total):
    config = TrainConfig.from_flags(vars(build_parser().parse_args(["--out", "ck", *argv])))
    assert config.train.total_steps == total


def test_the_dashboard_only_sets_flags_that_exist():
    flags = parser_flags()
    assert {flag_name(n) for n in TRAIN_FLAGS | SWITCHES} <= set(flags)


def test_from_dict_ignores_unknown_keys_and_fills_missing_ones():
    targs = TrainArgs.from_dict({"lr": 3e-4, "retired_flag": 1})
    assert targs.lr == 3e-4 and targs.weight_decay == TrainArgs().weight_decay


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "--batch-size must be positive"),
        (["--latent-dim", "-1"], "--latent-dim must be positive"),
        (["--max-steps", "0"], "--max-steps must be positive"),
        (["--lr", "2"], "--lr must be in (0, 1)"),
        (["--cond-drop", "1"], "--cond-drop in [0, 1)"),
    ],
)
def test_check_names_the_flag(argv, message):
    config = TrainConfig.from_flags(vars(build_parser().parse_args(["--out", "ck", *argv])))
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.check()


def test_new_flags_reach_the_run(tmp_path):
    """--weight-decay, --min-lr-ratio, --prop-weight, --norm-eps in a built run."""
    argv = ["--out", str(tmp_path / "ck"), "--weight-decay", "0.05", "--min-lr-ratio", "0.2",
            "--prop-weight", "0.3", "--norm-eps", "1e-6", "--max-steps", "4", *TINY]  # fmt: skip
    run = build_run(TrainConfig.from_flags(vars(build_parser().parse_args(argv))))
    assert (run.targs.weight_decay, run.targs.min_lr_ratio, run.targs.prop_weight) == (
        0.05, 0.2, 0.3,
    )  # fmt: skip
    assert run.optimizer.weight_decay == 0.05
    assert run.bundle.args.norm_eps == 1e-6 and run.bundle.args.d_model == 32
    assert run.targs.total_steps == 4
