"""One training step, compiled: AdamW on warmup + cosine decay, the step's noise (condition
dropout, target noise, the VAE's noise) drawn from one key, the loss of ``core.losses``, its
gradient clipped; for one process (``make_train_step``) or one rank of a data-parallel run
(``make_sharded_train_step``), which compute the same update.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from core.batches import EncodedSet, take
from core.config import TrainArgs
from core.distributed import World
from core.losses import free_bits_kl, loss_fn, shard_loss_fn
from core.model import Model


def step_noise(key: mx.array, B: int, P: int, Z: int, targs: TrainArgs):
    """All of one step's randomness for the global batch, from one key: target noise (B, P)
    in σ units, presence flags (B, P) (each condition dropped on its own, and all of a row
    together with ``uncond_drop``) and the VAE's noise (B, Z).

    >>> noise, present, eps = step_noise(mx.random.key(0), 8, 2, 4, TrainArgs(cond_drop=0))
    >>> noise.shape, present.min().item(), eps.shape
    ((8, 2), 1.0, (8, 4))
    """
    noise_key, drop_key, all_key, eps_key = mx.random.split(key, 4)
    keep = mx.random.uniform(shape=(B, P), key=drop_key) >= targs.cond_drop
    if targs.uncond_drop > 0:
        keep = keep & (mx.random.uniform(shape=(B, 1), key=all_key) >= targs.uncond_drop)
    noise = targs.target_noise * mx.random.normal((B, P), key=noise_key)
    return noise, keep.astype(mx.float32), mx.random.normal((B, Z), key=eps_key)


def make_optimizer(targs: TrainArgs) -> optim.AdamW:
    """AdamW whose learning rate warms up linearly from 1% of ``lr``, then decays on a cosine
    to ``lr * min_lr_ratio`` at ``total_steps``.

    >>> make_optimizer(TrainArgs(lr=1e-3)).learning_rate.item()
    9.999999747378752e-06
    """
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
        targets, present, eps = step_noise(key, B, P, model.args.latent_dim, targs)
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
        noise, present, eps = (a[mine] for a in step_noise(key, B, P, Z, targs))
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
        kl_cost = free_bits_kl(kl_dim, targs.free_bits)
        loss = ce + beta * kl_cost * B / n_tokens + targs.prop_weight * prop_mse
        return loss, ce, kl_dim.sum(), prop_mse, norm, sums[2:]

    return step


def make_step(model: Model, optimizer: optim.Optimizer, targs: TrainArgs, bos: int, world: World):
    """``make_sharded_train_step`` for a world of several ranks, else ``make_train_step``."""
    if world.size > 1:
        return make_sharded_train_step(model, optimizer, targs, bos, world)
    return make_train_step(model, optimizer, targs, bos)


def step_key(seed: int, step: int) -> mx.array:
    """The key of all of step ``step``'s randomness: a resumed run draws what an uninterrupted
    one drew."""
    return mx.random.key(seed * 1_000_003 + step)


def take_step(
    step_fn, data: EncodedSet, rows: np.ndarray, beta: float, key: mx.array, world: World,
    requests: tuple[bool, bool] | None = None,
):  # fmt: skip
    """One step of ``step_fn`` (``make_train_step``, or ``make_sharded_train_step`` on this
    rank's shard) on the global batch ``rows`` of ``data``: the evaluated (loss, ce, kl,
    prop_mse, grad_norm), and with several ranks this rank's stop ``requests`` (interrupted,
    out of time) as the ranks agreed on them, so that every rank stops after the same step
    (None with one process).
    """
    ids, valid, props, prefix = (mx.array(a) for a in take(data, world.shard(rows)))
    inputs = (ids, valid, props, prefix, mx.array(beta, mx.float32), key)
    if world.size > 1:
        n_tokens = mx.array(int(data.lengths[rows].sum()), mx.float32)  # of the global batch
        *outputs, flags = step_fn(*inputs, n_tokens, mx.array(requests, mx.float32))
        requests = tuple(bool(f) for f in flags.tolist())
    else:
        outputs = step_fn(*inputs)
    mx.eval(*outputs)
    return outputs, requests
