"""What the benchmark measures: the model configuration, one real training batch, and the MLX
training step, shared by ``bench.run`` and its subprocesses (``bench.workers``).

The architecture is the default checkpoint's (``checkpoints/default/config.json``, or the
folder in ``MOLSCOPE_BENCH_CHECKPOINT``) when there is one, else ``ModelArgs`` defaults with the
data set's vocabulary; ``quick`` swaps in a tiny configuration so the whole harness runs in seconds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pandas as pd
from mlx.utils import tree_flatten

from core.batches import BUCKET_BATCHES, EncodedSet, encode_set, epoch_batches, take
from core.checkpoint import Bundle, CheckpointError, load_checkpoint
from core.config import TrainArgs
from core.data import load_dataset
from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer
from core.trainset import prefix_arrays, property_scales
from core.trainstep import make_optimizer, make_sharded_train_step, make_train_step

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "default"
CHECKPOINT_ENV = "MOLSCOPE_BENCH_CHECKPOINT"  # another folder (``bench.run --checkpoint``)
BATCH_SIZE = 128  # molecules per training step, as core.train's default
QUICK_BATCH_SIZE = 16
QUICK_MODEL = dict(
    d_model=32, n_heads=2, n_layers=2, d_ff=64, enc_d_model=16, enc_heads=2, enc_layers=1,
    enc_d_ff=32, latent_dim=4,
)  # fmt: skip


@dataclass
class Workload:
    """The model to benchmark and one training batch of real molecules."""

    bundle: Bundle  # trained weights when the default checkpoint exists (used for decoding)
    source: str  # where the architecture came from
    ids: np.ndarray  # (B, W) token ids, padded as core.batches.take pads
    valid: np.ndarray  # (B, W) real positions
    props: np.ndarray  # (B, P) normalised properties
    prefix: np.ndarray  # (B, W, P) normalised properties of every prefix (zeros: open loop)
    targs: TrainArgs

    @property
    def args(self) -> ModelArgs:
        return self.bundle.args

    @property
    def n_tokens(self) -> int:
        """Real tokens (with [EOS]) in the batch: the unit of tokens/s, as in core.train."""
        return int(self.valid.sum())


def closed_loop_bundle(work: Workload) -> tuple[Bundle, str]:
    """The workload's model when it is closed loop, else an untrained closed-loop copy of its
    architecture (same tokenizer and scales; its molecules are noise, its work is real); and
    where it came from."""
    if work.args.feedback:
        return work.bundle, work.source
    args = replace(work.args, feedback=True)
    mx.random.seed(0)
    model = Model(args)
    mx.eval(model.parameters())
    model.eval()
    meta = {"note": "untrained closed-loop copy, for benchmarking"}
    bundle = Bundle(model, work.bundle.tokenizer, args, work.bundle.scales, meta)
    return bundle, f"untrained closed-loop copy of {work.source} (open loop)"


def _untrained_bundle(train_rows, overrides: dict) -> Bundle:
    tokenizer = Tokenizer.build(train_rows["selfies"])
    args = ModelArgs(vocab_size=len(tokenizer), **overrides)
    mx.random.seed(0)
    model = Model(args)
    mx.eval(model.parameters())
    model.eval()
    scales = property_scales(train_rows, args.properties)
    return Bundle(model, tokenizer, args, scales, {"note": "untrained, for benchmarking"})


def _shown(folder: Path) -> str:
    """``folder`` relative to the repository when it is inside it."""
    try:
        return str(folder.resolve().relative_to(ROOT))
    except ValueError:
        return str(folder)


def build_workload(quick: bool = False) -> Workload:
    """The benchmark's model and its median-sized real training batch.

    The batch comes from ``core.batches.epoch_batches`` (length-bucketed, as training sees
    them): of the first epoch's batches, the one with the median number of real tokens.
    """
    table = load_dataset()
    train_rows = table[table["split"] == "train"]
    batch_size = QUICK_BATCH_SIZE if quick else BATCH_SIZE
    if quick:  # the vocabulary of the rows used, not of the whole set: seconds count here
        train_rows = train_rows.head(batch_size * BUCKET_BATCHES)
        bundle, source = _untrained_bundle(train_rows, QUICK_MODEL), "quick (tiny)"
    else:
        try:
            folder = Path(os.environ.get(CHECKPOINT_ENV, DEFAULT_CHECKPOINT))
            bundle, source = load_checkpoint(folder), _shown(folder)
        except CheckpointError:
            bundle, source = _untrained_bundle(train_rows, {}), "ModelArgs defaults"
    args = bundle.args
    rows = train_rows.head(batch_size * BUCKET_BATCHES)
    scaled = np.stack(
        [
            (rows[p].to_numpy() - bundle.scales[p].mean) / bundle.scales[p].std
            for p in args.properties
        ],
        axis=1,
    )
    data = encode_set(rows["selfies"].tolist(), scaled, bundle.tokenizer, args.max_len)
    batches = epoch_batches(data.lengths, batch_size, seed=0, epoch=0)
    batches.sort(key=lambda b: int(data.lengths[b].sum()))
    batch = batches[len(batches) // 2]
    if args.feedback:  # RDKit for the chosen batch only (~7 ms a molecule), not the whole set
        data = _with_prefix(bundle, data, batch)
        batch = np.arange(len(batch))
    ids, valid, props, prefix = take(data, batch)
    targs = TrainArgs(batch_size=batch_size)
    return Workload(bundle, source, ids, valid, props, prefix, targs)


def _with_prefix(bundle: Bundle, data: EncodedSet, rows: np.ndarray) -> EncodedSet:
    """``rows`` of ``data`` encoded again with the properties of every prefix, which a
    closed-loop decoder reads (``core.trainset.prefix_arrays``, as training computes them)."""
    selfies = [bundle.tokenizer.decode(row) for row in data.ids[rows]]
    prefix = prefix_arrays(pd.DataFrame({"selfies": selfies}), bundle)
    return encode_set(selfies, data.props[rows], bundle.tokenizer, bundle.args.max_len, prefix)


def non_embedding_parameters(model) -> int:
    """Parameters outside the token and position embeddings (tables looked up, not multiplied)."""
    return sum(
        v.size
        for name, v in tree_flatten(model.trainable_parameters())
        if not name.endswith(("embed.weight", "pos.weight"))
    )


def fresh_model(work: Workload, args: ModelArgs, seed: int) -> tuple[Model, optim.Optimizer]:
    """A model initialised from ``seed`` (the same weights in every process) in training
    mode, and its optimizer with fresh state."""
    mx.random.seed(seed)
    model = Model(args)
    mx.eval(model.parameters())
    model.train()
    optimizer = make_optimizer(work.targs)
    optimizer.init(model.trainable_parameters())
    return model, optimizer


def mlx_train_step(
    work: Workload, activation: str | None = None, compiled: bool = True, seed: int = 0
) -> tuple[Model, Callable[[], None]]:
    """A fresh model (same seed, same weights) and a function running one full training
    step of ``core.trainstep.make_train_step`` on the workload's batch."""
    args = work.args if activation is None else replace(work.args, activation=activation)
    model, optimizer = fresh_model(work, args, seed)
    step = make_train_step(model, optimizer, work.targs, work.bundle.tokenizer.bos_id)
    batch = [mx.array(a) for a in (work.ids, work.valid, work.props, work.prefix)]
    beta = mx.array(work.targs.beta, dtype=mx.float32)
    keys = iter(range(1_000_000))

    def run() -> None:
        key = mx.random.key(next(keys))
        if not compiled:
            mx.disable_compile()  # checked at call time: the same step, traced op by op
        try:
            mx.eval(step(*batch, beta, key))
        finally:
            mx.enable_compile()

    return model, run


