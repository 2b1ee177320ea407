"""Inspection: attention maps honour the causal mask, the leak check proves it (and catches a
broken mask), partial molecules grow atom by atom, interpolation decodes the endpoints."""

import dataclasses

import mlx.core as mx
import numpy as np
import pytest
from tiny import tiny_bundle

import core.model
from core.chem import describe_smiles, smiles_to_selfies
from core.generate import generate_step, make_sampler
from core.inspect import (
    InspectError,
    attention_maps,
    condition_share,
    encode_smiles,
    interpolate,
    leak_check,
    partial_properties,
    readable_selfies,
    uniform_share,
)

BENZENE = "[C][=C][C][=C][C][=C][Ring1][=Branch1]"
TARGETS = {"logp": 2.0, "tpsa": 40.0}


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def test_attention_maps_shapes_labels_and_mask(bundle):
    maps = attention_maps(bundle, "[C][C][O]", {"logp": 0.5, "tpsa": None})
    assert maps.decoder_labels == ["LogP=0.5", "TPSA (free)", "z", "[BOS]", "[C]", "[C]", "[O]"]
    assert maps.encoder_labels == ["LogP=0.5", "TPSA (free)", "[C]", "[C]", "[O]", "[EOS]"]
    args = bundle.args
    assert len(maps.decoder) == args.n_layers and len(maps.encoder) == args.enc_layers
    assert maps.decoder[0].shape == (args.n_heads, 7, 7)
    assert maps.encoder[0].shape == (args.enc_heads, 6, 6)
    assert maps.n_prefix == 3 and maps.z.shape == (args.latent_dim,)
    for w in maps.decoder + maps.encoder:
        assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    assert maps.causal.shape == (7, 7) and maps.causal[6].all() and not maps.causal[0, 1]
    for w in maps.decoder:
        assert np.all(w[:, ~maps.causal] == 0.0)  # masked before the softmax: exactly 0
        assert np.all(w[:, maps.causal] > 0.0)


def test_given_z_changes_the_decoder_only(bundle):
    mu = attention_maps(bundle, BENZENE, TARGETS)
    other = attention_maps(bundle, BENZENE, TARGETS, z=mu.z + 3.0)
    assert np.allclose(other.z, mu.z + 3.0)
    assert all(np.array_equal(a, b) for a, b in zip(mu.encoder, other.encoder, strict=True))
    assert not np.allclose(mu.decoder[0], other.decoder[0])


def test_condition_share_is_the_prefix_mass_of_token_rows(bundle):
    maps = attention_maps(bundle, BENZENE, TARGETS)
    share = condition_share(maps)
    assert share.shape == (bundle.args.n_layers, bundle.args.n_heads)
    assert np.all((share > 0) & (share < 1))
    expected = maps.decoder[1][2, 3:, :3].sum(-1).mean()
    assert share[1, 2] == pytest.approx(expected)
    parts = sum(condition_share(maps, [i]) for i in range(maps.n_prefix))
    assert np.allclose(parts, share, atol=1e-6)


def test_uniform_share_is_the_share_of_evenly_spread_attention(bundle):
    maps = attention_maps(bundle, "[C][C][O]", TARGETS)
    rows = np.arange(3, 7)  # [BOS] and three symbols see 4..7 positions
    assert uniform_share(maps) == pytest.approx(np.mean(3 / (rows + 1)))
    even = [np.where(maps.causal, 1.0, 0.0) / maps.causal.sum(1, keepdims=True)[None]]
    maps.decoder = even * 2
    assert condition_share(maps) == pytest.approx(uniform_share(maps))
    assert condition_share(maps, [2])[0, 0] == pytest.approx(uniform_share(maps, [2]))


def test_unreadable_molecules_raise_inspect_error(bundle):
    with pytest.raises(InspectError, match="vocabulary"):
        attention_maps(bundle, "[C][Xe]", TARGETS)
    with pytest.raises(InspectError, match="at most"):
        attention_maps(bundle, "[C]" * bundle.args.max_len, TARGETS)
    with pytest.raises(InspectError):
        attention_maps(bundle, "", TARGETS)


@pytest.mark.parametrize("position", [0, 3, 7])
def test_leak_check_earlier_positions_are_exactly_unchanged(bundle, position):
    report = leak_check(bundle, BENZENE, position, TARGETS)
    assert report.changed_row == bundle.args.n_prefix + 1 + position
    assert report.original != report.replacement
    assert report.max_before == 0.0 and report.weights_max_before == 0.0
    assert report.max_after > 0.0
    assert np.all(report.row_delta[: report.changed_row] == 0.0)
    assert len(report.row_delta) == len(report.labels) == 3 + 1 + 8


