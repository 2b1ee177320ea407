"""Token batches for training: SELFIES encoded once into a padded id matrix, then served in
length-bucketed batches whose order depends only on (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.tokenizer import Tokenizer

PAD_MULTIPLE = 8  # batch widths are rounded up to this, so few distinct shapes get compiled
BUCKET_BATCHES = 64  # batches per shuffle bucket sorted by length


@dataclass
class EncodedSet:
    """Token ids (N, max_len) padded with 0, lengths (N,) including [EOS], properties (N, P)
    and, for closed-loop models, the properties of every prefix (N, max_len, P): row t holds
    the molecule of the first t symbols (what decoder position t reads), normalised."""

    ids: np.ndarray
    lengths: np.ndarray
    props: np.ndarray
    prefix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)


def encode_set(
    selfies: Sequence[str],
    props: np.ndarray,
    tokenizer: Tokenizer,
    max_len: int,
    prefix: Sequence[np.ndarray] | None = None,
) -> EncodedSet:
    """Encode ``selfies``, dropping those longer than ``max_len`` tokens (with [EOS]).
    ``prefix``: per molecule what its positions read, (L + 1, K): the normalised prefix
    properties (``core.trainset.prefix_arrays``), L its number of symbols.

    >>> tok = Tokenizer.build(["[C][O]"])
    >>> encode_set(["[C][O]"], np.zeros((1, 2)), tok, 8).lengths.tolist()
    [3]
    """
    ids = np.zeros((len(selfies), max_len), dtype=np.int16)
    lengths = np.zeros(len(selfies), dtype=np.int32)
    keep = np.zeros(len(selfies), dtype=bool)
    table = None
    if prefix is not None:
        width = prefix[0].shape[1] if len(prefix) else props.shape[1]
        table = np.zeros((len(selfies), max_len, width), dtype=np.float32)
    for i, s in enumerate(selfies):
        row = tokenizer.encode(s)
        if len(row) <= max_len:
            ids[i, : len(row)] = row
            lengths[i] = len(row)
            keep[i] = True
            if table is not None:
                values = prefix[i]
                if len(values) != len(row):
                    raise ValueError(f"molecule {i}: {len(values)} prefix rows for {len(row)}")
                table[i, : len(row)] = values
    return EncodedSet(
        ids[keep],
        lengths[keep],
        props[keep].astype(np.float32),
        None if table is None else table[keep],
    )


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices of every batch of one epoch: shuffled, bucketed by length, batch order
    shuffled again. Deterministic in (seed, epoch); the last incomplete batch is dropped."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order) - batch_size + 1, bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [
            chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)
        ]
    return [batches[i] for i in rng.permutation(len(batches))]


def take(
    data: EncodedSet, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids (B, W), valid (B, W), props (B, P), prefix (B, W, P)) with W the batch's longest
    row rounded up; prefix is zeros when the set has none."""
    width = int(data.lengths[rows].max())
    width = min(-(-width // PAD_MULTIPLE) * PAD_MULTIPLE, data.ids.shape[1])
    ids = data.ids[rows, :width].astype(np.int32)
    valid = np.arange(width)[None, :] < data.lengths[rows][:, None]
    if data.prefix is None:
        prefix = np.zeros((len(rows), width, data.props.shape[1]), dtype=np.float32)
    else:
        prefix = data.prefix[rows, :width]
    return ids, valid, data.props[rows], prefix