def mlx_sharded_train_step(work: Workload, world, seed: int = 0) -> Callable[[], None]:
    """This rank's part of one data-parallel training step on the workload's batch
    (``core.trainstep.make_sharded_train_step``: its rows, the gradients averaged over the ranks,
    the same update everywhere). Every rank builds the same initial weights from ``seed``."""
    model, optimizer = fresh_model(work, work.args, seed)
    bos = work.bundle.tokenizer.bos_id
    step = make_sharded_train_step(model, optimizer, work.targs, bos, world)
    mine = world.shard(np.arange(len(work.ids)))
    batch = [mx.array(a[mine]) for a in (work.ids, work.valid, work.props, work.prefix)]
    beta = mx.array(work.targs.beta, dtype=mx.float32)
    n_tokens, flags = mx.array(work.n_tokens, dtype=mx.float32), mx.zeros((2,))
    keys = iter(range(1_000_000))

    def run() -> None:
        key = mx.random.key(next(keys))
        mx.eval(step(*batch, beta, key, n_tokens, flags))

    return run


def time_call(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(
    variants: dict[str, Callable[[], object]],
    warmup: int,
    steps: int,
    settle: float = 0.15,
    min_steps: int | None = None,
    deadline: float = math.inf,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, run in turns (A, B, C, A, B, C, ...) so background
    load hits all alike; the first ``warmup`` rounds (compilation, caches) are dropped. Once
    ``min_steps`` rounds are timed, no new round starts after ``deadline`` (perf_counter).

    Each call waits ``settle`` seconds first: OpenBLAS worker threads spin for ~0.1 s after a
    call before they sleep, and would otherwise take a core from the next variant.
    """
    least = warmup + (steps if min_steps is None else min_steps)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup + steps):
        if round_ >= least and time.perf_counter() > deadline:
            break
        for name, fn in variants.items():
            time.sleep(settle)
            seconds = time_call(fn)
            if round_ >= warmup:
                times[name].append(seconds)
    return times
