"""Key/value caches for decoding: one object per decoder layer, made for one generation call
and never stored on the model (as mlx-lm's ``models/cache.py``).

Both caches have one protocol, so the decoder has one forward path:

- ``offset``: how many positions are cached, i.e. the absolute position of the next query;
- ``make_mask(n_queries)``: the additive mask of the next ``n_queries`` queries over the keys
  that ``update_and_fetch`` will return;
- ``update_and_fetch(k, v)``: store keys/values (B, H, T, Dh) and return all of them.

``KVCache`` grows by concatenation, any number of positions per call. ``FixedKVCache`` is
preallocated to the position table's size and written in place: its arrays keep their shapes
from one position to the next, so its ``state`` can pass in and out of ``mx.compile`` and a
compiled decoding step is traced once.
"""

from __future__ import annotations

import mlx.core as mx


def causal_mask(
    n_queries: int,
    offset: int | mx.array = 0,
    n_keys: int | None = None,
    dtype: mx.Dtype = mx.float32,
) -> mx.array:
    """Additive mask (n_queries, n_keys): 0 where a query may look, -inf elsewhere.

    Query i sits at absolute position ``offset + i`` and sees keys 0..offset+i. ``n_keys``
    defaults to ``offset + n_queries``; it is needed when ``offset`` is an array.

    >>> causal_mask(2, offset=1).tolist()
    [[0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
    """
    n_keys = offset + n_queries if n_keys is None else n_keys
    queries = mx.arange(n_queries)[:, None] + offset  # (Tq, 1) absolute positions
    keys = mx.arange(n_keys)[None, :]  # (1, S)
    return mx.where(keys <= queries, 0.0, -mx.inf).astype(dtype)


class KVCache:
    """Keys and values of one decoder layer, grown by concatenation.

    >>> cache = KVCache()
    >>> k, v = cache.update_and_fetch(mx.zeros((1, 2, 3, 4)), mx.zeros((1, 2, 3, 4)))
    >>> cache.offset, k.shape, cache.make_mask(2).shape
    (3, (1, 2, 3, 4), (2, 5))
    """

    def __init__(self) -> None:
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def make_mask(self, n_queries: int, dtype: mx.Dtype = mx.float32) -> mx.array | None:
        """None for one query (it may see every cached key), else ``causal_mask``."""
        return None if n_queries == 1 else causal_mask(n_queries, self.offset, dtype=dtype)

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        """Append (B, H, T, Dh) keys/values; return everything cached so far (B, H, S, Dh)."""
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = mx.concatenate([self.keys, k], axis=2)  # (B, H, S, Dh)
            self.values = mx.concatenate([self.values, v], axis=2)  # (B, H, S, Dh)
        self.offset += k.shape[2]
        return self.keys, self.values


class FixedKVCache:
    """Keys and values of one decoder layer in buffers (B, H, S, Dh) of a fixed size S, written
    in place at ``offset`` (a 0-d int32 array); keys at or after the next query's position
    are masked out.

    >>> growing = KVCache()
    >>> _ = growing.update_and_fetch(mx.ones((1, 2, 1, 4)), mx.ones((1, 2, 1, 4)))
    >>> cache = FixedKVCache.from_cache(growing, size=4)
    >>> k, v = cache.update_and_fetch(mx.ones((1, 2, 1, 4)), mx.ones((1, 2, 1, 4)))
    >>> cache.offset.item(), k.shape, cache.make_mask(1).tolist()
    (2, (1, 2, 4, 4), [[0.0, 0.0, 0.0, -inf]])
    """

    def __init__(self, keys: mx.array, values: mx.array, offset: mx.array):
        self.keys, self.values, self.offset = keys, values, offset

    @classmethod
    def from_cache(cls, cache: KVCache, size: int) -> FixedKVCache:
        """A copy of a filled growing cache in buffers of ``size`` positions."""
        pad = [(0, 0), (0, 0), (0, size - cache.offset), (0, 0)]  # zeros after the offset
        return cls(mx.pad(cache.keys, pad), mx.pad(cache.values, pad), mx.array(cache.offset))

    def make_mask(self, n_queries: int, dtype: mx.Dtype = mx.float32) -> mx.array:
        """``causal_mask`` over the whole buffer: the empty slots are masked too."""
        return causal_mask(n_queries, self.offset, self.keys.shape[2], dtype)

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        """Write (B, H, T, Dh) keys/values at ``offset``; return the buffers (B, H, S, Dh)."""
        self.keys = mx.slice_update(self.keys, k, self.offset, axes=(2,))
        self.values = mx.slice_update(self.values, v, self.offset, axes=(2,))
        self.offset = self.offset + k.shape[2]
        return self.keys, self.values


def make_cache(n_layers: int) -> list[KVCache]:
    """One growing cache per decoder layer, for one generation call.

    >>> len(make_cache(4))
    4
    """
    return [KVCache() for _ in range(n_layers)]
