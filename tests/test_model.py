"""Properties of the model: causality, mask placement, fast == inspection attention, one
decoder forward path for every cache, and the parameter names trained checkpoints carry."""

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from tiny import tiny_bundle

from core.cache import FixedKVCache, make_cache
from core.model import Attention, Model, ModelArgs, causal_mask

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _inputs(bundle, B=3, T=10, seed=1):
    mx.random.seed(seed)
    V = bundle.args.vocab_size
    ids = mx.random.randint(4, V, (B, T))
    valid = mx.ones((B, T), dtype=mx.bool_)
    props = mx.random.normal((B, 2))
    present = mx.ones((B, 2))
    eps = mx.zeros((B, bundle.args.latent_dim))
    return ids, valid, props, present, eps


def test_fast_attention_equals_inspection_path(bundle):
    ids, valid, props, present, eps = _inputs(bundle)
    fast = bundle.model(ids, valid, props, present, eps, 1)[0]
    slow, *_, weights = bundle.model(ids, valid, props, present, eps, 1, return_weights=True)
    assert np.allclose(np.array(fast), np.array(slow), atol=1e-5)
    assert len(weights) == bundle.args.n_layers
    w = np.array(weights[0])
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(w[0, 0], k=1) == 0.0)  # masked before the softmax: exactly zero


def test_future_token_never_changes_earlier_logits(bundle):
    """Decoder logits at position t depend only on tokens < t (z and conditions fixed)."""
    ids, valid, props, present, eps = _inputs(bundle)
    model = bundle.model
    z = mx.zeros((ids.shape[0], bundle.args.latent_dim))
    x = model.decoder_inputs(z, props, present, ids[:, :-1], 1)
    base = np.array(model.decoder(x)[0])
    for t in range(2, ids.shape[1] - 1):
        changed = ids.at[:, t].add(1) % bundle.args.vocab_size
        x2 = model.decoder_inputs(z, props, present, changed[:, :-1], 1)
        out = np.array(model.decoder(x2)[0])
        pos = bundle.args.n_prefix + 1 + t  # decoder position of token t
        assert np.abs(out[:, :pos] - base[:, :pos]).max() == 0.0
        assert np.abs(out[:, pos:] - base[:, pos:]).max() > 0.0


def test_encoder_is_bidirectional_and_ignores_padding(bundle):
    ids, valid, props, present, _ = _inputs(bundle)
    enc = bundle.model.encoder
    mu = np.array(enc(ids, valid, props, present)[0])
    last_changed = ids.at[:, -1].add(1) % bundle.args.vocab_size
    assert np.abs(np.array(enc(last_changed, valid, props, present)[0]) - mu).max() > 0
    short = mx.concatenate([mx.ones((3, 6), dtype=mx.bool_), mx.zeros((3, 4), dtype=mx.bool_)], 1)
    a = np.array(enc(ids, short, props, present)[0])
    b = np.array(enc(last_changed, short, props, present)[0])
    assert np.allclose(a, b, atol=1e-6)  # a padded position cannot leak into mu


def test_conditions_reach_the_decoder_logits(bundle):
    """With z fixed (the encoder out of the loop), the condition values and the presence
    flags each change the decoder's logits."""
    ids, _, props, present, _ = _inputs(bundle)
    model = bundle.model
    z = mx.zeros((ids.shape[0], bundle.args.latent_dim))

    def logits(p, flags):
        return np.array(model.decoder(model.decoder_inputs(z, p, flags, ids[:, :-1], 1))[0])

    a = logits(props, present)
    assert np.abs(a - logits(props + 1.0, present)).max() > 1e-4
    assert np.abs(a - logits(props, mx.zeros_like(present))).max() > 1e-4


def test_causal_mask_with_offset():
    m = np.array(causal_mask(2, offset=3))
    assert m.shape == (2, 5)
    assert np.isneginf(m[0, 4]) and m[0, 3] == 0 and m[1, 4] == 0


def test_attention_mask_is_added_before_softmax():
    attn = Attention(8, 2)
    mx.eval(attn.parameters())
    x = mx.random.normal((1, 4, 8))
    _, w = attn(x, causal_mask(4), return_weights=True)
    w = np.array(w)
    assert np.allclose(w[0, :, 0, 0], 1.0)  # the first row can only see itself
    assert np.allclose(w.sum(-1), 1.0, atol=1e-6)


def test_model_args_from_dict_ignores_unknown_keys():
    args = ModelArgs.from_dict({"d_model": 64, "some_future_field": 1})
    assert args.d_model == 64


@pytest.mark.parametrize(
    "name, feedback, derivation",
    [("open_loop", False, False), ("closed_loop", True, False),
     ("closed_loop_derivation", True, True)],
)  # fmt: skip
def test_parameter_names_and_shapes_are_those_of_trained_checkpoints(name, feedback, derivation):
    """A checkpoint saved before a refactor of core/model.py loads into it (``load_weights``
    is strict): the same names, the same shapes (frozen in tests/fixtures)."""
    frozen = json.loads((FIXTURES / "model_parameters.json").read_text())
    model = Model(ModelArgs(**frozen["model_args"], feedback=feedback, derivation=derivation))
    shapes = {k: list(v.shape) for k, v in tree_flatten(model.parameters())}
    assert shapes == frozen["parameters"][name]


@pytest.mark.parametrize("feedback", [False, True])
def test_one_forward_path_for_no_cache_growing_and_fixed_caches(feedback):
    """The prefix at once, then one position at a time, through a growing and a fixed-size
    cache: every position's logits equal those of one pass without a cache."""
    bundle = tiny_bundle(feedback=feedback)
    model, args = bundle.model, bundle.args
    ids, _, props, present, _ = _inputs(bundle, B=2, T=9)
    z = mx.random.normal((2, args.latent_dim), key=mx.random.key(4))
    reads = mx.random.normal((2, ids.shape[1], 2), key=mx.random.key(5)) if feedback else None
    x = model.decoder_inputs(z, props, present, ids[:, :-1], 1, reads)  # (B, S, d)
    full = np.array(model.decoder(x)[0])  # (B, S, V)
    start = args.n_prefix + 3
    growing = make_cache(args.n_layers)
    first = np.array(model.decoder(x[:, :start], growing)[0])
    size = model.decoder.pos.weight.shape[0]
    fixed = [FixedKVCache.from_cache(c, size) for c in growing]
    for cache in (growing, fixed):
        rows = [first]
        for t in range(start, x.shape[1]):
            rows.append(np.array(model.decoder(x[:, t : t + 1], cache)[0]))
        assert np.allclose(np.concatenate(rows, axis=1), full, atol=1e-5)
    assert growing[0].offset == fixed[0].offset.item() == x.shape[1]
