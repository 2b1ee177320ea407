"""Decoding measurements in MLX: latency per token at batch 1 with the KV cache (through
``core.generate.generate_step``, compiled or not) and with full recomputation (compiled or
not), a batch of molecules through ``core.generate.generate``, and a closed-loop batch with
the time spent in RDKit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from core.checkpoint import Bundle
from core.closed_loop import ClosedLoop
from core.feedback import PrefixTracker
from core.generate import Sampler, condition_arrays, generate, generate_step, make_sampler


@dataclass(frozen=True)
class EndlessSampler(Sampler):
    """A sampler that never picks [EOS], so every run decodes exactly the tokens asked for."""

    eos_id: int = 2

    def __call__(self, logits: mx.array, key: mx.array, settings: mx.array | None = None):
        is_eos = mx.arange(logits.shape[-1]) == self.eos_id
        return super().__call__(mx.where(is_eos, -mx.inf, logits), key, settings)


def decode_with_cache(
    bundle: Bundle, length: int, seed: int = 0, compiled: bool = True
) -> np.ndarray:
    """The token ids of one molecule of ``length`` tokens through ``generate_step`` (KV
    cache); with ``compiled=False`` its compiled positions run op by op
    (``mx.disable_compile``)."""
    sampler = EndlessSampler(eos_id=bundle.tokenizer.eos_id)
    steps = generate_step(bundle, {}, n=1, seed=seed, sampler=sampler, max_tokens=length)
    if not compiled:
        mx.disable_compile()  # checked at call time: the same step, traced op by op
    try:
        return np.array([int(step.tokens[0]) for step in steps])
    finally:
        mx.enable_compile()


def recompute_position(bundle: Bundle, compiled: bool = False) -> Callable:
    """One position without a cache: the decoder over the whole sequence so far, then what
    ``generate_step`` does per position besides the cache (sample, the probabilities and the
    top 5). ``(z, props, present, tokens, key, prefix) -> (tokens, top_ids, top_probs)``;
    ``compiled`` wraps it in ``mx.compile`` (one trace per sequence length, kept by the
    returned function: build it once and reuse it, as a compiled cache-less decoder would).
    """
    model, tok = bundle.model, bundle.tokenizer
    sampler = EndlessSampler(eos_id=tok.eos_id)
    banned = mx.zeros((len(tok),)).at[mx.array([tok.pad_id, tok.bos_id, tok.unk_id])].add(-mx.inf)

    def position(z, props, present, tokens, key, prefix):
        x = model.decoder_inputs(z, props, present, tokens, tok.bos_id, prefix)  # (1, P+2+t, d)
        logits, _ = model.decoder(x)
        logits = logits[:, -1] + banned
        token = sampler(logits, key)
        probs = sampler.probabilities(logits)
        top_ids = mx.argsort(-probs, axis=-1)[:, :5]
        top_probs = mx.take_along_axis(probs, top_ids, axis=-1)
        return mx.concatenate([tokens, token[:, None].astype(mx.int32)], axis=1), top_ids, top_probs

    # the model's weights as implicit inputs, as core.generate's compiled step takes them
    return mx.compile(position, inputs=model.state) if compiled else position


def decode_without_cache(
    bundle: Bundle, length: int, seed: int = 0, position: Callable | None = None
) -> np.ndarray:
    """The same molecule's token ids, re-running the decoder over the whole sequence for every
    token (``position``: a ``recompute_position``, eager by default), one ``mx.eval`` per token
    and, for a closed-loop model, the properties of the molecule so far
    (``core.feedback.PrefixTracker``), which the positions read.
    """
    position = position or recompute_position(bundle)
    args, tok = bundle.args, bundle.tokenizer
    z_key, tokens_key = mx.random.split(mx.random.key(seed))
    z = mx.random.normal((1, args.latent_dim), key=z_key)
    props, present = condition_arrays(bundle, {}, 1)
    keys = mx.random.split(tokens_key, args.max_len)
    tokens = mx.zeros((1, 0), dtype=mx.int32)
    tracker = PrefixTracker(1, bundle.properties) if args.feedback else None
    reads = None if tracker is None else [bundle.position_reads(tracker.values, tracker.codes)[0]]
    for index in range(length):
        prefix = None if reads is None else mx.array(np.stack(reads)[None])  # (1, 1+t, P)
        tokens, top_ids, top_probs = position(z, props, present, tokens, keys[index], prefix)
        mx.eval(tokens, top_ids, top_probs)
        if tracker is not None:
            token = tok.tokens[tokens[0, -1].item()]
            tracker.push([token])
            reads.append(bundle.position_reads(tracker.values, tracker.codes)[0])
    return np.array(tokens[0])


def generate_batch(bundle: Bundle, n: int, seed: int = 0) -> int:
    """``n`` unconditioned molecules at temperature 1 in one batch; returns the number of
    decoding steps the batch took (its longest molecule, [EOS] included)."""
    selfies = generate(bundle, {}, n, seed=seed, temperature=1.0, batch_size=n)
    longest = max(len(bundle.tokenizer.split(s)) for s in selfies)
    return min(longest + 1, bundle.args.max_len)


@contextlib.contextmanager
def tracker_seconds() -> Iterator[list[float]]:
    """Seconds spent in ``core.closed_loop.ClosedLoop.push`` (SELFIES decoding and RDKit of
    every molecule so far, the ring check and the finishing check) while the block runs, in
    the one-element list it yields."""
    spent = [0.0]
    push = ClosedLoop.push

    def timed(self, *args):
        start = time.perf_counter()
        try:
            return push(self, *args)
        finally:
            spent[0] += time.perf_counter() - start

    ClosedLoop.push = timed
    try:
        yield spent
    finally:
        ClosedLoop.push = push


def generate_closed_loop(
    bundle: Bundle, n: int, targets: dict[str, float], seed: int = 0, feedback: bool = True
) -> tuple[int, float]:
    """``n`` molecules of a closed-loop model at ``targets``, temperature 1, in one batch,
    through ``generate_step`` as ``generate`` calls it (``feedback=False``: the open-loop
    experiment); returns the decoding steps the batch took and the seconds of them spent
    between the neural steps (``ClosedLoop.push``)."""
    sampler = make_sampler(1.0)
    with tracker_seconds() as spent:
        steps = generate_step(
            bundle, targets, n=n, seed=seed, sampler=sampler, report_top=1, feedback=feedback
        )
        n_steps = sum(1 for _ in steps)
    return n_steps, spent[0]


def generate_two_batches(bundle: Bundle, n: int, targets: dict[str, float], seed: int = 0) -> None:
    """``n`` molecules at ``targets``, temperature 1, through ``generate`` as two batches of
    about ``n / 2`` that run at the same time (``core.pairs``): one's RDKit work overlaps the
    other's model steps."""
    generate(bundle, targets, n, seed=seed, temperature=1.0, batch_size=(n + 1) // 2)
