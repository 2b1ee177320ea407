"""Closed-loop feedback: the same prefix properties in training and in generation, causal,
and cached decoding equal to recomputation with the feedback inputs."""

import mlx.core as mx
import numpy as np
import pytest
import selfies as sf
from tiny import tiny_bundle

from core.chem import describe, selfies_to_mol
from core.closed_loop import prefix_inputs
from core.config import TrainArgs
from core.data import load_dataset
from core.feedback import PrefixTracker, prefix_properties, prefix_table
from core.generate import condition_arrays, generate, generate_step, make_sampler
from core.trainstep import step_noise

NAMES = ["logp", "tpsa"]


@pytest.fixture(scope="module")
def molecules():
    return load_dataset().selfies.head(40).tolist()


@pytest.fixture(scope="module", params=[False, True], ids=["gap", "gap+derivation"])
def bundle(request):
    """A closed-loop model; the second also reads the SELFIES derivation (random tables, so
    the codes change its output)."""
    bundle = tiny_bundle(feedback=True, derivation=request.param)
    if request.param:
        decoder = bundle.model.decoder
        decoder.derivation.tables = [mx.random.normal(t.shape) for t in decoder.derivation.tables]
    return bundle


def test_prefix_table_ends_at_the_molecules_descriptors(molecules):
    for s in molecules:
        table = prefix_table(s, NAMES)
        assert table.shape == (sf.len_selfies(s) + 1, 2)
        assert np.all(table[0] == 0.0)  # nothing decoded yet
        final = describe(selfies_to_mol(s), NAMES)
        assert np.allclose(table[-1], [final["logp"], final["tpsa"]], atol=1e-4)
        # the prefix molecules really change along the way (the model reads a moving gap)
        assert len(np.unique(table[:, 0])) > 3


@pytest.mark.parametrize("helper", [False, True], ids=["in place", "shared with the helper"])
def test_tracker_follows_prefix_table_symbol_by_symbol(molecules, monkeypatch, helper):
    """The same numbers whether a step's molecules are all described here or half of them on
    the helper process (``core.sidecar``, from 8 molecules on here)."""
    import core.sidecar

    sent = []
    send = core.sidecar._helper.send
    monkeypatch.setattr(core.sidecar._helper, "send", lambda *a: sent.append(1) or send(*a))
    monkeypatch.setattr(core.sidecar, "cores", lambda: 2 if helper else 1)
    monkeypatch.setattr(core.sidecar, "MIN_ITEMS", 8)
    tracker = PrefixTracker(len(molecules), NAMES)
    symbols = [list(sf.split_selfies(s)) for s in molecules]
    tables = [prefix_table(s, NAMES) for s in molecules]
    for t in range(max(map(len, symbols))):
        step = [row[t] if t < len(row) else None for row in symbols]
        values = tracker.push(step)
        for i, table in enumerate(tables):
            assert np.array_equal(values[i], table[min(t + 1, len(table) - 1)])
    assert tracker.smiles[0] == prefix_properties(molecules[0], NAMES)[0]
    assert bool(sent) == helper  # the helper really took part (or really did not)


def test_generation_reads_what_training_computes(bundle):
    """Each step reports the properties of the molecule so far; they equal the training
    table of the finished SELFIES, row for row."""
    steps = list(generate_step(bundle, {"logp": 2.0, "tpsa": 40.0}, n=6, seed=1))
    tok = bundle.tokenizer
    ids = np.stack([s.tokens for s in steps], axis=1)
    checked = 0
    for row in range(6):
        selfies = tok.decode(ids[row])
        table = prefix_table(selfies, NAMES)
        for t, step in enumerate(steps):
            expected = table[min(t + 1, len(table) - 1)]
            assert np.array_equal(step.prefix_props[row], expected)
            checked += 1
    assert checked > 12


def test_feedback_off_freezes_what_the_model_reads(bundle):
    steps = list(generate_step(bundle, {"tpsa": 80.0}, n=3, seed=2, feedback=False))
    assert all(np.all(s.prefix_props == 0.0) for s in steps)
    live = list(generate_step(bundle, {"tpsa": 80.0}, n=3, seed=2))
    assert any(np.any(s.prefix_props != 0.0) for s in live)


