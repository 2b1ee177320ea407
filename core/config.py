"""Configuration of a training run, all of it in this single file, and the command line of
``python -m core.train``, generated from it.

- ``RunOptions``: what one invocation does (data, checkpoint folder, when to stop, how often
  to log, validate and save); not recorded.
- ``TrainArgs``: how the model is optimised; recorded in ``state.json``, so ``--resume`` goes
  on with the same values (a new ``--total-steps`` excepted).
- ``core.model.ModelArgs``: the model's shape, recorded in ``config.json``; its help texts are
  ``MODEL_HELP`` here, its defaults its own. A run sets ``vocab_size`` from the tokenizer and
  ``properties`` from ``--properties``; ``--resume`` and ``--init-from`` keep the checkpoint's.

Every field has one typed default and one help text, and ``build_parser`` turns each into a
flag (``batch_size`` -> ``--batch-size``): a field cannot exist without a flag or with a
second default. Flags left out of a command line are absent from the parsed namespace, so
``TrainConfig.from_flags`` fills them in from the dataclasses and knows which were given.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields

from core.chem import DESCRIPTORS
from core.cli import OneLineParser
from core.data import DEFAULT_DATA
from core.distributed import BACKENDS
from core.errors import UserError
from core.model import ModelArgs


class ConfigError(UserError, ValueError):
    """A flag value that cannot be used (out of range, an unknown property...)."""


def option(default: object, help: str, **flag: object):
    """A dataclass field with a default and its flag's help (and argparse extras: ``choices``).

    >>> option(0.1, "free nats per latent dimension").metadata["help"]
    'free nats per latent dimension'
    """
    return field(default=default, metadata={"help": help, **flag})


class FromDict:
    """``from_dict`` for the configuration dataclasses."""

    @classmethod
    def from_dict(cls, params: Mapping[str, object]):
        """Build from a dict, ignoring unknown keys (so older ``state.json`` files still load).

        >>> TrainArgs.from_dict({"lr": 3e-4, "an_old_field": 1}).lr
        0.0003
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})


@dataclass
class RunOptions(FromDict):
    """What one ``core.train`` invocation does; not recorded in the checkpoint."""

    out: str = field(metadata={"help": "checkpoint folder to write"})
    data: str = option(str(DEFAULT_DATA), "prepared parquet (core.data)")
    resume: bool = option(False, "continue from the checkpoint in --out")
    overwrite: bool = option(False, "replace an existing checkpoint")
    init_from: str | None = option(
        None,
        "fine-tune this checkpoint (its sizes and --feedback are kept; new symbols and "
        "properties are added), e.g. checkpoints/default",
    )
    properties: str | None = option(
        None,
        "properties to condition on, e.g. logp,tpsa,qed (any of core.chem.DESCRIPTORS; "
        "default logp,tpsa, or those of --init-from)",
    )
    max_steps: int | None = option(None, "stop after this many steps in total")
    max_minutes: float | None = option(None, "stop (with a checkpoint) after this long")
    limit: int | None = option(None, "use only the first N molecules of each split")
    val_size: int = option(2000, "validation molecules")
    log_every: int = option(50, "steps between train metrics")
    eval_every: int = option(500, "steps between validations")
    save_every: float = option(5.0, "minutes between checkpoints")
    distributed: bool = option(False, "one rank of a data-parallel run (mlx.launch)")
    backend: str = option("ring", "distributed backend (as mlx.launch)", choices=BACKENDS)


