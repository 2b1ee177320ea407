"""Training: ``python -m core.train --out checkpoints/NAME [--resume] [--max-steps N] ...``

Any prepared table (``core.data``: MOSES or a user's own file) with ``--data``; the
properties to condition on with ``--properties logp,tpsa,qed,...`` (any of
``core.chem.DESCRIPTORS``; recorded with their normalisation in the checkpoint);
``--init-from CHECKPOINT`` fine-tunes a trained model (``core.finetune``: its sizes, a
vocabulary grown by the data's new symbols, fresh conditions for new properties).

AdamW with warmup + cosine decay, gradient clipping, KL annealing with free bits, condition
dropout, the whole step under ``mx.compile``. Checkpoints every few minutes, at the end and on
SIGINT/SIGTERM (exit 0), always atomically; a non-finite loss stops the run before it can
reach a checkpoint.

``--distributed`` trains data-parallel on several processes started by ``mlx.launch`` (see
``core.distributed`` and docs/distributed.md); it computes the same global batches as one process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import selfies as sf
from mlx.utils import tree_flatten, tree_unflatten

from core.batches import EncodedSet, encode_set, epoch_batches, take
from core.checkpoint import (
    METRICS,
    Bundle,
    CheckpointError,
    PropertyScale,
    load_checkpoint,
    load_training_state,
    read_config,
    read_metrics,
    resolve,
    save_checkpoint,
)
from core.distributed import BACKENDS, World, init_world
from core.errors import UserError
from core.model import Model, ModelArgs, count_parameters
from core.tokenizer import Tokenizer


class TrainingError(UserError, RuntimeError):
    """Training cannot start or cannot go on (bad data, non-finite loss...)."""


@dataclass
class TrainArgs:
    batch_size: int = 128  # molecules per step
    lr: float = 1e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of the peak
    warmup: int = 300  # linear warmup steps
    total_steps: int = 10_000  # length of the cosine schedule (and default stop)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    clip: float = 1.0  # gradient norm clipping
    beta: float = 0.5  # final KL weight (per molecule, relative to the per-molecule ELBO)
    kl_anneal: int = 2000  # steps of linear KL warmup from 0 to beta
    free_bits: float = 0.1  # nats per latent dimension that cost nothing
    cond_drop: float = 0.15  # probability of dropping each condition independently
    uncond_drop: float = 0.0  # probability of dropping all conditions together (unconditional)
    target_noise: float = 0.0  # σ units of noise on the conditioned targets (closed loop stops)
    prop_weight: float = 0.1  # weight of the property-head MSE (the head sees stop_grad(mu))
    seed: int = 0  # model init, data order and noise


def loss_fn(
    model: Model, ids, valid, props, targets, present, prefix, eps, beta, targs: TrainArgs,
    bos: int,
):  # fmt: skip
    """Total loss and its parts (reconstruction CE per token, KL per molecule, property MSE).

    ``props`` are the molecules' own normalised properties (the probe's labels), ``targets``
    what the model is conditioned on (``props`` plus the training noise)."""
    logits, mu, logvar, _, _ = model(ids, valid, targets, present, eps, bos, prefix_props=prefix)
    mask = valid.astype(mx.float32)
    n_tokens = mask.sum()
    ce = (nn.losses.cross_entropy(logits, ids) * mask).sum() / n_tokens
    kl_dim = 0.5 * (mu * mu + mx.exp(logvar) - 1.0 - logvar).mean(axis=0)  # (Z,)
    kl = kl_dim.sum()
    kl_cost = mx.maximum(kl_dim, targs.free_bits).sum()
    tokens_per_mol = n_tokens / ids.shape[0]
    prop_mse = ((model.property_head(mx.stop_gradient(mu)) - props) ** 2).mean()
    loss = ce + beta * kl_cost / tokens_per_mol + targs.prop_weight * prop_mse
    return loss, (ce, kl, prop_mse)


def shard_loss_fn(
    model: Model, ids, valid, props, targets, present, prefix, eps, beta, n_tokens,
    targs: TrainArgs, bos: int, world: World,
):  # fmt: skip
    """One rank's share of ``loss_fn`` on the global batch, times the number of ranks, so that
    averaging the ranks' gradients gives exactly the gradient of ``loss_fn`` on the whole batch.

    ``loss_fn`` divides by the global token count ``n_tokens`` and batch size, and its free bits
    compare each latent dimension's KL averaged over the global batch with the threshold: the
    per-dimension KL sums are all-reduced (outside the gradient) to decide which dimensions pay.
    Returns the share and this rank's sums (CE, property squared error) and the global KL per
    dimension.
    """
    logits, mu, logvar, _, _ = model(ids, valid, targets, present, eps, bos, prefix_props=prefix)
    mask = valid.astype(mx.float32)
    ce_sum = (nn.losses.cross_entropy(logits, ids) * mask).sum()
    kl_sum = (0.5 * (mu * mu + mx.exp(logvar) - 1.0 - logvar)).sum(axis=0)  # (Z,)
    kl_dim = mx.distributed.all_sum(mx.stop_gradient(kl_sum), group=world.group)
    kl_dim = mx.stop_gradient(kl_dim) / targs.batch_size
    paying = (kl_dim > targs.free_bits).astype(mx.float32)
    prop_sum = ((model.property_head(mx.stop_gradient(mu)) - props) ** 2).sum()
    share = (ce_sum + beta * (paying * kl_sum).sum()) / n_tokens
    share = share + targs.prop_weight * prop_sum / (targs.batch_size * props.shape[1])
    return share * world.size, (ce_sum, kl_dim, prop_sum)


def _step_noise(key: mx.array, B: int, P: int, Z: int, targs: TrainArgs):
    """All of one step's randomness for the global batch, from one key: target noise (B, P)
    in σ units, presence flags (B, P) (each condition dropped on its own, and all of a row
    together with ``uncond_drop``) and the VAE's noise (B, Z)."""
    noise_key, drop_key, all_key, eps_key = mx.random.split(key, 4)
    keep = mx.random.uniform(shape=(B, P), key=drop_key) >= targs.cond_drop
    if targs.uncond_drop > 0:
        keep = keep & (mx.random.uniform(shape=(B, 1), key=all_key) >= targs.uncond_drop)
    noise = targs.target_noise * mx.random.normal((B, P), key=noise_key)
    return noise, keep.astype(mx.float32), mx.random.normal((B, Z), key=eps_key)


