"""Training: ``python -m core.train --out checkpoints/NAME [--resume] [--max-steps N] ...``

The flags and their defaults are the fields of ``core.config``: any prepared table
(``--data``), the properties to condition on (``--properties logp,tpsa,qed``, recorded with
their normalisation), ``--init-from CHECKPOINT`` to fine-tune (``core.finetune``).

The recipe: ``build_run`` makes the run (new, fine-tuned or resumed; its data from
``core.trainset``, its compiled step from ``core.trainstep``, its loss from ``core.losses``),
then ``train`` takes one step after another with ``log_train``, ``log_validation`` and
``save`` on the way: checkpoints every few minutes, at the end and on SIGINT/SIGTERM (exit
0), always atomically; a non-finite loss stops the run before it can reach a checkpoint.
``--distributed`` trains data-parallel on processes started by ``mlx.launch``
(``core.distributed``, docs/distributed.md), on the same global batches as one process.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import pandas as pd
import selfies as sf
from mlx.utils import tree_flatten, tree_unflatten

from core.batches import EncodedSet, epoch_batches
from core.checkpoint import (
    METRICS,
    Bundle,
    CheckpointError,
    append_metrics,
    has_checkpoint,
    load_checkpoint,
    load_training_state,
    read_config,
    resolve,
    save_checkpoint,
    truncate_metrics,
)
from core.cli import StopFlag
from core.config import RunOptions, TrainArgs, TrainConfig, build_parser, parse_properties
from core.distributed import World, init_world
from core.errors import UserError
from core.evaluate import evaluate_batches
from core.finetune import grow, growth_note, union_tokenizer
from core.model import Model, ModelArgs, count_parameters
from core.tokenizer import Tokenizer
from core.trainset import data_identity, encode_splits, load_table, property_scales, training_rows
from core.trainstep import make_optimizer, make_step, step_key, take_step


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
        model = grow(base, tokenizer, properties, seed=targs.seed)
        if world.is_main:
            print(growth_note(base, tokenizer, properties), file=sys.stderr)
    else:
        tokenizer = Tokenizer.build(train_rows["selfies"], sf.get_semantic_robust_alphabet())
        mx.random.seed(targs.seed)
        model = Model(replace(config.model, vocab_size=len(tokenizer), properties=properties))
    mx.eval(model.parameters())
    scales = property_scales(train_rows, model.args.properties)
    data = data_identity(Path(opts.data), len(train_rows), n_val)
    meta = {"data": data, "parameters": count_parameters(model)}
    if base is not None:
        from core.runs import checkpoint_step

        meta["init_from"] = {"path": str(opts.init_from), "step": checkpoint_step(base.path)}
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).write_text("")
    return Bundle(model, tokenizer, model.args, scales, meta), targs


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


def log_train(run: Run, outputs, beta: float, tok_s: float) -> dict:
    """Append the step's training metrics to ``metrics.jsonl``; returns the row."""
    loss, ce, kl, prop_mse, norm = outputs
    pos = run.position
    row = {
        "step": pos.step, "split": "train", "loss": loss.item(), "recon": ce.item(),
        "kl": kl.item(), "beta": beta, "prop_mse": prop_mse.item(),
        "lr": float(run.optimizer.learning_rate.item()), "grad_norm": norm.item(),
        "tok_s": round(tok_s, 1), "epoch": pos.epoch, "time": round(pos.train_seconds, 2),
        "tokens": pos.tokens_seen,
    }  # fmt: skip
    append_metrics(run.out, row)
    return row


def log_validation(run: Run) -> None:
    """Append the validation metrics (``core.evaluate.evaluate_batches``) at this step."""
    run.bundle.model.eval()
    row = {"step": run.position.step, "split": "val", **evaluate_batches(run.bundle, run.val_set)}
    run.bundle.model.train()
    append_metrics(run.out, row)


