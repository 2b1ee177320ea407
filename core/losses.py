"""The training objective, all of it in this single file.

The reconstruction cross-entropy over the real tokens, the KL of the posterior from the prior
per latent dimension with free bits, and the property probe's MSE; combined into the loss of
one process (``loss_fn``) and one rank's share of it in a data-parallel run
(``shard_loss_fn``). Training, validation (``core.evaluate.evaluate_batches``), evaluation
and the benchmark's MLX side all use these functions, so their numbers cannot drift apart;
``bench/torch_model.py`` mirrors them in PyTorch.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from core.config import TrainArgs
from core.distributed import World
from core.model import Model


def masked_cross_entropy(
    logits: mx.array, targets: mx.array, valid: mx.array, reduction: str = "mean"
) -> mx.array:
    """Cross-entropy of ``targets`` (B, T) under ``logits`` (B, T, V) over the real positions
    ``valid`` (B, T): per real token (``"mean"``) or summed (``"sum"``).

    >>> logits, ids = mx.zeros((1, 3, 4)), mx.array([[1, 2, 0]])
    >>> valid = mx.array([[True, True, False]])
    >>> round(masked_cross_entropy(logits, ids, valid).item(), 4)  # log 4: uniform over 4
    1.3863
    >>> round(masked_cross_entropy(logits, ids, valid, "sum").item(), 4)
    2.7726
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    mask = valid.astype(mx.float32)
    total = (nn.losses.cross_entropy(logits, targets) * mask).sum()
    return total / mask.sum() if reduction == "mean" else total


def gaussian_kl(mu: mx.array, logvar: mx.array) -> mx.array:
    """KL(N(mu, exp(logvar)) || N(0, 1)) in nats, per molecule and latent dimension (B, Z).

    >>> gaussian_kl(mx.array([[0.0, 1.0]]), mx.zeros((1, 2))).tolist()
    [[0.0, 0.5]]
    """
    return 0.5 * (mu * mu + mx.exp(logvar) - 1.0 - logvar)


def free_bits_kl(kl_dim: mx.array, free_bits: float) -> mx.array:
    """The KL a molecule pays: each latent dimension's KL ``kl_dim`` (Z,), averaged over the
    batch, but at least ``free_bits`` nats, so a dimension under the threshold costs a
    constant and is not pushed to collapse. Its gradient is ``paying_dimensions``.

    >>> round(free_bits_kl(mx.array([0.05, 0.3]), 0.1).item(), 4)
    0.4
    """
    return mx.maximum(kl_dim, free_bits).sum()


def paying_dimensions(kl_dim: mx.array, free_bits: float) -> mx.array:
    """1.0 where a latent dimension's batch-averaged KL is over ``free_bits`` (it pays, and
    ``free_bits_kl`` passes its gradient), else 0.0.

    >>> paying_dimensions(mx.array([0.05, 0.3]), 0.1).tolist()
    [0.0, 1.0]
    """
    return (kl_dim > free_bits).astype(mx.float32)


def loss_fn(
    model: Model, ids, valid, props, targets, present, prefix, eps, beta, targs: TrainArgs,
    bos: int,
):  # fmt: skip
    """Total loss and its parts (reconstruction CE per token, KL per molecule, property MSE).

    ``props`` are the molecules' own normalised properties (the probe's labels), ``targets``
    what the model is conditioned on (``props`` plus the training noise)."""
    logits, mu, logvar, _, _ = model(ids, valid, targets, present, eps, bos, prefix_props=prefix)
    ce = masked_cross_entropy(logits, ids, valid)
    kl_dim = gaussian_kl(mu, logvar).mean(axis=0)  # (Z,)
    tokens_per_mol = valid.astype(mx.float32).sum() / ids.shape[0]
    prop_mse = ((model.property_head(mx.stop_gradient(mu)) - props) ** 2).mean()
    kl_cost = free_bits_kl(kl_dim, targs.free_bits)
    loss = ce + beta * kl_cost / tokens_per_mol + targs.prop_weight * prop_mse
    return loss, (ce, kl_dim.sum(), prop_mse)


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
    ce_sum = masked_cross_entropy(logits, ids, valid, reduction="sum")
    kl_sum = gaussian_kl(mu, logvar).sum(axis=0)  # (Z,)
    kl_dim = mx.distributed.all_sum(mx.stop_gradient(kl_sum), group=world.group)
    kl_dim = mx.stop_gradient(kl_dim) / targs.batch_size
    paying = paying_dimensions(kl_dim, targs.free_bits)
    prop_sum = ((model.property_head(mx.stop_gradient(mu)) - props) ** 2).sum()
    share = (ce_sum + beta * (paying * kl_sum).sum()) / n_tokens
    share = share + targs.prop_weight * prop_sum / (targs.batch_size * props.shape[1])
    return share * world.size, (ce_sum, kl_dim, prop_sum)
