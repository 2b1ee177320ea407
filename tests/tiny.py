"""A tiny untrained model bundle for fast tests (random weights, real tokenizer)."""

from __future__ import annotations

import mlx.core as mx

from core.checkpoint import Bundle, PropertyScale
from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer

SELFIES = ["[C][C][O]", "[C][=C][C][=C][C][=C][Ring1][=Branch1]", "[N][C][C][=O]", "[C][Cl]"]


def tiny_bundle(seed: int = 0, **overrides) -> Bundle:
    """A 2-layer model small enough to build in milliseconds."""
    tokenizer = Tokenizer.build(SELFIES)
    params = dict(
        vocab_size=len(tokenizer), max_len=16, d_model=32, n_heads=4, n_layers=2, d_ff=64,
        enc_d_model=16, enc_heads=2, enc_layers=1, enc_d_ff=32, latent_dim=4,
    )  # fmt: skip
    args = ModelArgs(**{**params, **overrides})
    mx.random.seed(seed)
    model = Model(args)
    mx.eval(model.parameters())
    model.eval()
    scales = {"logp": PropertyScale(2.5, 1.0, -1.0, 5.0), "tpsa": PropertyScale(60, 20, 10, 130)}
    return Bundle(model, tokenizer, args, scales, {"note": "tiny test model"})