def save(run: Run) -> None:
    """Checkpoint the run atomically (rank 0 only): weights, optimizer state, position."""
    if not run.world.is_main:
        return
    pos = run.position
    run.bundle.meta.update(
        {"train_seconds": round(pos.train_seconds, 1), "tokens_seen": pos.tokens_seen}
    )
    state = {**asdict(pos), "world_size": run.world.size, "train_args": asdict(run.targs)}
    save_checkpoint(run.out, run.bundle, dict(tree_flatten(run.optimizer.state)), state)


def train(run: Run) -> Path:
    """Train ``run`` until ``--max-steps`` (default: the schedule's end), ``--max-minutes``
    or SIGINT/SIGTERM, saving every ``--save-every`` minutes and at the end; returns the
    checkpoint folder. Every rank runs this; only rank 0 writes."""
    from tqdm import tqdm

    opts, targs, pos, world = run.opts, run.targs, run.position, run.world
    stop_at = opts.max_steps or targs.total_steps
    deadline = time.time() + opts.max_minutes * 60 if opts.max_minutes else math.inf
    stop = StopFlag()
    # fault injection for the reliability tests: pretend this step's loss is NaN
    fault_step = int(os.environ.get("MOLSCOPE_FAULT_NAN_AT_STEP", "0"))
    batches = epoch_batches(run.train_set.lengths, targs.batch_size, targs.seed, pos.epoch)
    last_save = time.time()
    bar = tqdm(
        total=stop_at, initial=pos.step, desc="training", unit="step", file=sys.stderr,
        disable=not world.is_main,
    )  # fmt: skip
    window_tokens, window_start = 0, time.perf_counter()
    while pos.step < stop_at:
        if pos.batch_index >= len(batches):
            pos.epoch, pos.batch_index = pos.epoch + 1, 0
            batches = epoch_batches(run.train_set.lengths, targs.batch_size, targs.seed, pos.epoch)
        t0 = time.perf_counter()
        rows = batches[pos.batch_index]
        beta = targs.beta * min(1.0, pos.step / max(targs.kl_anneal, 1))
        requests = (stop.signal is not None, time.time() > deadline) if world.size > 1 else None
        key = step_key(targs.seed, pos.step)
        outputs, requests = take_step(run.step_fn, run.train_set, rows, beta, key, world, requests)
        loss = mx.array(math.nan) if pos.step + 1 == fault_step else outputs[0]
        if not math.isfinite(loss.item()):
            bar.close()
            raise TrainingError(
                f"non-finite loss at step {pos.step + 1}; the last checkpoint (step "
                f"{run.start_step} or later) is intact; lower --lr and --resume"
            )
        n_tokens = int(run.train_set.lengths[rows].sum())
        pos.advance(n_tokens, time.perf_counter() - t0)
        window_tokens += n_tokens
        bar.update(1)
        if world.is_main and (pos.step % opts.log_every == 0 or pos.step == stop_at):
            tok_s = window_tokens / (time.perf_counter() - window_start)
            window_tokens, window_start = 0, time.perf_counter()
            row = log_train(run, outputs, beta, tok_s)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tok_s:,.0f}")
        if world.is_main and (pos.step % opts.eval_every == 0 or pos.step == stop_at):
            log_validation(run)
        interrupted, timed_out = requests or (stop.signal is not None, time.time() > deadline)
        if time.time() - last_save > opts.save_every * 60 or interrupted or timed_out:
            save(run)
            last_save = time.time()
        if interrupted or timed_out:
            if world.is_main:
                reason = "interrupted" if interrupted else "time budget reached"
                print(f"{reason}: checkpoint saved at step {pos.step}", file=sys.stderr)
            break
    bar.close()
    if pos.step >= stop_at:
        save(run)
    run.bundle.model.eval()
    return resolve(run.out) if world.is_main else run.out


def main(opts: argparse.Namespace) -> int:
    config = TrainConfig.from_flags(vars(opts))
    config.check()
    world = init_world(config.run.backend) if config.run.distributed else World()
    try:
        folder = train(build_run(config, world))
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from exc
    if world.is_main:
        print(f"checkpoint: {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from core.cli import run_cli

    run_cli(main, build_parser())
