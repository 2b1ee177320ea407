"""A training run before its first step: where it stands (``Position``, saved and resumed),
what it holds (``Run``) and ``build_run``, which makes it new, fine-tuned (``--init-from``)
or resumed (``--resume``) from a ``core.config.TrainConfig``; ``core.train`` runs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import pandas as pd
import selfies as sf
from mlx.utils import tree_unflatten

from core.batches import EncodedSet
from core.checkpoint import (
    METRICS,
    Bundle,
    PropertyScale,
    has_checkpoint,
    load_checkpoint,
    load_training_state,
    read_config,
    truncate_metrics,
)
from core.config import RunOptions, TrainArgs, TrainConfig, parse_properties
from core.distributed import World
from core.errors import UserError
from core.finetune import grow, growth_note, union_tokenizer
from core.model import Model, ModelArgs, count_parameters
from core.tokenizer import Tokenizer
from core.trainset import data_identity, encode_splits, load_table, property_scales, training_rows
from core.trainstep import make_optimizer, make_step


class TrainingError(UserError, RuntimeError):
    """Training cannot start or cannot go on (a checkpoint in the way, non-finite loss...)."""


@dataclass
class Position:
    """How far a run is; saved in ``state.json`` and restored by ``--resume``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # of the batch order (core.batches.epoch_batches)
    batch_index: int = 0  # the epoch's next batch
    train_seconds: float = 0.0  # time spent in steps
    tokens_seen: int = 0  # real tokens (with [EOS]) trained on

    @classmethod
    def from_state(cls, state: dict) -> Position:
        """The position in a ``state.json`` (older ones lack some fields).

        >>> Position.from_state({"step": 6, "epoch": 1, "world_size": 2})
        Position(step=6, epoch=1, batch_index=0, train_seconds=0.0, tokens_seen=0)
        """
        return cls(**{f.name: type(f.default)(state.get(f.name, f.default)) for f in fields(cls)})

    def advance(self, tokens: int, seconds: float) -> None:
        self.step, self.batch_index = self.step + 1, self.batch_index + 1
        self.tokens_seen += tokens
        self.train_seconds += seconds


@dataclass
class Run:
    """A run ready to train (``build_run``): on every rank the same, but for its shard."""

    opts: RunOptions
    targs: TrainArgs
    bundle: Bundle
    train_set: EncodedSet
    val_set: EncodedSet
    optimizer: optim.Optimizer
    position: Position
    world: World
    start_step: int  # of the checkpoint resumed (0: a new run)
    step_fn: Callable | None = None  # the compiled step (core.trainstep)

    @property
    def out(self) -> Path:
        return Path(self.opts.out)


def build_run(config: TrainConfig, world: World | None = None) -> Run:
    """The run ``config`` asks for: resumed from ``--out``, fine-tuned from ``--init-from`` or
    new; its data encoded, its optimizer (with the saved state) and its compiled step."""
    world = world or World()
    opts = config.run
    data_path = Path(opts.data)
    table = load_table(data_path)
    wanted = parse_properties(opts.properties)
    base = load_checkpoint(opts.init_from) if opts.init_from and not opts.resume else None
    properties = _properties(config, wanted, base)
    train_rows, val_rows = training_rows(table, properties, data_path, opts.limit, opts.val_size)
    if opts.resume:
        bundle, targs, position, opt_state = _resumed(config, world)
    else:
        bundle, targs = _new(config, properties, base, train_rows, len(val_rows), world)
        position, opt_state = Position(), {}
    bundle.model.train()
    train_set, val_set = encode_splits(
        train_rows, val_rows, bundle, targs.batch_size, world.is_main
    )
    if targs.batch_size < world.size:
        raise TrainingError(f"a batch of {targs.batch_size} cannot feed {world.size} ranks")
    optimizer = make_optimizer(targs)
    optimizer.init(bundle.model.trainable_parameters())
    if opt_state:
        optimizer.state = tree_unflatten(list(opt_state.items()))
    run = Run(opts, targs, bundle, train_set, val_set, optimizer, position, world, position.step)
    run.step_fn = _step_function(run)
    return run


def _properties(config: TrainConfig, wanted: list[str] | None, base: Bundle | None) -> list[str]:
    """What the run conditions on: a resumed run its checkpoint's (``--properties`` may only
    repeat them), a fine-tuned one ``--properties`` or the base's, a new one ``--properties``
    or ModelArgs' default (logp, tpsa)."""
    if config.run.resume:
        out = config.run.out
        properties = list(read_config(out)["model"].get("properties", ModelArgs().properties))
        if wanted is not None and wanted != properties:
            raise TrainingError(
                f"{out} is conditioned on {','.join(properties)}; --resume cannot change that"
            )
        return properties
    return wanted or list(base.args.properties if base else config.model.properties)