def make_optimizer(targs: TrainArgs) -> optim.AdamW:
    warm = optim.linear_schedule(targs.lr * 0.01, targs.lr, max(targs.warmup, 1))
    decay_steps = max(targs.total_steps - targs.warmup, 1)
    cosine = optim.cosine_decay(targs.lr, decay_steps, targs.lr * targs.min_lr_ratio)
    schedule = optim.join_schedules([warm, cosine], [max(targs.warmup, 1)])
    return optim.AdamW(learning_rate=schedule, weight_decay=targs.weight_decay)


def make_train_step(model: Model, optimizer: optim.Optimizer, targs: TrainArgs, bos: int):
    """A compiled function (ids, valid, props, prefix, beta, key) -> (loss, ce, kl, prop_mse,
    grad_norm).

    All randomness (condition dropout, the VAE's noise) comes from ``key``, so a step's result
    depends only on the weights, the batch and the key: resuming reproduces a run exactly.
    """
    state = [model.state, optimizer.state]
    loss_and_grad = nn.value_and_grad(model, partial(loss_fn, targs=targs, bos=bos))

    @partial(mx.compile, inputs=state, outputs=state)
    def step(ids, valid, props, prefix, beta, key):
        B, P = props.shape
        targets, present, eps = _step_noise(key, B, P, model.args.latent_dim, targs)
        targets = props + targets  # (B, P)
        (loss, (ce, kl, prop_mse)), grads = loss_and_grad(
            model, ids, valid, props, targets, present, prefix, eps, beta
        )
        grads, norm = optim.clip_grad_norm(grads, targs.clip)
        optimizer.update(model, grads)
        return loss, ce, kl, prop_mse, norm

    return step


