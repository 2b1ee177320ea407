"""The MOSES metric suite: values checked by hand, filter reasons, and the evaluate section."""

import math

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from tiny import tiny_bundle

import core.evaluate
import core.moses as moses
from core.chem import describe_smiles

DRUG_LIKE = moses.moses_test_smiles(30)
POLYCYCLES = ["c1ccc2ccccc2c1", "c1ccc2cc3ccccc3cc2c1", "C1CCC2CCCCC2C1", "c1ccc2c(c1)CCC2"]


def tanimoto(a: str, b: str) -> float:
    """Tanimoto of Morgan r2 1024-bit fingerprints, computed without core.moses."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    fa, fb = (generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def test_intdiv_of_identical_molecules_is_zero():
    same = ["CC(=O)Nc1ccc(O)cc1"] * 5
    assert moses.internal_diversity(same, p=1) == pytest.approx(0.0)
    assert moses.internal_diversity(same, p=2) == pytest.approx(0.0)


def test_intdiv_matches_a_hand_computation_with_self_pairs():
    t = tanimoto("CCO", "CCN")
    assert 0 < t < 1
    # each molecule: mean over (itself, the other) of T^p, then the p-th root
    assert moses.internal_diversity(["CCO", "CCN"], p=1) == pytest.approx(1 - (1 + t) / 2)
    assert moses.internal_diversity(["CCO", "CCN"], p=2) == pytest.approx(
        1 - math.sqrt((1 + t**2) / 2)
    )


def test_intdiv_rises_with_diversity_and_skips_invalid_molecules():
    diverse = moses.internal_diversity(DRUG_LIKE)
    assert 0.7 < diverse < 1.0
    assert moses.internal_diversity([*DRUG_LIKE[:5], "C1CC", ""]) == pytest.approx(
        moses.internal_diversity(DRUG_LIKE[:5])
    )
    assert math.isnan(moses.internal_diversity(["C1CC"]))


def test_snn_of_a_set_against_itself_is_one_and_matches_by_hand():
    assert moses.nearest_neighbour_similarity(DRUG_LIKE, DRUG_LIKE) == pytest.approx(1.0)
    gen, ref = ["CCO", "c1ccccc1O"], ["CCN", "CCCO", "c1ccccc1"]
    by_hand = np.mean([max(tanimoto(g, r) for r in ref) for g in gen])
    assert moses.nearest_neighbour_similarity(gen, ref) == pytest.approx(by_hand)
    assert by_hand < 0.9


@pytest.mark.parametrize(
    "smiles, reason",
    [
        ("C1CCCCCCCCC1", moses.MACROCYCLE),
        ("C1CCCCCCC1", moses.MACROCYCLE),  # molsets: 8 ring atoms already fail
        ("C[N+](C)(C)C", moses.CHARGE),
        ("CC[N+](=O)[O-]", moses.CHARGE),  # no exception for nitro groups in molsets
        ("CCP(CC)CC", "atom P"),
        ("OB(O)c1ccccc1", "atom B"),
        ("S=C1SC(=Cc2ccccc2)C(=O)N1", "PAINS ene_rhod_A(235)"),
        ("CC(=C)C#N", "MCF1"),
    ],
)
def test_filters_fail_with_the_right_reason(smiles, reason):
    assert moses.filter_reasons(smiles) == [reason]
    assert not moses.passes_filters(smiles)


def test_drug_like_moses_molecules_pass_the_filters():
    assert moses.fraction_passes_filters(DRUG_LIKE) == 1.0
    assert moses.filter_failures(DRUG_LIKE) == {}
    assert moses.passes_filters("C1CCCCCC1")  # a 7-ring is fine


def test_filter_failures_group_by_reason_in_the_suite():
    generated = [*DRUG_LIKE[:5], "C[N+](C)(C)C", "C[N+](C)(C)C", "CCP(CC)CC", "C1CC", ""]
    suite = moses.moses_suite(generated, DRUG_LIKE)
    assert (suite["n"], suite["n_valid"], suite["n_unique"]) == (10, 8, 7)
    assert suite["valid"] == pytest.approx(0.8)
    assert suite["Filters"] == pytest.approx(5 / 8)  # over valid molecules, duplicates counted
    assert suite["filter_failures"] == {moses.CHARGE: 2, "atom P": 1}
    assert suite["filter_examples"] == {moses.CHARGE: ["C[N+](C)(C)C"], "atom P": ["CCP(CC)CC"]}


def test_frag_and_scaf_against_itself_and_a_disjoint_chemotype():
    ref = moses.reference_statistics(tuple(DRUG_LIKE))
    itself = moses.moses_suite(DRUG_LIKE, ref)
    assert itself["Frag/Test"] == pytest.approx(1.0)
    assert itself["Scaf/Test"] == pytest.approx(1.0)
    other = moses.moses_suite(POLYCYCLES, ref)
    assert other["Frag/Test"] < 0.5
    assert other["Scaf/Test"] < 0.5
    assert other["SNN/Test"] < itself["SNN/Test"] - 0.3


def test_frag_and_scaf_match_hand_computed_cosines():
    frag = moses.cosine_similarity(
        moses.fragment_counts([Chem.MolFromSmiles(s) for s in ("C1CCCCC1", "c1ccccc1")]),
        moses.fragment_counts([Chem.MolFromSmiles("c1ccccc1")]),
    )
    assert frag == pytest.approx(1 / math.sqrt(2))  # (1, 1) against (0, 1)
    naphthalene, biphenyl = "c1ccc2ccccc2c1", "c1ccc(-c2ccccc2)cc1"
    suite = moses.moses_suite([naphthalene, naphthalene, "CCc1ccccc1"], [naphthalene, biphenyl])
    assert suite["Scaf/Test"] == pytest.approx(2 / (2 * math.sqrt(2)))  # (2, 0) vs (1, 1)
    assert math.isnan(moses.moses_suite(["Cc1ccccc1"], [naphthalene])["Scaf/Test"])


def test_fcd_is_left_out_without_fcd_torch(monkeypatch):
    monkeypatch.setattr(moses, "fcd_available", lambda: False)
    assert moses.moses_suite(DRUG_LIKE[:5], DRUG_LIKE)["FCD/Test"] is None


def test_reference_sample_is_fixed_and_its_statistics_cached():
    sample = moses.moses_test_smiles(50)
    assert len(sample) == len(set(sample)) == 50
    assert set(sample) <= set(moses.moses_test_smiles())
    assert moses.reference_statistics(sample) is moses.reference_statistics(sample)
    assert moses.reference_statistics(sample).n == 50


def test_published_baselines_cover_every_metric():
    assert {"CharRNN", "VAE", "JTN-VAE"} <= set(moses.PUBLISHED_BASELINES)
    for values in moses.PUBLISHED_BASELINES.values():
        assert set(values) == set(moses.METRICS)
        assert all(0 < v <= 1 for k, v in values.items() if k != "FCD/Test")
    assert moses.PUBLISHED_BASELINES["VAE"]["SNN/Test"] == 0.6257


def test_evaluate_section_conditions_on_test_pairs(monkeypatch):
    bundle = tiny_bundle()
    seen = {}
    real = core.evaluate.generate
    free = core.evaluate.score(real(bundle, {}, 6, seed=1)).smiles.tolist()

    def spy(b, targets, *args, **kwargs):
        seen.update(targets)
        return real(b, targets, *args, **kwargs)

    monkeypatch.setattr(core.evaluate, "generate", spy)
    section = core.evaluate.moses_section(bundle, free, n=6, reference_size=40)
    assert section["reference"] == {"set": "MOSES test", "n": 40}
    assert section["unconditioned"]["n"] == 6
    conditioned = section["conditioned_test_pairs"]
    assert conditioned["n"] == 6 and conditioned["n_reference"] == 40
    assert set(moses.METRICS) <= set(conditioned) and "mad_logp" in conditioned
    pairs = {
        (round(d["logp"], 6), round(d["tpsa"], 6))
        for d in map(describe_smiles, moses.moses_test_smiles(40))
    }
    asked = set(zip(np.round(seen["logp"], 6), np.round(seen["tpsa"], 6), strict=True))
    assert len(seen["logp"]) == 6 and asked <= pairs