def _resumed(config: TrainConfig, world: World) -> tuple[Bundle, TrainArgs, Position, dict]:
    """The checkpoint in ``--out``, its TrainArgs (a new ``--total-steps``, ``--lr`` or a longer
    ``--max-steps`` changes the schedule), position and optimizer state; rows of the metrics
    logged after it are dropped (they will be logged again)."""
    out = Path(config.run.out)
    bundle = load_checkpoint(out)
    state, opt_state = load_training_state(out)
    targs = TrainArgs.from_dict(state["train_args"])
    for name in ("total_steps", "lr"):  # a new schedule from here on (e.g. to continue a run)
        value = config.flags.get(name)
        if value and value != getattr(targs, name):
            if world.is_main:
                print(f"note: {name} {getattr(targs, name)} -> {value} from here on")
            setattr(targs, name, value)
    if config.run.max_steps and config.run.max_steps > targs.total_steps:
        targs.total_steps = config.run.max_steps
    position = Position.from_state(state)
    if world.is_main:
        truncate_metrics(out, position.step)
    return bundle, targs, position, opt_state


def _new(
    config: TrainConfig, properties: list[str], base: Bundle | None, train_rows: pd.DataFrame,
    n_val: int, world: World,
) -> tuple[Bundle, TrainArgs]:  # fmt: skip
    """A new model, grown from ``base`` (``core.finetune``) or from scratch, for an empty
    ``--out`` (or ``--overwrite``)."""
    opts, targs = config.run, config.train
    out = Path(opts.out)
    if has_checkpoint(out) and not opts.overwrite:
        raise TrainingError(f"{out} already holds a checkpoint: pass --resume or --overwrite")
    if base is not None:
        tokenizer = union_tokenizer(base.tokenizer, train_rows["selfies"])
        model = grow(base, tokenizer, properties, targs.seed, config.model.derivation)
        if world.is_main:
            print(growth_note(base, tokenizer, properties), file=sys.stderr)
    else:
        tokenizer = Tokenizer.build(train_rows["selfies"], sf.get_semantic_robust_alphabet())
        mx.random.seed(targs.seed)
        model = Model(replace(config.model, vocab_size=len(tokenizer), properties=properties))
    mx.eval(model.parameters())
    scales = _kept_scales(property_scales(train_rows, model.args.properties), base)
    data = data_identity(Path(opts.data), len(train_rows), n_val)
    meta = {"data": data, "parameters": count_parameters(model)}
    longest = _longest_trained(train_rows["n_tokens"], model.args.max_len, base)
    if longest is not None:
        meta["longest_trained"] = longest
    if base is not None:
        from core.runs import checkpoint_step

        meta["init_from"] = {"path": str(opts.init_from), "step": checkpoint_step(base.path)}
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).write_text("")
    return Bundle(model, tokenizer, model.args, scales, meta), targs


def _kept_scales(scales: dict[str, PropertyScale], base: Bundle | None) -> dict[str, PropertyScale]:
    """Fine-tuning keeps the base model's normalisation (mean, std) of each property it already
    reads: its weights were trained on those inputs, and a new data slice with another mean
    would shift every target and gap it reads. The data range (lo, hi) is the new data's.

    >>> new = {"logp": PropertyScale(2.4, 0.9, -0.4, 4.3), "qed": PropertyScale(0.7, 0.1, 0, 1)}
    >>> base = Bundle(None, None, None, {"logp": PropertyScale(2.3, 1.0, -0.6, 4.2)}, {})
    >>> kept = _kept_scales(new, base)
    >>> kept["logp"], kept["qed"] == new["qed"]
    (PropertyScale(mean=2.3, std=1.0, lo=-0.4, hi=4.3), True)
    """
    if base is None:
        return scales
    kept = dict(scales)
    for name, scale in scales.items():
        if name in base.scales:
            kept[name] = replace(scale, mean=base.scales[name].mean, std=base.scales[name].std)
    return kept


def _longest_trained(n_tokens: pd.Series, max_len: int, base: Bundle | None) -> int | None:
    """The most symbols of any SELFIES the new model is trained on (``Bundle.token_limit``):
    of the training rows (their ``n_tokens`` column; those that fit ``max_len`` with [EOS])
    and, fine-tuning, of what ``base`` was trained on; None when ``base`` does not record it
    (trained before this was kept).

    >>> _longest_trained(pd.Series([2, 3]), 72, None)
    3
    >>> _longest_trained(pd.Series([3]), 3, None)  # what fits 3 tokens with [EOS]
    2
    """
    here = min(int(n_tokens.max()), max_len - 1)
    if base is None:
        return here
    before = base.meta.get("longest_trained")
    return None if before is None else max(here, before)


def _step_function(run: Run) -> Callable:
    """The compiled step (``core.trainstep.make_step``); with several ranks, once they agree
    on the data, model and position, and their replicas are made identical."""
    model, world, targs = run.bundle.model, run.world, run.targs
    if world.size > 1:
        data, pos = run.train_set, run.position
        shared = [
            len(data), float(data.lengths.sum()), len(run.bundle.tokenizer),
            count_parameters(model), pos.step, pos.epoch, pos.batch_index, targs.batch_size,
            targs.seed,
        ]  # fmt: skip
        if not world.agree(shared):
            raise TrainingError(
                "the ranks see different data, models or positions: every machine needs the"
                " same --data file and flags (and, to resume, the same checkpoint folder)"
            )
        world.replicate(model, run.optimizer)
    return make_step(model, run.optimizer, targs, run.bundle.tokenizer.bos_id, world)
