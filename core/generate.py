"""Autoregressive generation: samplers, the ``generate_step`` generator, and the
``python -m core.generate`` command line.

``generate_step`` yields one ``Step`` per decoded position; the dashboard (step by step) and
the batch functions below both consume it. Each call builds and evaluates its whole graph in
the calling thread and keeps its caches (``core.cache``) to itself, so one loaded model serves
many threads.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from core.blas import one_blas_thread
from core.cache import FixedKVCache, make_cache
from core.checkpoint import Bundle
from core.closed_loop import MAX_RING, Aim, ClosedLoop, redraw_key
from core.errors import UserError
from core.pairs import in_pairs
from core.sidecar import MIN_ITEMS

MAX_MOLECULES = 100_000  # largest --n accepted by the command line
MAX_COMPILED_STEPS = 16  # compiled decoding steps kept per model, least recently used dropped
# a compiled batch of at least this many rows shrinks once three quarters of them have ended
# (``_shrink``): a few long molecules no longer keep the whole batch's decoder busy
SHRINK_FROM = 16
SAMPLER_SETTINGS = ("temperature", "top_k", "top_p")  # values, passed to a compiled step


class GenerationError(UserError, ValueError):
    """Bad generation input: unknown property, non-finite target, invalid prefix..."""


@dataclass(frozen=True)
class Sampler:
    """Picks token ids (B,) from logits (B, V); build it with ``make_sampler``.

    Which truncations apply is decided by the fields (its ``structure``); their values can
    come in as one array (``settings``), so a compiled decoding step serves every value.
    """

    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k truncation
    top_p: float = 1.0  # 1 means no nucleus truncation

    def settings(self) -> mx.array:
        """(3,) float32: temperature, top-k, top-p.

        >>> Sampler(0.5, 10).settings().tolist()
        [0.5, 10.0, 1.0]
        """
        return mx.array([getattr(self, name) for name in SAMPLER_SETTINGS], dtype=mx.float32)

    def structure(self) -> tuple:
        """What shapes the computation, not its values: the class, the other fields, and
        which of greedy, top-k and top-p apply.

        >>> Sampler(0.5, 10).structure() == Sampler(1.5, 3).structure() != Sampler(0.5).structure()
        True
        """
        others = [getattr(self, f.name) for f in fields(self) if f.name not in SAMPLER_SETTINGS]
        return (type(self), *others, self.temperature == 0, self.top_k > 0, self.top_p < 1)

    def probabilities(self, logits: mx.array, settings: mx.array | None = None) -> mx.array:
        """The distribution after temperature, before truncation (what the dashboard shows)."""
        temperature = (self.settings() if settings is None else settings)[0]
        return mx.softmax(logits / mx.maximum(temperature, 1e-6), axis=-1)

    def __call__(
        self, logits: mx.array, key: mx.array, settings: mx.array | None = None
    ) -> mx.array:
        """Token ids (B,) drawn from logits (B, V) with ``key``; ``settings`` (default this
        sampler's) must have the same ``structure``."""
        if self.temperature == 0:
            return mx.argmax(logits, axis=-1)
        temperature, top_k, top_p = self.settings() if settings is None else settings
        logits = logits / temperature
        if self.top_k > 0:  # k >= V keeps everything: the k-th largest is then the smallest
            V = logits.shape[-1]
            k = mx.minimum(top_k, V).astype(mx.int32)
            kth = mx.take(mx.sort(logits, axis=-1), V - k, axis=-1)[:, None]  # (B, 1)
            logits = mx.where(logits < kth, -mx.inf, logits)
        if self.top_p < 1:
            order = mx.argsort(-logits, axis=-1)
            probs = mx.softmax(mx.take_along_axis(logits, order, axis=-1), axis=-1)
            drop_sorted = (mx.cumsum(probs, axis=-1) - probs) > top_p
            drop = mx.put_along_axis(mx.zeros_like(drop_sorted), order, drop_sorted, axis=-1)
            logits = mx.where(drop, -mx.inf, logits)
        return mx.random.categorical(logits, key=key)


def make_sampler(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Sampler:
    """A sampler: (logits (B, V), key) -> token ids (B,).

    >>> sample = make_sampler(temperature=0.0)
    >>> sample(mx.array([[0.1, 2.0, 0.3]]), mx.random.key(0)).tolist()
    [1]
    """
    if not math.isfinite(temperature) or temperature < 0:
        raise GenerationError(f"temperature must be a finite number ≥ 0, got {temperature}")
    if top_k < 0 or not 0 < top_p <= 1:
        raise GenerationError("top-k must be ≥ 0 and top-p in (0, 1]")
    return Sampler(float(temperature), int(top_k), float(top_p))


@dataclass
class Step:
    """One decoding step for a batch of B sequences."""

    index: int  # 0 for the first generated token
    tokens: np.ndarray  # (B,) chosen token ids ([PAD] once a sequence has ended)
    top_ids: np.ndarray  # (B, K) most probable next tokens, best first
    top_probs: np.ndarray  # (B, K) their probabilities (after temperature, before truncation)
    done: np.ndarray  # (B,) True once [EOS] was chosen
    attention: list[np.ndarray] | None  # per layer (B, H, S): this position's attention
    # (B, P) properties (real units) of the molecule decoded so far, which a closed-loop
    # model reads as the gap to its targets at the next position; None without feedback
    prefix_props: np.ndarray | None = None
    # closed loop (``core.closed_loop``): per row the token ids drawn at this step and refused
    # because they closed a ring larger than max_ring (the chosen token replaced them), and
    # (B,) True where the molecule ended here because no further symbol could change it
    refused: list[list[int]] | None = None
    completed: np.ndarray | None = None


def condition_arrays(bundle: Bundle, targets: dict[str, float | np.ndarray | None], n: int):
    """Normalised values and presence flags (n, P) for targets in real units (None = free;
    an array of n values gives each row its own target)."""
    unknown = set(targets) - set(bundle.properties)
    if unknown:
        raise GenerationError(
            f"unknown properties {sorted(unknown)}; model has {bundle.properties}"
        )
    values, present = [], []
    for name in bundle.properties:
        target = targets.get(name)
        column = np.zeros(n) if target is None else np.broadcast_to(np.asarray(target, float), n)
        if not np.isfinite(column).all():
            raise GenerationError(f"target for {name} must be a finite number, got {target}")
        values.append(bundle.scales[name].normalise(column))
        present.append(np.full(n, 0.0 if target is None else 1.0))
    as_array = lambda cols: mx.array(np.stack(cols, axis=1).astype(np.float32))  # noqa: E731
    return as_array(values), as_array(present)


def encode_prefix(bundle: Bundle, prefix: str) -> list[int]:
    """Token ids of a SELFIES prefix; GenerationError if a symbol is unknown or malformed."""
    from core.tokenizer import TokenizerError

    if not prefix:
        return []
    try:
        ids = bundle.tokenizer.encode(prefix, eos=False, strict=True)
    except TokenizerError as exc:
        raise GenerationError(f"invalid --prefix: {exc}") from exc
    if len(ids) >= bundle.args.max_len:
        raise GenerationError(f"prefix is longer than the model's {bundle.args.max_len} tokens")
    return ids


def generate_step(
    bundle: Bundle,
    targets: dict[str, float | None],
    *,
    n: int = 1,
    seed: int = 0,
    sampler: Sampler | None = None,
    prefix: str = "",
    z: mx.array | None = None,
    cfg_scale: float = 1.0,
    report_top: int = 5,
    return_attention: bool = False,
    max_tokens: int | None = None,
    feedback: bool = True,
    max_ring: int | None = MAX_RING,
    finish_window: Mapping[str, float] | None = None,
) -> Iterator[Step]:
    """Decode ``n`` molecules token by token, yielding a ``Step`` after each token.

    ``z`` (n, latent_dim) defaults to a draw from the prior; ``cfg_scale`` > 1 applies
    classifier-free guidance against the unconditioned prediction. A closed-loop model
    (``args.feedback``) reads after every token the properties of each molecule so far,
    computed with RDKit, never closes a ring of more than ``max_ring`` atoms (None: any) and
    ends a molecule once no more symbols can change it (``core.closed_loop``);
    ``finish_window`` (± per property, e.g. ``core.evaluate.hit_windows``) also draws again
    a symbol that would end a molecule outside the window of a target (``Aim``: a decoding
    aid, off by default); ``feedback=False`` freezes what it reads at the prefix's molecule
    (an open-loop experiment: the model no longer sees its progress). At most ``max_tokens``
    tokens are written (default: up to ``Bundle.token_limit``, the longest SELFIES the
    decoder was trained on and its [EOS], the prefix included; at most the model's
    ``max_len``); more raise GenerationError when the first step is asked for.
    """
    args = bundle.args
    sampler = sampler or make_sampler()
    settings = sampler.settings()
    z_key, tokens_key = mx.random.split(mx.random.key(seed))
    if z is None:
        z = mx.random.normal((n, args.latent_dim), key=z_key)
    props, present = condition_arrays(bundle, targets, n)
    prefix_ids = encode_prefix(bundle, prefix)
    limit, end = _token_limit(bundle, len(prefix_ids), max_tokens)
    loop = _closed_loop(bundle, targets, n, prefix, feedback, max_ring, finish_window)
    forward = _Forward(bundle, z, props, present, cfg_scale, return_attention)
    tokens = mx.array([prefix_ids] * n, dtype=mx.int32).reshape(n, len(prefix_ids))  # (n, L)
    logits, weights = forward(tokens, None if loop is None else loop.table, start=True)
    done = mx.zeros((n,), dtype=mx.bool_)
    # one key per absolute position: decoding from a prefix of an earlier run's own tokens
    # continues exactly as that run did (the dashboard steps this way)
    rng_keys = mx.random.split(tokens_key, args.max_len)
    pick = _picker(bundle, sampler, report_top)
    compiled = _compiled_positions(bundle, sampler, report_top, n, forward, limit)
    finished = np.zeros(n, dtype=bool)  # rows ended so far
    reads = None if loop is None else loop.latest  # (n, 1, P) normalised
    with _blas_threads(loop, n):
        for index in range(limit):
            position = len(prefix_ids) + index  # of the symbol chosen now, in the molecule
            if index == 0 or compiled is None:
                token, top_ids, top_probs, done, logits = pick(
                    logits, rng_keys[position], done, settings
                )
            else:
                token, top_ids, top_probs, done, logits = compiled(
                    token, rng_keys, done, props, present, reads, settings, finished
                )
            attn = [w[:, :, -1] for w in weights] if return_attention else []
            mx.eval(token, top_ids, top_probs, done, *attn)
            chosen, finished = np.array(token), np.array(done)
            if loop is not None:
                redraw = _redrawer(sampler, logits, settings, (seed, position))
                room = end - position - 1  # symbols the model could still write
                chosen, finished, reads = loop.push(chosen, finished, room, redraw)
                token, done = mx.array(chosen, dtype=token.dtype), mx.array(finished)
            yield _report(index, chosen, finished, top_ids, top_probs, attn, return_attention, loop)
            if finished.all() or index == limit - 1:
                return
            if compiled is None:
                logits, weights = forward(token[:, None], reads)


def _compiled_positions(
    bundle: Bundle, sampler: Sampler, report_top: int, n: int, forward: _Forward, limit: int
) -> _CompiledSteps | None:
    """The positions after the first as one compiled function over fixed-size caches (about 3x
    less time per token at batch 1 on CPU); None with guidance or attention maps, or for a
    single position (``forward`` then runs each one)."""
    if forward.cfg_scale == 1.0 and not forward.return_attention and limit > 1:
        return _CompiledSteps(bundle, sampler, report_top, n, forward)
    return None


def _blas_threads(loop: ClosedLoop | None, n: int) -> contextlib.AbstractContextManager:
    """OpenBLAS on one thread while a closed loop shares its RDKit work with the sidecar's
    helper process (``n`` >= ``MIN_ITEMS``): the two keep both cores busy between steps, and a
    second BLAS thread would spin on one of them (``core.blas.one_blas_thread``)."""
    return one_blas_thread() if loop is not None and n >= MIN_ITEMS else contextlib.nullcontext()


def _closed_loop(
    bundle: Bundle,
    targets: dict[str, float | None],
    n: int,
    prefix: str,
    feedback: bool,
    max_ring: int | None,
    finish_window: Mapping[str, float] | None,
) -> ClosedLoop | None:
    """The closed loop ``generate_step`` pushes each chosen symbol through (None for an
    open-loop model); finishing on target (``finish_window``) needs a closed-loop model."""
    if not bundle.args.feedback:
        if finish_window is not None:
            raise GenerationError("finishing on target needs a closed-loop (feedback) model")
        return None
    aim = None
    if finish_window is not None:
        aim = Aim.build(bundle.properties, targets, finish_window, n)
    return ClosedLoop(bundle, n, prefix, feedback, max_ring, aim)


class _CompiledSteps:
    """The positions after the first of one ``generate_step`` call: a compiled step
    (``_compiled_step``) over fixed-size caches copied from ``forward``'s, on the rows it
    still decodes, which shrink to the unfinished ones as molecules end (``_shrink``)."""

    def __init__(self, bundle: Bundle, sampler: Sampler, report_top: int, n: int, forward):
        self.bundle, self.sampler, self.report_top, self.n = bundle, sampler, report_top, n
        self.forward = forward
        self.step = _compiled_step(bundle, sampler, report_top, n, n)
        self.state: tuple | None = None  # filled from the first position's caches
        self.rows = np.arange(n)  # all but some ended ones

    def __call__(self, token, rng_keys, done, props, present, reads, settings, finished):
        """(token, top_ids, top_probs, done, logits) of the next position, over all n rows;
        ``finished`` (n,): the rows that have ended."""
        if self.state is None:
            self.state = _state(self.forward.fixed_caches())
        keep = _shrink(self.rows, finished)
        if keep is not None:
            self.state, self.rows = _take_rows(self.state, keep), self.rows[keep]
            m = len(self.rows)
            self.step = _compiled_step(self.bundle, self.sampler, self.report_top, self.n, m)
        *out, self.state = self.step(
            token, rng_keys, done, props, present, reads, settings, self.state,
            mx.array(self.rows),
        )  # fmt: skip
        return tuple(out)


def _shrink(rows: np.ndarray, finished: np.ndarray) -> np.ndarray | None:
    """Which of the compiled step's ``rows`` to keep once at most a quarter of them are
    unfinished (``finished``: (n,) over all rows): the unfinished ones, padded with ended ones
    to a power of two (few batch sizes, few compiled steps); None: keep them all.

    >>> _shrink(np.arange(20), np.arange(20) % 7 != 3).tolist()  # 3 left: 4 rows
    [0, 3, 10, 17]
    >>> _shrink(np.arange(20), np.arange(20) > 7) is None
    True
    """
    alive = ~finished[rows]
    count = int(alive.sum())
    if len(rows) < SHRINK_FROM or count > len(rows) // 4:
        return None
    size = 1 << max(count - 1, 0).bit_length()  # the power of two >= count
    kept = np.concatenate([np.flatnonzero(alive), np.flatnonzero(~alive)[: size - count]])
    return np.sort(kept)


def _take_rows(state: tuple, keep: np.ndarray) -> tuple:
    """A compiled step's state (``_state``) for the cache rows ``keep`` only."""
    offset, keys, values = state
    index = mx.array(keep)
    return offset, [k[index] for k in keys], [v[index] for v in values]


def _report(index, chosen, finished, top_ids, top_probs, attn, with_attention, loop) -> Step:
    """The ``Step`` of one position: candidates best first, what the closed loop did."""
    order = np.argsort(-np.array(top_probs), axis=-1, kind="stable")  # best first
    return Step(
        index=index,
        tokens=chosen,
        top_ids=np.take_along_axis(np.array(top_ids), order, axis=-1),
        top_probs=np.take_along_axis(np.array(top_probs), order, axis=-1),
        done=finished,
        attention=[np.array(a) for a in attn] if with_attention else None,
        prefix_props=None if loop is None else loop.raw.copy(),
        refused=None if loop is None else loop.refused,
        completed=None if loop is None else loop.completed,
    )


def _token_limit(bundle: Bundle, n_prefix: int, max_tokens: int | None) -> tuple[int, int]:
    """How many tokens a call may write after a prefix of ``n_prefix`` symbols (by default
    up to ``bundle.token_limit``, at least one, at most up to the position table's end), and
    how many tokens a molecule may reach (what the finishing check counts its room from)."""
    args = bundle.args
    room = args.max_len - n_prefix  # the position table ends after max_len tokens
    default = min(room, max(1, bundle.token_limit - n_prefix))
    limit = default if max_tokens is None else max_tokens
    if not 0 < limit <= room:
        after = f" after a prefix of {n_prefix}" if n_prefix else ""
        raise GenerationError(
            f"max_tokens must be between 1 and {room} (the model writes at most "
            f"{args.max_len} tokens{after}), got {limit}"
        )
    return limit, max(bundle.token_limit, n_prefix + limit)


class _Forward:
    """The decoder over one call's caches: the conditioned distribution and, with guidance
    (``cfg_scale`` != 1), the unconditioned one, a cache each."""

    def __init__(self, bundle, z, props, present, cfg_scale: float, return_attention: bool):
        self.model, self.bos = bundle.model, bundle.tokenizer.bos_id
        self.z, self.props, self.cfg_scale = z, props, cfg_scale
        self.return_attention = return_attention
        n_layers = bundle.args.n_layers
        self.streams = [(present, make_cache(n_layers))]
        if cfg_scale != 1.0:
            self.streams.append((mx.zeros_like(present), make_cache(n_layers)))

    def __call__(self, ids: mx.array, reads: mx.array | None, start: bool = False):
        """Logits (n, V) after token ids (n, T) (``start``: behind the prefix and [BOS]),
        guided if asked, and the conditioned stream's attention weights."""
        model, outs = self.model, []
        for flags, cache in self.streams:
            if start:
                x = model.decoder_inputs(self.z, self.props, flags, ids, self.bos, reads)
            else:
                x = model.decoder.embed_tokens(ids, self.props, flags, reads)  # (n, T, d)
            logits, weights = model.decoder(x, cache, self.return_attention)
            outs.append((logits[:, -1], weights))
        (logits, weights), *unconditioned = outs
        if unconditioned:
            free = unconditioned[0][0]
            logits = free + self.cfg_scale * (logits - free)
        return logits, weights

    def fixed_caches(self) -> list[FixedKVCache]:
        """The conditioned stream's caches copied into fixed-size ones (for a compiled step)."""
        size = self.model.decoder.pos.weight.shape[0]
        return [FixedKVCache.from_cache(c, size) for c in self.streams[0][1]]


def _redrawer(sampler: Sampler, logits: mx.array, settings: mx.array, where: tuple[int, int]):
    """(row, refused token ids) -> a token drawn for that row from this step's ``logits``
    (B, V) without the refused ones; each redraw has a key of its own (``where``: the seed
    and the position)."""

    def redraw(row: int, refused: list[int]) -> int:
        banned = mx.zeros((logits.shape[-1],)).at[mx.array(refused)].add(-mx.inf)
        key = redraw_key(*where, row, len(refused))
        return int(sampler(logits[row : row + 1] + banned, key, settings)[0])

    return redraw


def _picker(bundle: Bundle, sampler: Sampler, report_top: int):
    """(logits (B, V), key, done, settings) -> (token, top_ids, top_probs, done, logits): the
    sampled token ([PAD] once a row is done; [PAD], [BOS] and [UNK] never chosen), the k most
    likely tokens, unordered, and the logits it drew from; ``settings`` of a sampler with
    ``sampler``'s structure."""
    tok = bundle.tokenizer
    banned = mx.zeros((len(tok),)).at[mx.array([tok.pad_id, tok.bos_id, tok.unk_id])].add(-mx.inf)
    mx.eval(banned)  # evaluated here: a compiled step may run it in another thread

    def pick(logits: mx.array, key: mx.array, done: mx.array, settings: mx.array):
        logits = logits + banned
        token = mx.where(done, tok.pad_id, sampler(logits, key, settings))
        probs = sampler.probabilities(logits, settings)
        k = min(report_top, probs.shape[-1])
        top_ids = mx.argpartition(-probs, kth=k - 1, axis=-1)[:, :k]
        top_probs = mx.take_along_axis(probs, top_ids, axis=-1)
        # a row that had ended has no candidates: [PAD] at probability 0
        top_ids = mx.where(done[:, None], tok.pad_id, top_ids)
        top_probs = mx.where(done[:, None], 0.0, top_probs)
        return token, top_ids, top_probs, done | (token == tok.eos_id), logits

    return pick


_COMPILED_LOCK = threading.Lock()


def _step_table(model) -> OrderedDict:
    """The model's compiled decoding steps, least recently used first (not a parameter)."""
    table = model.__dict__.get("_molscope_steps")
    if table is None:
        table = OrderedDict()
        object.__setattr__(model, "_molscope_steps", table)
    return table


def _compiled_step(bundle: Bundle, sampler: Sampler, report_top: int, n: int, m: int) -> Callable:
    """``mx.compile`` of one decoding position over fixed-size caches: (token, rng_keys, done,
    props, present, reads, settings, state, rows) -> (token, top_ids, top_probs, done, logits,
    state), with state = (offset, keys per layer, values per layer). The inputs and outputs
    cover all ``n`` rows; the decoder runs on the ``m`` ``rows`` the caches hold (the others
    have ended, their logits are 0), so each row draws its token as in the whole batch. One
    per sampler structure, report size and batch sizes (so each holds one trace), at most
    ``MAX_COMPILED_STEPS`` per model."""
    key = (sampler.structure(), report_top, n, m)
    with _COMPILED_LOCK:
        table = _step_table(bundle.model)
        fn = table.pop(key, None)
        if fn is None:
            fn = _thread_safe_step(bundle, sampler, report_top, n)
        table[key] = fn
        while len(table) > MAX_COMPILED_STEPS:
            table.popitem(last=False)  # its traces go with it
    return fn


def _thread_safe_step(bundle: Bundle, sampler: Sampler, report_top: int, n: int) -> Callable:
    """The compiled step of ``_compiled_step``, safe to call from many threads at once.

    Tracing swaps placeholder arrays into the weights of the module it reads. It reads a
    decoder of its own (``shadow``), given the shared decoder's weights as an argument on
    every call (so a later ``load_weights`` is seen): another thread running the shared
    decoder meanwhile never meets a placeholder. Calls take a lock, as a trace fills the
    shadow; a call only builds the graph, evaluation happens after it, outside the lock."""
    decoder, pick = bundle.model.decoder, _picker(bundle, sampler, report_top)
    shadow = _clone(decoder)
    n_prefix = bundle.args.n_prefix

    def step(weights, token, rng_keys, done, props, present, reads, settings, state, rows):
        shadow.update(weights)
        offset, keys, values = state
        cache = [FixedKVCache(k, v, offset) for k, v in zip(keys, values, strict=True)]
        props, present, token = props[rows], present[rows], token[rows]
        reads = None if reads is None else reads[rows]
        x = shadow.embed_tokens(token[:, None], props, present, reads)  # (m, 1, d)
        logits, _ = shadow(x, cache)
        logits = mx.zeros((n, logits.shape[-1]), logits.dtype).at[rows].add(logits[:, -1])
        # the token fed in sits at position offset; the one sampled here is symbol
        # offset - n_prefix of the molecule (prefix included), and takes that key
        rng_key = mx.take(rng_keys, offset - n_prefix, axis=0)
        return (*pick(logits, rng_key, done, settings), _state(cache))

    compiled, lock = mx.compile(step), threading.Lock()

    def call(*inputs):
        with lock:
            return compiled(decoder.parameters(), *inputs)

    return call


def _clone(module: nn.Module) -> nn.Module:
    """A copy of ``module`` and its submodules that shares their arrays (weights update apart)."""
    copied = copy.copy(module)
    for name, value in module.items():
        if isinstance(value, nn.Module):
            copied[name] = _clone(value)
        elif isinstance(value, list):
            copied[name] = [_clone(v) if isinstance(v, nn.Module) else v for v in value]
    return copied


def _state(cache: list[FixedKVCache]) -> tuple:
    """What a compiled step passes on: (offset, keys per layer, values per layer)."""
    return cache[0].offset, [c.keys for c in cache], [c.values for c in cache]


def generate(
    bundle: Bundle,
    targets: dict[str, float | np.ndarray | None],
    n: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    prefix: str = "",
    cfg_scale: float = 1.0,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    max_ring: int | None = MAX_RING,
    finish_window: Mapping[str, float] | None = None,
) -> list[str]:
    """Generate ``n`` SELFIES strings (prefix included) at the given targets (a number, or an
    array of ``n`` numbers: one target per molecule); ``max_ring`` and ``finish_window`` as
    in ``generate_step``. Batches of ``batch_size`` run two at a time (``core.pairs``), each
    with its own seed (``seed`` + its first row), so the molecules do not depend on that."""
    if n <= 0:
        raise GenerationError(f"n must be positive, got {n}")
    sampler = make_sampler(temperature, top_k)

    def batch(start: int) -> list[str]:
        b = min(batch_size, n - start)
        rows = {  # per-row target arrays are cut into the batch's rows
            k: v[start : start + b] if isinstance(v, np.ndarray) and v.ndim else v
            for k, v in targets.items()
        }
        steps = [
            s.tokens
            for s in generate_step(
                bundle,
                rows,
                n=b,
                seed=seed + start,
                sampler=sampler,
                prefix=prefix,
                cfg_scale=cfg_scale,
                report_top=1,
                max_ring=max_ring,
                finish_window=finish_window,
            )
        ]
        ids = np.stack(steps, axis=1) if steps else np.zeros((b, 0), dtype=np.int32)
        return [prefix + bundle.tokenizer.decode(row) for row in ids]

    out: list[str] = []

    def done(selfies: list[str]) -> None:
        out.extend(selfies)
        if progress:
            progress(len(out))

    in_pairs(batch, range(0, n, batch_size), done)  # two batches at a time (core.pairs)
    return out


def score(selfies: list[str], properties: tuple[str, ...] = ("logp", "tpsa")):
    """DataFrame with ``selfies, smiles`` (canonical, "" if none) and RDKit ``properties``."""
    import pandas as pd
    from rdkit import Chem

    from core.chem import describe, rdkit_quiet, selfies_to_mol

    rows = []
    with rdkit_quiet():
        for s in selfies:
            mol = selfies_to_mol(s)
            if mol is None or mol.GetNumAtoms() == 0:
                rows.append({"selfies": s, "smiles": "", **{p: float("nan") for p in properties}})
                continue
            rows.append(
                {"selfies": s, "smiles": Chem.MolToSmiles(mol), **describe(mol, properties)}
            )
    return pd.DataFrame(rows, columns=["selfies", "smiles", *properties])


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.checkpoint import CheckpointError, load_checkpoint
    from core.evaluate import hit_windows
    from core.targets import cli_targets, csv_properties

    if not 0 < args.n <= MAX_MOLECULES:
        raise GenerationError(f"--n must be between 1 and {MAX_MOLECULES}, got {args.n}")
    bundle = load_checkpoint(args.checkpoint)
    targets = cli_targets(bundle.properties, args.logp, args.tpsa, args.target)
    encode_prefix(bundle, args.prefix)  # bad input fails here, before any progress output
    if args.on_target and not bundle.args.feedback:
        raise GenerationError("--on-target needs a closed-loop (feedback) model")
    make_sampler(args.temperature, args.top_k)
    with tqdm(total=args.n, desc="generating", unit="mol", file=sys.stderr) as bar:
        selfies = generate(
            bundle,
            targets,
            args.n,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            prefix=args.prefix,
            cfg_scale=args.cfg_scale,
            progress=lambda done: bar.update(done - bar.n),
            finish_window=hit_windows(bundle.scales) if args.on_target else None,
        )
    table = score(selfies, csv_properties(bundle.properties))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".partial")
        try:
            table.to_csv(tmp, index=False)
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"cannot write {out}: {exc.strerror or exc}") from exc
        valid = (table.smiles != "").mean()
        print(f"wrote {len(table)} molecules to {out} (valid {valid:.3f})", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    from core.cli import OneLineParser, run_cli

    parser = OneLineParser(description="Generate molecules at target LogP / TPSA.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder")
    parser.add_argument("--logp", type=float, help="target LogP (omit: unconditioned)")
    parser.add_argument("--tpsa", type=float, help="target TPSA in Å² (omit: unconditioned)")
    parser.add_argument(
        "--target", action="append", default=[], metavar="NAME=VALUE",
        help="target of any other property of the checkpoint, e.g. qed=0.7 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--n", type=int, default=10, help="number of molecules")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k best (0: all)")
    parser.add_argument("--prefix", default="", help="SELFIES to start every molecule with")
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance")
    parser.add_argument(
        "--on-target", action="store_true",
        help="redraw a symbol that would end a molecule outside the hit windows of its targets "
        "(±0.5 LogP, ±10 Å² TPSA; a decoding aid that knows the targets)",
    )  # fmt: skip
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    run_cli(main, parser)
