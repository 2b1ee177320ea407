"""core.ordering: open-ended SELFIES are the same molecules, and the model's data ends
molecules with [EOS] instead of a symbol that uses up the main chain."""

import pandas as pd
import pytest
import selfies as sf
from rdkit import Chem

from core import data
from core.chem import selfies_to_smiles
from core.derivation import derive
from core.ordering import as_trained, ends_itself, open_end_selfies
from core.trainset import data_identity

SHIPPED = data.DEFAULT_DATA


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return data.load_dataset(SHIPPED).iloc[:400]


def test_ends_itself_is_the_derivation_finishing_on_the_last_symbol():
    for selfies in ["[C][C][=O]", "[C][F]", "[C][C][C][Ring1][Ring1]", "[O][=C][C]", "[C]"]:
        symbols = list(sf.split_selfies(selfies))
        assert ends_itself(selfies) == derive(symbols)[-1].finished
    # the ring closure [Ring1][Ring1] uses the last bond of the ring's last carbon
    assert ends_itself("[C][C][C][Ring1][Ring1]") is False  # a CH2 still has a bond left
    assert ends_itself("[C][=C][C][=C][C][=C][Ring1][=Branch1]") is False


def test_open_end_selfies_are_the_same_molecule_and_open(sample):
    pairs = zip(sample["selfies"], sample["smiles"], strict=True)
    ended = [(s, c) for s, c in pairs if ends_itself(s)]
    assert len(ended) > 0.2 * len(sample)  # canonical SMILES often end on =O, F, Cl
    still = 0
    for selfies, canonical in ended:
        other = open_end_selfies(Chem.MolFromSmiles(canonical), canonical, selfies)
        assert selfies_to_smiles(other) == canonical
        still += ends_itself(other)
        if not ends_itself(other):
            assert other != selfies
    assert still <= 0.05 * len(ended)


def test_open_end_keeps_a_selfies_that_is_already_open(sample):
    for selfies, canonical in zip(sample["selfies"][:50], sample["smiles"][:50], strict=True):
        if not ends_itself(selfies):
            mol = Chem.MolFromSmiles(canonical)
            assert open_end_selfies(mol, canonical, selfies) == selfies


def test_prepare_open_end_writes_open_selfies_and_says_so(tmp_path, monkeypatch):
    train = ["CC(C)=O", "OCC(=O)O", "Fc1ccccc1", "CCN", "O=C1CCCC1"]
    monkeypatch.setattr(data, "read_moses", lambda split: {"train": train, "test": []}[split])
    report = data.prepare(tmp_path / "open.parquet", workers=1, descriptors=["logp"], open_end=True)
    frame = data.load_dataset(report.out)
    assert frame["smiles"].tolist() == [Chem.CanonSmiles(s) for s in train]
    assert not any(ends_itself(s) for s in frame["selfies"])
    assert [selfies_to_smiles(s) for s in frame["selfies"]] == frame["smiles"].tolist()
    assert data.dataset_info(report.out).source.get("open_end") is True
    assert data_identity(report.out, 5, 0)["open_end"] is True  # what a checkpoint records
    canonical = data.prepare(tmp_path / "canon.parquet", workers=1, descriptors=["logp"])
    assert any(ends_itself(s) for s in data.load_dataset(canonical.out)["selfies"])
    assert "open_end" not in data_identity(canonical.out, 5, 0)


def test_as_trained_writes_open_ended_only_for_an_open_end_checkpoint(sample):
    meta = {"data": {"open_end": True}}
    for selfies, canonical in zip(sample["selfies"][:80], sample["smiles"][:80], strict=True):
        written = as_trained(meta, selfies)
        assert selfies_to_smiles(written) == canonical
        assert written == selfies or ends_itself(selfies) and not ends_itself(written)
        assert as_trained(meta, written) == written  # open already: kept
        assert as_trained({"data": {"kind": "prepare"}}, selfies) == selfies
