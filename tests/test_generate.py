"""Generation: KV-cached decoding equals full recomputation; seeds reproduce; samplers;
compiled decoding steps stay few; the shipped checkpoint decodes as it did."""

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from tiny import tiny_bundle

from core.checkpoint import load_checkpoint
from core.closed_loop import prefix_inputs
from core.generate import (
    MAX_COMPILED_STEPS,
    GenerationError,
    Sampler,
    _step_table,
    condition_arrays,
    generate,
    generate_step,
    make_sampler,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def test_cached_decoding_equals_full_recomputation(bundle):
    model, args = bundle.model, bundle.args
    targets = {"logp": 2.0, "tpsa": 50.0}
    steps = list(
        generate_step(bundle, targets, n=2, seed=3, sampler=make_sampler(0.0), max_tokens=8)
    )
    tokens = np.stack([s.tokens for s in steps], axis=1)
    props, present = condition_arrays(bundle, targets, 2)
    z = mx.random.normal((2, args.latent_dim), key=mx.random.split(mx.random.key(3))[0])
    for t in range(1, tokens.shape[1]):
        x = model.decoder_inputs(z, props, present, mx.array(tokens[:, :t]), 1)
        logits = np.array(model.decoder(x)[0][:, -1])
        logits[:, [0, 1, 3]] = -np.inf  # [PAD], [BOS], [UNK] are never emitted
        assert np.array_equal(logits.argmax(-1), tokens[:, t])


def test_step_reports_probabilities_and_attention(bundle):
    step = next(generate_step(bundle, {"logp": 1.0}, n=1, return_attention=True, report_top=3))
    assert step.top_probs.shape == (1, 3)
    assert np.all(np.diff(step.top_probs[0]) <= 1e-7)
    assert len(step.attention) == bundle.args.n_layers
    assert np.allclose(step.attention[0].sum(-1), 1.0, atol=1e-5)


def test_same_seed_same_molecules(bundle):
    a = generate(bundle, {"logp": 2.0}, 6, seed=7)
    b = generate(bundle, {"logp": 2.0}, 6, seed=7)
    c = generate(bundle, {"logp": 2.0}, 6, seed=8)
    assert a == b and a != c


def test_prefix_starts_every_molecule(bundle):
    out = generate(bundle, {}, 4, seed=0, prefix="[C][C]")
    assert all(s.startswith("[C][C]") for s in out)
    with pytest.raises(GenerationError):
        generate(bundle, {}, 1, prefix="[Xx]")


def test_bad_targets_and_sampler_arguments(bundle):
    with pytest.raises(GenerationError):
        generate(bundle, {"logp": float("nan")}, 1)
    with pytest.raises(GenerationError):
        generate(bundle, {"mw": 300.0}, 1)
    with pytest.raises(GenerationError):
        make_sampler(-1.0)


def test_top_k_one_is_greedy():
    logits = mx.array([[0.1, 3.0, 0.2, 2.9]])
    sample = make_sampler(1.0, top_k=1)
    assert {int(sample(logits, mx.random.key(i)).item()) for i in range(10)} == {1}


def test_decoding_from_own_prefix_continues_identically(bundle):
    """The dashboard steps by re-decoding from the tokens so far: it must match one run."""
    import selfies as sf

    checked = 0
    for seed in range(30):
        full = generate(bundle, {"tpsa": 70.0}, 1, seed=seed)[0]
        symbols = list(sf.split_selfies(full))
        for k in range(1, len(symbols)):
            prefix = "".join(symbols[:k])
            assert generate(bundle, {"tpsa": 70.0}, 1, seed=seed, prefix=prefix)[0] == full
            checked += 1
    assert checked > 10


@pytest.mark.parametrize(
    ("n", "sampler", "prefix"),
    [
        (1, make_sampler(1.0), ""),
        (5, make_sampler(0.7, 3), "[C]"),
        (3, make_sampler(1.0, 0, 0.8), ""),
    ],
)
def test_compiled_fixed_cache_steps_equal_the_eager_growing_cache(bundle, n, sampler, prefix):
    """Positions after the first run compiled over a fixed-size cache, unless attention is
    asked for (then eagerly, with the growing cache): both give the same tokens and reports."""
    targets = {"logp": 1.0}

    def run(attention: bool, seed: int):
        return [
            (s.tokens, s.top_ids, s.top_probs, s.done)
            for s in generate_step(
                bundle, targets, n=n, seed=seed, sampler=sampler, prefix=prefix,
                report_top=3, return_attention=attention,
            )
        ]  # fmt: skip

    lengths = []
    for seed in range(6):
        fast, eager = run(False, seed), run(True, seed)
        lengths.append(len(fast))
        assert len(fast) == len(eager)
        for a, b in zip(fast, eager, strict=True):
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert max(lengths) > 3  # the compiled steps did run


def test_compiled_step_sees_new_weights():
    one, other = tiny_bundle(seed=1), tiny_bundle(seed=2)
    sampler = make_sampler(1.0)

    def decode(b):
        steps = generate_step(b, {}, n=2, seed=0, sampler=sampler, prefix="[C][C]")
        return [s.top_probs for s in steps]

    before = decode(one)
    one.model.update(other.model.parameters())  # as load_weights does, in place
    after, reference = decode(one), decode(other)
    assert all(np.array_equal(a, b) for a, b in zip(after, reference, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(before, after, strict=False))


@dataclass(frozen=True)
class NeverEnds(Sampler):
    """Never picks [EOS] (a field beside the settings: part of the compiled step's key)."""

    eos_id: int = 2

    def __call__(self, logits, key, settings=None):
        is_eos = mx.arange(logits.shape[-1]) == self.eos_id
        return super().__call__(mx.where(is_eos, -mx.inf, logits), key, settings)


def _tokens_and_probs(bundle, *, attention: bool, **kwargs):
    steps = generate_step(bundle, {"logp": 1.0}, return_attention=attention, **kwargs)
    return [(s.tokens, s.top_ids, s.top_probs, s.done) for s in steps]


def test_compiled_steps_stay_few_whatever_the_sampler_settings():
    """50 sampler settings and batch sizes, as the Batch tab allows: the model keeps at most
    MAX_COMPILED_STEPS compiled steps, settings with one structure share one, and every run
    equals the eager path."""
    bundle = tiny_bundle(seed=5)
    table = _step_table(bundle.model)
    rng = np.random.default_rng(0)
    for i in range(50):
        temperature = 0.0 if i % 10 == 0 else float(rng.uniform(0.3, 2.0))
        top_k = int(rng.choice([0, rng.integers(1, 12)]))
        top_p = float(rng.choice([1.0, rng.uniform(0.3, 0.99)]))
        sampler = make_sampler(temperature, top_k, top_p)
        kwargs = dict(n=int(rng.integers(1, 7)), seed=i, sampler=sampler, report_top=3)
        fast = _tokens_and_probs(bundle, attention=False, **kwargs)
        eager = _tokens_and_probs(bundle, attention=True, **kwargs)
        assert len(fast) == len(eager)
        for a, b in zip(fast, eager, strict=True):
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), sampler
        assert len(table) <= MAX_COMPILED_STEPS
    assert len(table) == MAX_COMPILED_STEPS  # the bound was reached, not just approached

    table.clear()
    for temperature, top_k in [(0.5, 3), (1.5, 7), (0.9, 1)]:  # one structure, three values
        list(generate_step(bundle, {}, n=2, sampler=make_sampler(temperature, top_k)))
    assert len(table) == 1


def test_max_tokens_beyond_the_position_table_is_refused(bundle):
    max_len = bundle.args.max_len
    with pytest.raises(GenerationError, match=f"between 1 and {max_len} .*got {max_len + 1}"):
        next(generate_step(bundle, {}, max_tokens=max_len + 1))
    with pytest.raises(GenerationError, match=f"between 1 and {max_len - 2} .*prefix of 2"):
        next(generate_step(bundle, {}, prefix="[C][C]", max_tokens=max_len - 1))
    with pytest.raises(GenerationError, match="got 0"):
        next(generate_step(bundle, {}, max_tokens=0))
    # the whole room after a prefix decodes, compiled as eagerly, to the table's last position
    sampler = NeverEnds(eos_id=bundle.tokenizer.eos_id)
    kwargs = dict(n=2, seed=1, sampler=sampler, prefix="[C][C]", max_tokens=max_len - 2)
    fast = _tokens_and_probs(bundle, attention=False, **kwargs)
    eager = _tokens_and_probs(bundle, attention=True, **kwargs)
    assert len(fast) == len(eager) == max_len - 2
    for a, b in zip(fast, eager, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_molecules_end_at_the_longest_trained_selfies_unless_asked_for_more(bundle):
    """Positions after the longest training SELFIES were never trained: by default a molecule
    gets that many symbols and an [EOS]; max_tokens may still ask for the whole table."""
    sampler = NeverEnds(eos_id=bundle.tokenizer.eos_id)
    short = replace(bundle, meta={**bundle.meta, "longest_trained": 5})
    steps = list(generate_step(short, {}, n=3, seed=2, sampler=sampler))
    assert len(steps) == 6 and not steps[-1].done.any()
    after = list(generate_step(short, {}, n=1, sampler=sampler, prefix="[C][C][C][C][C][C]"))
    assert len(after) == 1  # a prefix already past it still gets one token
    asked = list(generate_step(short, {}, n=1, sampler=sampler, max_tokens=9))
    assert len(asked) == 9
    assert len(list(generate_step(bundle, {}, n=1, sampler=sampler))) == bundle.args.max_len


def test_shipped_checkpoint_decodes_as_before_the_refactor():
    """checkpoints/default: the same SELFIES for fixed seeds as the code before the one
    forward path (tests/fixtures/default_decode.json), compiled, eager, guided and greedy."""
    expected = json.loads((ROOT / "tests" / "fixtures" / "default_decode.json").read_text())
    folder = ROOT / "checkpoints" / "open_loop"
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert weights == expected["weights_sha256"], "checkpoints/default changed: re-record"
    bundle = load_checkpoint(folder)
    tok, targets = bundle.tokenizer, {"logp": 2.0, "tpsa": 60.0}

    def decode(**kwargs):
        steps = list(generate_step(bundle, targets, **kwargs))
        ids = np.stack([s.tokens for s in steps], axis=1)
        return [tok.decode(row) for row in ids], [s.top_probs.tolist() for s in steps[:3]]

    top_p = make_sampler(1.0, 0, 0.9)
    got = {
        "batch6_compiled": generate(bundle, targets, 6, seed=0),
        "prefix_topk": generate(bundle, {"logp": 2.0}, 3, seed=1, top_k=5, prefix="[C][C]"),
    }
    got["top_p_attention"], probs_eager = decode(n=2, seed=2, sampler=top_p, return_attention=True)
    got["top_p_compiled"], probs_fast = decode(n=2, seed=2, sampler=top_p)
    got["greedy"], _ = decode(n=2, seed=3, sampler=make_sampler(0.0))
    got["guided"], _ = decode(n=2, seed=4, cfg_scale=2.0)
    assert got == expected["selfies"]
    for probs, name in [(probs_eager, "top_p_attention"), (probs_fast, "top_p_compiled")]:
        assert np.allclose(probs, expected["top_probs"][name], atol=1e-5)

    selfies = "[C][C][O][C][=C][C][=C][C][=C][Ring1][=Branch1]"
    ids = tok.encode(selfies, eos=True, strict=True)
    props, present = condition_arrays(bundle, {"logp": 2.0, "tpsa": 40.0}, 1)
    z = mx.zeros((1, bundle.args.latent_dim))
    reads = prefix_inputs(bundle, selfies)
    x = bundle.model.decoder_inputs(z, props, present, mx.array([ids[:-1]]), tok.bos_id, reads)
    logits = np.array(bundle.model.decoder(x)[0][0, -1])
    assert np.allclose(logits, expected["teacher_logits"], atol=1e-4)


@dataclass(frozen=True)
class MostEnd(Sampler):
    """Every row but one in eight prefers [EOS] after its first symbol: batches shrink."""

    eos_id: int = 2

    def __call__(self, logits, key, settings=None):
        rows = mx.arange(logits.shape[0])[:, None] % 8 != 0
        is_eos = (mx.arange(logits.shape[-1]) == self.eos_id)[None]
        return super().__call__(mx.where(rows & is_eos, logits + 6.0, logits), key, settings)


@pytest.mark.parametrize("closed_loop", [False, True])
def test_a_shrunk_batch_decodes_each_row_as_the_whole_batch_does(monkeypatch, closed_loop):
    """Once three quarters of a batch have ended, the compiled step decodes only the rest
    (``SHRINK_FROM``): every row's tokens and reports stay those of the unshrunk batch."""
    import core.generate as generation

    bundle = tiny_bundle(seed=7, feedback=closed_loop)
    table = _step_table(bundle.model)

    def run():
        steps = generate_step(bundle, {"logp": 2.0}, n=64, seed=4, sampler=MostEnd(),
                              report_top=3)  # fmt: skip
        return [(s.tokens, s.top_ids, s.top_probs, s.done) for s in steps]

    shrunk = run()
    assert any(key[-1] < 64 for key in table)  # the batch did shrink
    table.clear()
    monkeypatch.setattr(generation, "SHRINK_FROM", 10**9)
    whole = run()
    assert all(key[-1] == 64 for key in table)
    assert len(shrunk) == len(whole) > 4
    for a, b in zip(shrunk, whole, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[3], b[3])
        assert np.array_equal(a[1], b[1]) and np.allclose(a[2], b[2], atol=1e-6)
