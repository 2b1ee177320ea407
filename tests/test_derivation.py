"""The SELFIES derivation codes (``core.derivation``): what they say is what
``selfies.decoder`` does, the tracker and the training table agree, and a decoder that reads
them is changed by them."""

import random

import mlx.core as mx
import numpy as np
import pytest
import selfies as sf
from tiny import tiny_bundle

from core.closed_loop import prefix_inputs
from core.config import ConfigError, TrainConfig
from core.data import load_dataset
from core.derivation import CODE_SIZES, ENDED, SIDE_ENDED, Derivation, derivation_codes
from core.feedback import PrefixTracker
from core.finetune import FineTuneError, grow
from core.generate import condition_arrays


@pytest.fixture(scope="module")
def strings():
    """Real molecules' SELFIES and random strings of their symbols (the model's mistakes)."""
    real = [list(sf.split_selfies(s)) for s in load_dataset().selfies.head(60)]
    symbols = sorted({s for row in real for s in row} | {"[Branch2]", "[=Ring2]", "[#Branch1]"})
    rng = random.Random(0)
    made = [[rng.choice(symbols) for _ in range(rng.randint(1, 30))] for _ in range(150)]
    return real + made


def _decode(symbols) -> str:
    return sf.decoder("".join(symbols)) if symbols else ""


def test_codes_say_what_the_decoder_does(strings):
    """After every prefix: an ended molecule ignores any further carbons; a chain with bonds
    left grows by one more carbon; an ended side chain ignores the next carbon."""
    seen = set()
    for row in strings:
        d = Derivation()
        for k, symbol in enumerate(row):
            d = d.push(symbol)
            valence, pending, depth, left = d.codes
            prefix = row[: k + 1]
            now = _decode(prefix)
            if d.inert:
                assert now == _decode(row[:k]), prefix
            if d.finished:
                assert _decode(prefix + ["[C]"] * 40) == now, prefix
            if pending == 0 and 1 <= valence <= 3:
                assert _decode(prefix + ["[C]"]) != now, prefix
            if pending == 0 and valence == SIDE_ENDED:
                assert _decode(prefix + ["[C]"]) == now, prefix
            assert (depth == 0) == (left == 0)
            assert all(0 <= c < size for c, size in zip(d.codes, CODE_SIZES, strict=True))
            seen.add(valence)
    assert {1, 2, 3, SIDE_ENDED, ENDED} <= seen  # the strings exercised every state


def test_not_finished_means_a_carbon_can_still_change_the_molecule(strings):
    checked = 0
    for row in strings:
        d = Derivation()
        for k, symbol in enumerate(row):
            d = d.push(symbol)
            if not d.finished and d.pending is None:
                prefix = row[: k + 1]
                assert _decode(prefix + ["[C]"] * 300) != _decode(prefix), prefix
                checked += 1
    assert checked > 500


def test_tracker_codes_are_the_training_codes_also_after_a_replaced_symbol(strings):
    rows = strings[:40]
    tracker = PrefixTracker(len(rows), ["tpsa"])
    tables = [derivation_codes(row) for row in rows]
    for t in range(max(map(len, rows))):
        tracker.push([row[t] if t < len(row) else None for row in rows])
        if t < len(rows[0]):  # replace a symbol and put it back: the codes follow
            tracker.replace_last(0, "[F]")
            assert tracker.codes[0].tolist() == derivation_codes(rows[0][:t] + ["[F]"])[-1].tolist()
            tracker.replace_last(0, rows[0][t])
        for i, table in enumerate(tables):
            assert tracker.codes[i].tolist() == table[min(t + 1, len(table) - 1)].tolist()


def test_a_decoder_that_reads_the_derivation_is_changed_by_it():
    bundle = tiny_bundle(feedback=True, derivation=True)
    tables = bundle.model.decoder.derivation.tables
    assert all(float(mx.abs(t).max()) == 0.0 for t in tables)  # starts as if it read nothing
    bundle.model.decoder.derivation.tables = [mx.random.normal(t.shape) for t in tables]
    reads = prefix_inputs(bundle, "[C][C][O]")
    assert reads.shape == (1, 4, 2 + len(CODE_SIZES))
    props, present = condition_arrays(bundle, {"logp": 1.0}, 1)
    z, ids = mx.zeros((1, bundle.args.latent_dim)), mx.array([[4, 5, 6]])
    model = bundle.model

    def logits(r):
        return np.array(model.decoder(model.decoder_inputs(z, props, present, ids, 1, r))[0])

    other = np.array(reads)
    other[0, 2, 2] = ENDED  # position 2 told the molecule ended
    base, changed = logits(reads), logits(mx.array(other))
    first = bundle.args.n_prefix + 2  # that position
    assert np.abs(changed[:, :first] - base[:, :first]).max() == 0.0
    assert np.abs(changed[:, first:] - base[:, first:]).max() > 0.0


def test_derivation_needs_feedback():
    with pytest.raises(ConfigError, match="--feedback"):
        TrainConfig.from_flags({"out": "x", "derivation": True}).check()


def test_a_closed_loop_model_grown_to_read_the_derivation_starts_as_it_was():
    base = tiny_bundle(feedback=True)
    grown = grow(base, base.tokenizer, base.properties, derivation=True)
    assert grown.args.derivation and "derivation" in grown.decoder
    props, present = condition_arrays(base, {"tpsa": 70.0}, 1)
    z, ids = mx.zeros((1, base.args.latent_dim)), mx.array([[4, 5, 6]])
    reads = np.array(prefix_inputs(base, "[C][C][O]"))
    codes = derivation_codes(["[C]", "[C]", "[O]"])[None].astype(np.float32)

    def logits(model, r):
        x = model.decoder_inputs(z, props, present, ids, 1, mx.array(r))
        return np.array(model.decoder(x)[0])

    before = logits(base.model, reads)
    after = logits(grown, np.concatenate([reads, codes], axis=-1))
    assert np.allclose(before, after, atol=1e-5)
    with pytest.raises(FineTuneError, match="closed-loop"):
        grow(tiny_bundle(), base.tokenizer, base.properties, derivation=True)