def make_sharded_train_step(
    model: Model, optimizer: optim.Optimizer, targs: TrainArgs, bos: int, world: World
):
    """``make_train_step`` for one rank of a data-parallel run: a compiled function
    (ids, valid, props, prefix, beta, key, n_tokens, flags) of this rank's rows of the global
    batch -> (loss, ce, kl, prop_mse, grad_norm, flags summed over the ranks), all values of
    the global batch and equal on every rank.

    The noise is drawn for the whole global batch and sliced like the rows, so the run follows
    the one-process run. Gradients are averaged inside the compiled step; ``flags`` (stop
    requests) ride on the all-reduce of the loss sums, so agreeing to stop costs nothing extra.
    """
    state = [model.state, optimizer.state]
    loss = partial(shard_loss_fn, targs=targs, bos=bos, world=world)
    loss_and_grad = nn.value_and_grad(model, loss)
    B, P, Z = targs.batch_size, len(model.args.properties), model.args.latent_dim
    mine = slice(world.rank, None, world.size)  # the rows world.shard takes

    @partial(mx.compile, inputs=state, outputs=state)
    def step(ids, valid, props, prefix, beta, key, n_tokens, flags):
        noise, present, eps = (a[mine] for a in _step_noise(key, B, P, Z, targs))
        (_, (ce_sum, kl_dim, prop_sum)), grads = loss_and_grad(
            model, ids, valid, props, props + noise, present, prefix, eps, beta, n_tokens
        )
        grads = nn.average_gradients(grads, group=world.group)
        grads, norm = optim.clip_grad_norm(grads, targs.clip)
        optimizer.update(model, grads)
        sums = mx.distributed.all_sum(
            mx.concatenate([mx.stack([ce_sum, prop_sum]), flags]), group=world.group
        )
        ce, prop_mse = sums[0] / n_tokens, sums[1] / (B * P)
        kl_cost = mx.maximum(kl_dim, targs.free_bits).sum()
        loss = ce + beta * kl_cost * B / n_tokens + targs.prop_weight * prop_mse
        return loss, ce, kl_dim.sum(), prop_mse, norm, sums[2:]

    return step


def evaluate_batches(bundle: Bundle, data: EncodedSet, batch_size: int = 256) -> dict:
    """Validation metrics with all conditions present and z = mu (deterministic)."""
    model, args = bundle.model, bundle.args
    bos = bundle.tokenizer.bos_id
    totals = {"ce": 0.0, "correct": 0.0, "tokens": 0.0, "kl": 0.0, "n": 0}
    abs_err = np.zeros(len(args.properties))
    mus = []
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        ids, valid, props, prefix = (mx.array(a) for a in take(data, rows))
        present = mx.ones(props.shape)
        eps = mx.zeros((len(rows), args.latent_dim))
        logits, mu, logvar, pred, _ = model(
            ids, valid, props, present, eps, bos, prefix_props=prefix
        )
        mask = valid.astype(mx.float32)
        ce = (nn.losses.cross_entropy(logits, ids) * mask).sum()
        correct = ((logits.argmax(-1) == ids) * mask).sum()
        kl = (0.5 * (mu * mu + mx.exp(logvar) - 1.0 - logvar)).sum()
        err = mx.abs(pred - props).sum(axis=0)
        mx.eval(ce, correct, kl, err, mu)
        totals["ce"] += ce.item()
        totals["correct"] += correct.item()
        totals["tokens"] += mask.sum().item()
        totals["kl"] += kl.item()
        totals["n"] += len(rows)
        abs_err += np.array(err)
        mus.append(np.array(mu))
    mu_all = np.concatenate(mus)
    out = {
        "val_recon": totals["ce"] / totals["tokens"],
        "val_token_acc": totals["correct"] / totals["tokens"],
        "val_kl": totals["kl"] / totals["n"],
        "val_active_units": int((mu_all.var(axis=0) > 0.01).sum()),
    }
    for i, name in enumerate(args.properties):
        out[f"val_mae_{name}"] = float(abs_err[i] / totals["n"] * bundle.scales[name].std)
    return out