@dataclass
class TrainArgs(FromDict):
    """How the model is optimised; recorded in ``state.json`` and kept by ``--resume``."""

    batch_size: int = option(128, "molecules per step")
    lr: float = option(1e-3, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of the peak")
    warmup: int = option(300, "linear warmup steps")
    total_steps: int = option(
        10_000,
        "length of the cosine LR schedule, --max-steps when only that is given (and the "
        "default stop); with --resume, a new length",
    )
    weight_decay: float = option(0.01, "AdamW decoupled weight decay")
    clip: float = option(1.0, "gradient norm clipping")
    beta: float = option(0.5, "final KL weight (per molecule, relative to the per-molecule ELBO)")
    kl_anneal: int = option(2000, "steps of linear KL warmup from 0 to --beta")
    free_bits: float = option(0.1, "nats per latent dimension that cost nothing")
    cond_drop: float = option(0.15, "probability of dropping each condition on its own")
    uncond_drop: float = option(
        0.0, "probability of dropping all of a molecule's conditions together (unconditional)"
    )
    target_noise: float = option(
        0.0, "σ units of noise on the conditioned targets (a closed loop learns to correct it)"
    )
    prop_weight: float = option(
        0.1, "weight of the property-head MSE (the head sees stop_grad(mu))"
    )
    seed: int = option(0, "model init, data order and noise")


# help of each ModelArgs flag (the default is ModelArgs'); build_parser fails on a field with
# neither help nor a place in SET_BY_RUN, so no model field can lack a flag
MODEL_HELP: dict[str, dict[str, object]] = {
    "max_len": {"help": "longest token sequence"},
    "d_model": {"help": "decoder width"},
    "n_heads": {"help": "decoder heads"},
    "n_layers": {"help": "decoder layers"},
    "d_ff": {"help": "decoder MLP size"},
    "enc_d_model": {"help": "encoder width"},
    "enc_heads": {"help": "encoder heads"},
    "enc_layers": {"help": "encoder layers"},
    "enc_d_ff": {"help": "encoder MLP size"},
    "latent_dim": {"help": "size of z"},
    "n_fourier": {"help": "Fourier features per condition"},
    "activation": {"help": "MLP activation", "choices": ["relu", "gelu"]},
    "norm_eps": {"help": "LayerNorm epsilon"},
    "feedback": {"help": "closed loop: positions read the gap to target"},
    "derivation": {"help": "with --feedback: positions also read the SELFIES derivation state"},
}
SET_BY_RUN = {"vocab_size": "the tokenizer's size", "properties": "--properties"}


@dataclass
class TrainConfig:
    """A parsed ``core.train`` command line: the run's options and the ``TrainArgs`` and
    ``ModelArgs`` of a new run; ``flags`` holds the flags that were given.

    >>> config = TrainConfig.from_flags({"out": "ck", "max_steps": 20, "d_model": 64})
    >>> config.train.total_steps, config.model.d_model, config.model.n_heads
    (20, 64, 4)
    """

    run: RunOptions
    train: TrainArgs
    model: ModelArgs
    flags: dict[str, object]

    @classmethod
    def from_flags(cls, flags: Mapping[str, object]) -> TrainConfig:
        """From the flags given (the others take their fields' defaults); the schedule is
        ``--max-steps`` long when only that is given."""
        run = RunOptions.from_dict(flags)
        default_total = run.max_steps or TrainArgs.total_steps
        train = TrainArgs.from_dict(
            {**flags, "total_steps": flags.get("total_steps") or default_total}
        )
        model = ModelArgs.from_dict({k: v for k, v in flags.items() if k in MODEL_HELP})
        return cls(run, train, model, dict(flags))

    def check(self) -> None:
        """ConfigError (one line naming the flag) for values no run can use."""
        sizes = {"batch_size": self.train.batch_size}
        sizes |= {
            k: getattr(self.model, k) for k in ("max_len", "d_model", "n_layers", "latent_dim")
        }
        for name, value in sizes.items():
            if value <= 0:
                raise ConfigError(f"{flag_name(name)} must be positive")
        if self.run.max_steps is not None and self.run.max_steps <= 0:
            raise ConfigError("--max-steps must be positive")
        if not (0 < self.train.lr < 1) or not (0 <= self.train.cond_drop < 1):
            raise ConfigError("--lr must be in (0, 1) and --cond-drop in [0, 1)")
        if self.model.derivation and not (self.model.feedback or self.run.init_from):
            raise ConfigError("--derivation is read beside the gap: give --feedback too")


def parse_properties(text: str | None) -> list[str] | None:
    """The ``--properties`` list (None when not given); ConfigError naming the known ones.

    >>> parse_properties("logp, qed"), parse_properties(None)
    (['logp', 'qed'], None)
    """
    if text is None:
        return None
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DESCRIPTORS]
    if not names or unknown:
        what = f"unknown properties {unknown}" if unknown else "no property given"
        raise ConfigError(f"--properties: {what}; choose from {', '.join(DESCRIPTORS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--properties names one twice: {','.join(names)}")
    return names


def flag_name(name: str) -> str:
    """The flag of a field.

    >>> flag_name("kl_anneal")
    '--kl-anneal'
    """
    return "--" + name.replace("_", "-")


def _flag_type(hint: object) -> type:
    """``int`` of ``int`` and of ``int | None``."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    if len(kinds) != 1 or not isinstance(kinds[0], type):
        raise TypeError(f"no flag type for {hint}")
    return kinds[0]


def add_flags(group, cls: type, help_table: Mapping[str, Mapping[str, object]] | None = None):
    """One flag per field of the dataclass ``cls`` in the argparse ``group``, its help from the
    field's metadata or ``help_table``; absent from the namespace unless given.

    >>> parser = argparse.ArgumentParser()
    >>> add_flags(parser, TrainArgs)
    >>> vars(parser.parse_args(["--weight-decay", "0"]))
    {'weight_decay': 0.0}
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if help_table is not None and f.name in SET_BY_RUN:
            continue
        if help_table is not None and f.name not in help_table:
            raise TypeError(f"{cls.__name__}.{f.name} has neither a flag help nor a SET_BY_RUN")
        extra = dict(f.metadata if help_table is None else help_table[f.name])
        text = str(extra.pop("help")).replace("%", "%%")
        kind = _flag_type(hints[f.name])
        if f.default is not MISSING and f.default is not None and kind is not bool:
            text += f" (default: {f.default})"
        if kind is bool:
            if f.default is not False:
                raise TypeError(f"{cls.__name__}.{f.name}: a switch must default to False")
            extra["action"] = "store_true"
        else:
            extra["type"] = kind
        if f.default is MISSING:
            extra["required"] = True
        group.add_argument(flag_name(f.name), default=argparse.SUPPRESS, help=text, **extra)


def build_parser() -> argparse.ArgumentParser:
    """The ``core.train`` command line: a flag for every field of ``RunOptions``,
    ``TrainArgs`` and ``ModelArgs`` (but those in ``SET_BY_RUN``).

    >>> sorted(vars(build_parser().parse_args(["--out", "ck", "--prop-weight", "0.5"])).items())
    [('out', 'ck'), ('prop_weight', 0.5)]
    """
    parser = OneLineParser(description="Train (or resume) a MolScope model.")
    add_flags(parser.add_argument_group("run"), RunOptions)
    add_flags(parser.add_argument_group("optimisation (kept by --resume)"), TrainArgs)
    model = parser.add_argument_group("model (a new run's; --resume and --init-from keep theirs)")
    add_flags(model, ModelArgs, MODEL_HELP)
    return parser