def test_leak_check_catches_a_mask_that_does_not_mask(bundle, monkeypatch):
    def no_mask(n_queries, offset=0, dtype=mx.float32):
        return mx.zeros((n_queries, offset + n_queries), dtype=dtype)

    monkeypatch.setattr(core.model, "causal_mask", no_mask)
    report = leak_check(bundle, BENZENE, 5, TARGETS)
    assert report.max_before > 0.0 and report.weights_max_before > 0.0


def test_leak_check_rejects_positions_outside_the_molecule(bundle):
    with pytest.raises(InspectError, match="position"):
        leak_check(bundle, "[C][C][O]", 3, TARGETS)


def test_partial_properties_follow_a_growing_molecule():
    selfies = smiles_to_selfies("CC(=O)Nc1ccc(O)cc1")
    symbols = selfies.replace("]", "]\n").split()
    seen = [partial_properties("".join(symbols[: i + 1])) for i in range(len(symbols))]
    assert all(p is not None for p in seen)
    assert [p["n_atoms"] for p in seen] == sorted(p["n_atoms"] for p in seen)
    final = describe_smiles("CC(=O)Nc1ccc(O)cc1", ["logp", "tpsa"])
    assert seen[-1]["logp"] == pytest.approx(final["logp"])
    assert seen[-1]["tpsa"] == pytest.approx(final["tpsa"])


def test_partial_properties_newest_atom_and_empty_prefixes():
    assert partial_properties("") is None
    assert partial_properties("[Branch1]") is None
    assert partial_properties("[C][C][O]")["newest_atom"] == 2
    branch = partial_properties("[C][Branch1][C][O][N]")  # C(O)N: N is made last
    assert branch["smiles"] == "C(O)N" and branch["newest_atom"] == 2
    inside = partial_properties("[C][Branch1][C][O]")  # CO: the branch atom is newest
    assert inside["newest_atom"] == 1
    ring = partial_properties(BENZENE)  # a ring closure makes no atom
    assert ring["n_atoms"] == 6 and ring["newest_atom"] == 5 and ring["tpsa"] == 0.0


def test_interpolation_starts_and_ends_at_the_reconstructions(bundle):
    out = interpolate(bundle, "CCO", "c1ccccc1", steps=4, targets=TARGETS)
    assert len(out) == 4
    z = mx.array(np.stack([encode_smiles(bundle, "CCO"), encode_smiles(bundle, "c1ccccc1")]))
    steps = generate_step(bundle, TARGETS, n=2, z=z, sampler=make_sampler(0.0), report_top=1)
    ids = np.stack([s.tokens for s in steps], axis=1)
    assert [bundle.tokenizer.decode(r) for r in ids] == [out[0], out[-1]]


def test_readable_selfies_drops_stereo_only_when_the_vocabulary_needs_it(bundle):
    assert readable_selfies(bundle, "OCC") == ("[C][C][O]", False)
    assert readable_selfies(bundle, "C/C=C/Cl") == ("[C][C][=C][Cl]", True)  # E/Z dropped
    with pytest.raises(InspectError, match="vocabulary"):
        readable_selfies(bundle, "CC[Se]C")
    with pytest.raises(InspectError, match="SMILES"):
        readable_selfies(bundle, "C1CC")


def test_a_model_trained_on_open_ended_selfies_reads_molecules_written_so(bundle):
    open_end = dataclasses.replace(bundle, meta={**bundle.meta, "data": {"open_end": True}})
    assert readable_selfies(bundle, "CCC=O") == ("[C][C][C][=O]", False)
    assert readable_selfies(open_end, "CCC=O") == ("[O][=C][C][C]", False)
    assert readable_selfies(open_end, "OCC") == ("[C][C][O]", False)  # already open
    assert readable_selfies(open_end, "C/C=C/Cl") == ("[Cl][C][=C][C]", True)


def test_interpolation_rejects_bad_input(bundle):
    with pytest.raises(InspectError, match="SMILES"):
        interpolate(bundle, "C1CC", "CCO", steps=3)
    with pytest.raises(InspectError, match="steps"):
        interpolate(bundle, "CCO", "CCO", steps=1)