def property_scales(table, names: list[str]) -> dict[str, PropertyScale]:
    """Normalisation and data range of each property, from the training split only."""
    scales = {}
    for name in names:
        col = table[name].to_numpy(dtype=np.float64)
        lo, hi = np.percentile(col, [0.5, 99.5])
        scales[name] = PropertyScale(float(col.mean()), float(col.std()), float(lo), float(hi))
    return scales


def prefix_arrays(rows, bundle: Bundle) -> list[np.ndarray]:
    """Per molecule the normalised (L + 1, P) properties of its prefixes: from the table's
    ``prefix_<name>`` columns (``core.data prepare --prefix-features``) when it has them,
    else computed here with RDKit (``core.feedback.prefix_table``, ~7 ms a molecule)."""
    from tqdm import tqdm

    from core.data import prefix_column
    from core.feedback import prefix_table

    names = bundle.properties
    mean = np.array([bundle.scales[n].mean for n in names], dtype=np.float32)
    std = np.array([bundle.scales[n].std for n in names], dtype=np.float32)
    columns = [prefix_column(n) for n in names]
    if all(c in rows for c in columns):
        tables = [np.stack(c, axis=1) for c in zip(*(rows[c] for c in columns), strict=True)]
    else:
        selfies = rows["selfies"].tolist()
        tables = [
            prefix_table(s, names)
            for s in tqdm(selfies, desc="prefix properties", unit="mol", file=sys.stderr)
        ]
    return [((t - mean) / std).astype(np.float32) for t in tables]


def parse_properties(text: str | None) -> list[str] | None:
    """The ``--properties`` list (None when not given); TrainingError naming the known ones.

    >>> parse_properties("logp, qed"), parse_properties(None)
    (['logp', 'qed'], None)
    """
    from core.chem import DESCRIPTORS

    if text is None:
        return None
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DESCRIPTORS]
    if not names or unknown:
        what = f"unknown properties {unknown}" if unknown else "no property given"
        raise TrainingError(f"--properties: {what}; choose from {', '.join(DESCRIPTORS)}")
    if len(set(names)) != len(names):
        raise TrainingError(f"--properties names one twice: {','.join(names)}")
    return names


def with_properties(table, names: list[str], path: Path):
    """The rows of ``table`` that have every property in ``names``; TrainingError when the
    table has no values for one (a MOSES table prepared with ``--descriptors``, say)."""
    missing = [n for n in names if n not in table or table[n].isna().all()]
    if missing:
        raise TrainingError(
            f"{path} has no values for {', '.join(missing)}; prepare it with every descriptor"
        )
    keep = table[names].notna().all(axis=1)
    if not keep.all():
        print(f"note: {int((~keep).sum()):,} rows lack a property value; left out", file=sys.stderr)
    return table[keep]


def load_table(path: Path):
    """The prepared table (train and test splits) at ``path``."""
    from core.data import load_dataset

    table = load_dataset(path)
    if "split" not in table or not (table["split"] == "train").any():
        raise TrainingError(f"{path} has no training rows (column 'split' == 'train')")
    return table


def data_identity(path: Path, n_train: int, n_val: int) -> dict:
    """What a checkpoint records of its training data: path, name, kind and sizes."""
    from core.data import DataError, dataset_info

    identity = {"path": str(path), "n_train": n_train, "n_val": n_val}
    try:
        info = dataset_info(path)
    except DataError:
        return identity
    return {**identity, "name": info.name, "kind": info.kind, "n_molecules": info.n_rows}


