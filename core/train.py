"""Training: ``python -m core.train --out checkpoints/NAME [--resume] [--max-steps N] ...``

The flags and their defaults are the fields of ``core.config``: any prepared table
(``--data``), the properties to condition on (``--properties logp,tpsa,qed``, recorded with
their normalisation), ``--init-from CHECKPOINT`` to fine-tune (``core.finetune``).

The recipe: ``core.trainrun.build_run`` makes the run (new, fine-tuned or resumed; its data from
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
from dataclasses import asdict
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from core.batches import epoch_batches
from core.checkpoint import CheckpointError, append_metrics, resolve, save_checkpoint
from core.cli import StopFlag
from core.config import TrainConfig, build_parser
from core.distributed import World, init_world
from core.evaluate import evaluate_batches
from core.trainrun import Run, TrainingError, build_run
from core.trainstep import step_key, take_step


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
