"""Decoding measurements in MLX: latency per token at batch 1 with the KV cache (through
``core.generate.generate_step``) and with full recomputation, and a batch of molecules
through ``core.generate.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from core.checkpoint import Bundle
from core.generate import Sampler, condition_arrays, generate, generate_step


@dataclass(frozen=True)
class EndlessSampler(Sampler):
    """A sampler that never picks [EOS], so every run decodes exactly the tokens asked for."""

    eos_id: int = 2

    def __call__(self, logits: mx.array, key: mx.array) -> mx.array:
        is_eos = mx.arange(logits.shape[-1]) == self.eos_id
        return super().__call__(mx.where(is_eos, -mx.inf, logits), key)


def decode_with_cache(bundle: Bundle, length: int, seed: int = 0) -> None:
    """One molecule of ``length`` tokens through ``generate_step`` (KV cache)."""
    sampler = EndlessSampler(eos_id=bundle.tokenizer.eos_id)
    steps = generate_step(bundle, {}, n=1, seed=seed, sampler=sampler, max_tokens=length)
    for _ in steps:
        pass


def decode_without_cache(bundle: Bundle, length: int, seed: int = 0) -> None:
    """The same molecule, re-running the decoder over the whole sequence for every token.

    Per step it does what ``generate_step`` does besides the cache: sample, take the
    probabilities and the top 5, one ``mx.eval``.
    """
    model, args, tok = bundle.model, bundle.args, bundle.tokenizer
    sampler = EndlessSampler(eos_id=tok.eos_id)
    z_key, tokens_key = mx.random.split(mx.random.key(seed))
    z = mx.random.normal((1, args.latent_dim), key=z_key)
    props, present = condition_arrays(bundle, {}, 1)
    keys = mx.random.split(tokens_key, args.max_len)
    banned = mx.zeros((len(tok),)).at[mx.array([tok.pad_id, tok.bos_id, tok.unk_id])].add(-mx.inf)
    tokens = mx.zeros((1, 0), dtype=mx.int32)
    for index in range(length):
        x = model.decoder_inputs(z, props, present, tokens, tok.bos_id)  # (1, P+2+t, d)
        logits, _ = model.decoder(x)
        logits = logits[:, -1] + banned
        token = sampler(logits, keys[index])
        probs = sampler.probabilities(logits)
        top_ids = mx.argsort(-probs, axis=-1)[:, :5]
        top_probs = mx.take_along_axis(probs, top_ids, axis=-1)
        tokens = mx.concatenate([tokens, token[:, None].astype(mx.int32)], axis=1)
        mx.eval(tokens, top_ids, top_probs)


def generate_batch(bundle: Bundle, n: int, seed: int = 0) -> int:
    """``n`` unconditioned molecules at temperature 1 in one batch; returns the number of
    decoding steps the batch took (its longest molecule, [EOS] included)."""
    selfies = generate(bundle, {}, n, seed=seed, temperature=1.0, batch_size=n)
    longest = max(len(bundle.tokenizer.split(s)) for s in selfies)
    return min(longest + 1, bundle.args.max_len)
