"""core.chem: descriptor table, SELFIES round trips, silence on bad input, drawings, diversity."""

import importlib.util
import math
from pathlib import Path

import pytest
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

from core import chem
from core.data import load_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOLECULES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]
INVALID = ["", "   ", "C1CC", "not a molecule", "c1cccc1", "[Xx]"]


@pytest.fixture(scope="module")
def subset_sample() -> list[str]:
    frame = load_dataset()
    return frame["smiles"].sample(300, random_state=0).tolist()


def _reference_sascorer():
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    spec = importlib.util.spec_from_file_location("sascorer_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_descriptor_table_matches_rdkit():
    assert list(chem.DESCRIPTORS) == ["logp", "tpsa", "mw", "qed", "sa", "hbd", "hba", "rings"]
    assert list(chem.DESCRIPTOR_LABELS) == list(chem.DESCRIPTORS)
    sascorer = _reference_sascorer()
    for smiles in MOLECULES:
        mol = Chem.MolFromSmiles(smiles)
        expected = {
            "logp": Crippen.MolLogP(mol),
            "tpsa": rdMolDescriptors.CalcTPSA(mol),
            "mw": Descriptors.MolWt(mol),
            "qed": QED.qed(mol),
            "sa": sascorer.calculateScore(mol),
            "hbd": Lipinski.NumHDonors(mol),
            "hba": Lipinski.NumHAcceptors(mol),
            "rings": rdMolDescriptors.CalcNumRings(mol),
        }
        assert chem.describe(mol) == pytest.approx(expected, abs=1e-9)
        assert chem.describe_smiles(smiles, ["tpsa", "logp"]) == pytest.approx(
            {"tpsa": expected["tpsa"], "logp": expected["logp"]}
        )


def test_describe_rejects_programmer_errors():
    with pytest.raises(chem.ChemError, match="unknown descriptor"):
        chem.describe(Chem.MolFromSmiles("CCO"), ["logp", "colour"])
    with pytest.raises(chem.ChemError):
        chem.describe(None)


def test_selfies_round_trip_on_subset(subset_sample):
    for smiles in subset_sample:
        selfies = chem.smiles_to_selfies(smiles)
        assert selfies is not None
        assert chem.selfies_to_smiles(selfies) == chem.canonical_smiles(smiles) == smiles


def test_subset_rows_are_consistent():
    frame = load_dataset().sample(200, random_state=1)
    for row in frame.itertuples():
        assert chem.selfies_to_smiles(row.selfies) == row.smiles
        assert chem.describe_smiles(row.smiles, ["logp", "tpsa"]) == pytest.approx(
            {"logp": row.logp, "tpsa": row.tpsa}, rel=1e-5, abs=1e-4
        )


@pytest.mark.parametrize("smiles", [*INVALID, None, 42])
def test_invalid_smiles_give_none_silently(smiles, capfd):
    assert chem.mol_from_smiles(smiles) is None
    assert chem.canonical_smiles(smiles) is None
    assert chem.smiles_to_selfies(smiles) is None
    assert chem.describe_smiles(smiles) is None
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("selfies", ["", "[Xx]", "[C][C", "not selfies", "[Branch1]"])
def test_selfies_that_decode_to_nothing(selfies):
    assert chem.selfies_to_smiles(selfies) == ""
    assert chem.selfies_to_mol(selfies) is None


def test_canonical_forms():
    assert chem.canonical_smiles("OCC") == "CCO"
    assert chem.smiles_to_selfies("OCC") == "[C][C][O]"
    assert chem.selfies_to_smiles("[O][C][C]") == "CCO"


def test_rdkit_quiet_restores_logging(capfd):
    with chem.rdkit_quiet():
        Chem.MolFromSmiles("C1CC")
    assert capfd.readouterr().err == ""
    Chem.MolFromSmiles("C1CC")
    assert "unclosed ring" in capfd.readouterr().err


@pytest.mark.parametrize("mol", ["CCO", Chem.MolFromSmiles("c1ccccc1"), "C1CC", None, ""])
def test_mol_to_png_gives_png(mol):
    png = chem.mol_to_png(mol, size=(200, 150), legend="x")
    assert png.startswith(PNG_MAGIC)
    assert chem.png_data_uri(png).startswith("data:image/png;base64,iVBORw0KGgo")


def test_mol_to_png_highlights_and_checks_indices():
    plain = chem.mol_to_png("c1ccccc1O")
    assert chem.mol_to_png("c1ccccc1O", highlight_atoms=[0, 6]) != plain
    assert chem.mol_to_png("C1CC") != plain
    with pytest.raises(chem.ChemError, match="highlight"):
        chem.mol_to_png("CCO", highlight_atoms=[3])


def test_tanimoto_diversity(subset_sample):
    assert chem.tanimoto_diversity(["CCO"] * 10) == 0.0
    varied = chem.tanimoto_diversity(subset_sample)
    assert 0.8 < varied < 1.0
    sampled = chem.tanimoto_diversity(subset_sample, max_pairs=5_000)
    assert sampled == pytest.approx(varied, abs=0.02)
    assert math.isnan(chem.tanimoto_diversity(["CCO", "C1CC"]))
    with pytest.raises(chem.ChemError):
        chem.tanimoto_diversity(subset_sample, max_pairs=0)