def test_future_token_never_changes_earlier_logits_closed_loop(bundle):
    """The feedback of a later symbol reaches only the positions after it."""
    model, tok, args = bundle.model, bundle.tokenizer, bundle.args
    rng = np.random.default_rng(0)
    ids = rng.integers(4, args.vocab_size, (1, 10))
    props, present = condition_arrays(bundle, {"logp": 1.0, "tpsa": 50.0}, 1)
    z = mx.zeros((1, args.latent_dim))

    def logits(row):
        reads = prefix_inputs(bundle, tok.decode(row))[:, : len(row)]  # BOS + row[:-1]
        x = model.decoder_inputs(z, props, present, mx.array(row[None, :-1]), 1, reads)
        return np.array(model.decoder(x)[0][0])

    base = logits(ids[0])
    for t in range(1, 8):
        changed = ids[0].copy()
        changed[t] = 4 + (changed[t] - 3) % (args.vocab_size - 4)
        out = logits(changed)
        pos = args.n_prefix + 1 + t  # decoder position that first reads token t
        assert np.abs(out[:pos] - base[:pos]).max() == 0.0
        assert np.abs(out[pos:] - base[pos:]).max() > 0.0


def test_cached_closed_loop_decoding_equals_recomputation(bundle):
    model, args, tok = bundle.model, bundle.args, bundle.tokenizer
    targets = {"logp": 2.0, "tpsa": 50.0}
    for seed in range(4):
        steps = list(
            generate_step(bundle, targets, n=1, seed=seed, sampler=make_sampler(0.0), max_ring=None)
        )
        tokens = np.stack([s.tokens for s in steps], axis=1)
        props, present = condition_arrays(bundle, targets, 1)
        z = mx.random.normal((1, args.latent_dim), key=mx.random.split(mx.random.key(seed))[0])
        for t in range(1, tokens.shape[1]):
            if tokens[0, t - 1] == tok.eos_id:
                break
            reads = prefix_inputs(bundle, tok.decode(tokens[0, :t]))
            x = model.decoder_inputs(z, props, present, mx.array(tokens[:, :t]), 1, reads)
            logits = np.array(model.decoder(x)[0][:, -1])
            logits[:, [0, 1, 3]] = -np.inf
            best = logits.argmax(-1)[0]
            if tokens[0, t] != best:  # only to end a molecule that can no longer change
                so_far = tok.decode(tokens[0, :t])
                then = so_far + tok.tokens[best] + "[C]" * (args.max_len - t - 1)
                assert tokens[0, t] == tok.eos_id and sf.decoder(then) == sf.decoder(so_far)


def test_compiled_closed_loop_equals_eager(bundle):
    def run(attention: bool):
        return [
            (s.tokens, s.top_probs)
            for s in generate_step(bundle, {"tpsa": 70.0}, n=3, seed=5, return_attention=attention)
        ]

    fast, eager = run(False), run(True)
    assert len(fast) == len(eager) > 3
    for a, b in zip(fast, eager, strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_decoding_needs_feedback_inputs(bundle):
    props, present = condition_arrays(bundle, {}, 1)
    z = mx.zeros((1, bundle.args.latent_dim))
    with pytest.raises(ValueError, match="prefix_props"):
        bundle.model.decoder_inputs(z, props, present, mx.zeros((1, 2), mx.int32), 1)


def test_training_noise_and_unconditional_rows():
    targs = TrainArgs(cond_drop=0.1, uncond_drop=0.3, target_noise=0.1)
    noise, present, _ = step_noise(mx.random.key(0), 4000, 2, 4, targs)
    noise, present = np.array(noise), np.array(present)
    assert abs(noise.std() - 0.1) < 0.01
    none = (present.sum(axis=1) == 0).mean()
    assert abs(none - (0.3 + 0.7 * 0.01)) < 0.03  # all dropped: together or each alone
    assert abs(present.mean() - 0.7 * 0.9) < 0.03


def test_same_seed_same_closed_loop_molecules(bundle):
    a = generate(bundle, {"logp": 2.0}, 4, seed=3)
    assert a == generate(bundle, {"logp": 2.0}, 4, seed=3)