def _append_metrics(out: Path, row: dict) -> None:
    with open(out / METRICS, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop rows logged after the checkpoint being resumed (they will be logged again)."""
    rows = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    tmp = out / f"{METRICS}.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out / METRICS)  # a kill mid-write never empties the run's history


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checkpoints and exits cleanly at the next step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, signum, _frame) -> None:
        self.signal = signum


def train(opts: argparse.Namespace, world: World | None = None) -> Path:
    """Train (or resume) a model; returns the checkpoint folder.

    With a ``world`` of several ranks, every rank runs this and only rank 0 writes.
    """
    from tqdm import tqdm

    world = world or World()
    out = Path(opts.out)
    data_path = Path(opts.data)
    table = load_table(data_path)
    wanted = parse_properties(getattr(opts, "properties", None))
    init_from = None if opts.resume else getattr(opts, "init_from", None)
    if opts.resume:
        properties = list(read_config(out)["model"].get("properties", ModelArgs().properties))
        if wanted is not None and wanted != properties:
            raise TrainingError(
                f"{out} is conditioned on {','.join(properties)}; --resume cannot change that"
            )
    elif init_from:
        base = load_checkpoint(init_from)
        properties = wanted or list(base.args.properties)
    else:
        properties = wanted or list(ModelArgs().properties)  # the model's default: logp, tpsa
    table = with_properties(table, properties, data_path)
    if opts.limit:
        table = table.groupby("split", group_keys=False).head(opts.limit)
    train_rows = table[table["split"] == "train"]
    val_rows = table[table["split"] != "train"].head(opts.val_size)
    if len(val_rows) == 0:
        val_rows = train_rows.tail(min(opts.val_size, len(train_rows) // 10 or 1))

    if opts.resume:
        bundle = load_checkpoint(out)
        state, opt_state = load_training_state(out)
        targs = TrainArgs(**state["train_args"])
        if opts.total_steps and opts.total_steps != targs.total_steps:
            # a new schedule length from here on (e.g. to finish within the time left)
            if world.is_main:
                print(f"note: LR schedule {targs.total_steps} -> {opts.total_steps} steps")
            targs.total_steps = opts.total_steps
        if opts.max_steps and opts.max_steps > targs.total_steps:
            targs.total_steps = opts.max_steps
        start_step = int(state["step"])
        if world.is_main:
            _truncate_metrics(out, start_step)
    else:
        try:
            resolve(out)  # also finds a complete copy left between the renames of a swap
            has_checkpoint = True
        except CheckpointError:
            has_checkpoint = False
        if has_checkpoint and not opts.overwrite:
            raise TrainingError(f"{out} already holds a checkpoint: pass --resume or --overwrite")
        targs = TrainArgs(
            batch_size=opts.batch_size, lr=opts.lr, warmup=opts.warmup, clip=opts.clip,
            total_steps=opts.total_steps or opts.max_steps or 10_000, beta=opts.beta,
            kl_anneal=opts.kl_anneal, free_bits=opts.free_bits, cond_drop=opts.cond_drop,
            uncond_drop=opts.uncond_drop, target_noise=opts.target_noise, seed=opts.seed,
        )  # fmt: skip
        if init_from:
            from core.finetune import grow, union_tokenizer

            tokenizer = union_tokenizer(base.tokenizer, train_rows["selfies"])
            model = grow(base, tokenizer, properties, seed=targs.seed)
            margs = model.args
            if world.is_main:
                print(
                    f"note: fine-tuning {base.path} ({base.args.d_model} wide, "
                    f"{base.args.n_layers} layers; its sizes and closed-loop setting are kept): "
                    f"{len(tokenizer) - len(base.tokenizer)} new symbols, new conditions "
                    f"{[p for p in properties if p not in base.properties] or 'none'}",
                    file=sys.stderr,
                )
        else:
            tokenizer = Tokenizer.build(train_rows["selfies"], sf.get_semantic_robust_alphabet())
            margs = ModelArgs(
                vocab_size=len(tokenizer), max_len=opts.max_len, d_model=opts.d_model,
                n_heads=opts.n_heads, n_layers=opts.n_layers, d_ff=opts.d_ff,
                enc_d_model=opts.enc_d_model, enc_heads=opts.enc_heads,
                enc_layers=opts.enc_layers, enc_d_ff=opts.enc_d_ff, latent_dim=opts.latent_dim,
                activation=opts.activation, feedback=opts.feedback, n_fourier=opts.n_fourier,
                properties=properties,
            )  # fmt: skip
            mx.random.seed(targs.seed)
            model = Model(margs)
        mx.eval(model.parameters())
        scales = property_scales(train_rows, margs.properties)
        meta = {
            "data": data_identity(data_path, len(train_rows), len(val_rows)),
            "parameters": count_parameters(model),
        }
        if init_from:
            from core.runs import checkpoint_step

            meta["init_from"] = {"path": str(init_from), "step": checkpoint_step(base.path)}
        bundle = Bundle(model, tokenizer, margs, scales, meta)
        state, opt_state, start_step = {}, {}, 0
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS).write_text("")

    model, args, tokenizer = bundle.model, bundle.args, bundle.tokenizer
    model.train()
    names = args.properties
    scaled = np.stack(
        [(train_rows[n].to_numpy() - bundle.scales[n].mean) / bundle.scales[n].std for n in names],
        axis=1,
    )
    train_prefix = prefix_arrays(train_rows, bundle) if args.feedback else None
    train_set = encode_set(
        train_rows["selfies"].tolist(), scaled, tokenizer, args.max_len, train_prefix
    )
    val_scaled = np.stack(
        [(val_rows[n].to_numpy() - bundle.scales[n].mean) / bundle.scales[n].std for n in names],
        axis=1,
    )
    val_prefix = prefix_arrays(val_rows, bundle) if args.feedback else None
    val_set = encode_set(
        val_rows["selfies"].tolist(), val_scaled, tokenizer, args.max_len, val_prefix
    )
    too_long = len(train_rows) - len(train_set)
    if too_long and world.is_main:
        print(
            f"note: {too_long:,} training molecules are longer than the model's "
            f"{args.max_len} tokens; left out",
            file=sys.stderr,
        )
    if len(train_set) < targs.batch_size:
        have, need = len(train_set), targs.batch_size
        raise TrainingError(f"only {have} training molecules for a batch of {need}")
    if targs.batch_size < world.size:
        raise TrainingError(f"a batch of {targs.batch_size} cannot feed {world.size} ranks")

    optimizer = make_optimizer(targs)
    optimizer.init(model.trainable_parameters())
    if opt_state:
        optimizer.state = tree_unflatten(list(opt_state.items()))
    epoch = int(state.get("epoch", 0))
    batch_index = int(state.get("batch_index", 0))
    if world.size > 1:
        shared = [
            len(train_set), float(train_set.lengths.sum()), len(tokenizer),
            count_parameters(model), start_step, epoch, batch_index, targs.batch_size, targs.seed,
        ]  # fmt: skip
        if not world.agree(shared):
            raise TrainingError(
                "the ranks see different data, models or positions: every machine needs the"
                " same --data file and flags (and, to resume, the same checkpoint folder)"
            )
        # replicas start identical even where random init differs between machines
        model.update(world.broadcast(model.parameters()))
        optimizer.state = world.broadcast(optimizer.state)
        mx.eval(model.parameters(), optimizer.state)
        step_fn = make_sharded_train_step(model, optimizer, targs, tokenizer.bos_id, world)
    else:
        step_fn = make_train_step(model, optimizer, targs, tokenizer.bos_id)
    elapsed = float(state.get("train_seconds", 0.0))
    tokens_seen = int(state.get("tokens_seen", 0))
    stop_at = opts.max_steps or targs.total_steps
    deadline = time.time() + opts.max_minutes * 60 if opts.max_minutes else math.inf
    stop = StopFlag()
    # fault injection for the reliability tests: pretend this step's loss is NaN
    fault_step = int(os.environ.get("MOLSCOPE_FAULT_NAN_AT_STEP", "0"))

    def checkpoint(step: int) -> None:
        if not world.is_main:
            return
        bundle.meta.update({"train_seconds": round(elapsed, 1), "tokens_seen": tokens_seen})
        opt_flat = dict(tree_flatten(optimizer.state))
        st = {
            "step": step, "epoch": epoch, "batch_index": batch_index,
            "train_seconds": elapsed, "tokens_seen": tokens_seen, "world_size": world.size,
            "train_args": asdict(targs),
        }  # fmt: skip
        save_checkpoint(out, bundle, opt_flat, st)

    batches = epoch_batches(train_set.lengths, targs.batch_size, targs.seed, epoch)
    step = start_step
    last_save = time.time()
    bar = tqdm(
        total=stop_at, initial=step, desc="training", unit="step", file=sys.stderr,
        disable=not world.is_main,
    )  # fmt: skip
    window_tokens, window_start = 0, time.perf_counter()
    while step < stop_at:
        if batch_index >= len(batches):
            epoch, batch_index = epoch + 1, 0
            batches = epoch_batches(train_set.lengths, targs.batch_size, targs.seed, epoch)
        t0 = time.perf_counter()
        rows = batches[batch_index]
        ids, valid, props, prefix = (mx.array(a) for a in take(train_set, world.shard(rows)))
        n_tok = int(train_set.lengths[rows].sum())  # of the global batch
        beta = targs.beta * min(1.0, step / max(targs.kl_anneal, 1))
        key = mx.random.key(targs.seed * 1_000_003 + step)
        inputs = (ids, valid, props, prefix, mx.array(beta, mx.float32), key)
        if world.size > 1:
            # every rank stops after the same step: the step sums the ranks' stop requests
            flags = mx.array([stop.signal is not None, time.time() > deadline], mx.float32)
            *outputs, flags = step_fn(*inputs, mx.array(n_tok, mx.float32), flags)
            interrupted, timed_out = (bool(f) for f in flags.tolist())
        else:
            outputs = step_fn(*inputs)
        loss, ce, kl, prop_mse, norm = outputs
        mx.eval(loss, ce, kl, prop_mse, norm)
        if step + 1 == fault_step:
            loss = mx.array(math.nan)
        if not math.isfinite(loss.item()):
            bar.close()
            raise TrainingError(
                f"non-finite loss at step {step + 1}; the last checkpoint (step {start_step}"
                f" or later) is intact; lower --lr and --resume"
            )
        step += 1
        batch_index += 1
        tokens_seen += n_tok
        window_tokens += n_tok
        elapsed += time.perf_counter() - t0
        bar.update(1)
        if world.is_main and (step % opts.log_every == 0 or step == stop_at):
            tok_s = window_tokens / (time.perf_counter() - window_start)
            window_tokens, window_start = 0, time.perf_counter()
            lr = float(optimizer.learning_rate.item())
            row = {
                "step": step, "split": "train", "loss": loss.item(), "recon": ce.item(),
                "kl": kl.item(), "beta": beta, "prop_mse": prop_mse.item(), "lr": lr,
                "grad_norm": norm.item(), "tok_s": round(tok_s, 1), "epoch": epoch,
                "time": round(elapsed, 2), "tokens": tokens_seen,
            }  # fmt: skip
            _append_metrics(out, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{tok_s:,.0f}")
        if world.is_main and (step % opts.eval_every == 0 or step == stop_at):
            model.eval()
            row = {"step": step, "split": "val", **evaluate_batches(bundle, val_set)}
            model.train()
            _append_metrics(out, row)
        if world.size == 1:
            interrupted, timed_out = stop.signal is not None, time.time() > deadline
        if time.time() - last_save > opts.save_every * 60 or interrupted or timed_out:
            checkpoint(step)
            last_save = time.time()
        if interrupted or timed_out:
            if world.is_main:
                reason = "interrupted" if interrupted else "time budget reached"
                print(f"{reason}: checkpoint saved at step {step}", file=sys.stderr)
            break
    bar.close()
    if step >= stop_at:
        checkpoint(step)
    model.eval()
    return resolve(out) if world.is_main else out


def main(opts: argparse.Namespace) -> int:
    for flag in ("batch_size", "max_len", "d_model", "n_layers", "latent_dim"):
        if getattr(opts, flag) <= 0:
            raise TrainingError(f"--{flag.replace('_', '-')} must be positive")
    if opts.max_steps is not None and opts.max_steps <= 0:
        raise TrainingError("--max-steps must be positive")
    if not (0 < opts.lr < 1) or not (0 <= opts.cond_drop < 1):
        raise TrainingError("--lr must be in (0, 1) and --cond-drop in [0, 1)")
    world = init_world(opts.backend) if opts.distributed else World()
    try:
        folder = train(opts, world)
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from exc
    if world.is_main:
        print(f"checkpoint: {folder}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.cli import OneLineParser
    from core.data import DEFAULT_DATA

    p = OneLineParser(description="Train (or resume) a MolScope model.")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="prepared parquet (core.data)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument(
        "--properties",
        help="properties to condition on, e.g. logp,tpsa,qed (any of core.chem.DESCRIPTORS; "
        "default logp,tpsa, or those of --init-from)",
    )
    p.add_argument(
        "--init-from",
        help="fine-tune this checkpoint (its sizes and --feedback are kept; new symbols and "
        "properties are added), e.g. checkpoints/default",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument(
        "--total-steps",
        type=int,
        help="length of the LR schedule (default: --max-steps or 10k); with --resume, a new length",
    )
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    p.add_argument("--limit", type=int, help="use only the first N molecules of each split")
    p.add_argument("--val-size", type=int, default=2000, help="validation molecules")
    p.add_argument("--batch-size", type=int, default=128, help="molecules per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=300, help="warmup steps")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--beta", type=float, default=0.5, help="final KL weight")
    p.add_argument("--kl-anneal", type=int, default=2000, help="KL warmup steps")
    p.add_argument("--free-bits", type=float, default=0.1, help="free nats per latent dim")
    p.add_argument("--cond-drop", type=float, default=0.15, help="condition dropout rate")
    p.add_argument(
        "--uncond-drop", type=float, default=0.0, help="rate of dropping all conditions at once"
    )
    p.add_argument(
        "--target-noise", type=float, default=0.0, help="σ units of noise on training targets"
    )
    p.add_argument(
        "--feedback", action="store_true", help="closed loop: positions read the gap to target"
    )
    p.add_argument("--n-fourier", type=int, default=16, help="Fourier features per condition")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--max-len", type=int, default=72, help="longest token sequence")
    p.add_argument("--d-model", type=int, default=256, help="decoder width")
    p.add_argument("--n-heads", type=int, default=4, help="decoder heads")
    p.add_argument("--n-layers", type=int, default=4, help="decoder layers")
    p.add_argument("--d-ff", type=int, default=1024, help="decoder MLP size")
    p.add_argument("--enc-d-model", type=int, default=128, help="encoder width")
    p.add_argument("--enc-heads", type=int, default=4, help="encoder heads")
    p.add_argument("--enc-layers", type=int, default=2, help="encoder layers")
    p.add_argument("--enc-d-ff", type=int, default=512, help="encoder MLP size")
    p.add_argument("--latent-dim", type=int, default=16, help="size of z")
    p.add_argument("--activation", choices=["relu", "gelu"], default="relu", help="MLP activation")
    p.add_argument("--log-every", type=int, default=50, help="steps between train metrics")
    p.add_argument("--eval-every", type=int, default=500, help="steps between validations")
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument(
        "--distributed", action="store_true", help="one rank of a data-parallel run (mlx.launch)"
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default="ring", help="distributed backend (as mlx.launch)"
    )
    return p


if __name__ == "__main__":
    from core.cli import run_cli

    run_cli(main, build_parser())
