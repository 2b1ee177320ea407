"""Novelty is measured against the training set the checkpoint names, resolved from the
repository whatever the working directory; without it, against the subset, and said so."""

from dataclasses import replace

import pytest
from tiny import tiny_bundle

from core.data import DEFAULT_DATA, load_dataset, read_moses
from core.evaluate import checkpoint_table, novelty_reference


def with_data(**data):
    bundle = tiny_bundle()
    return replace(bundle, meta={**bundle.meta, "data": data})


def test_a_moses_model_is_compared_with_the_full_moses_training_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths are the repository's, not the cwd's
    reference = novelty_reference(with_data(path="data/moses_subset.parquet"))
    subset = load_dataset(DEFAULT_DATA)
    assert reference.vs == "training set" and "full MOSES" in reference.note
    assert len(reference.smiles) >= 1_500_000
    assert set(read_moses("train")[:1000]) <= reference.smiles
    assert set(subset.smiles[subset.split == "train"]) <= reference.smiles
    assert len(checkpoint_table(with_data(path="data/moses_subset.parquet"))) == len(subset)


def test_a_user_model_is_compared_with_its_own_molecules(tmp_path):
    own = load_dataset(DEFAULT_DATA).head(300)
    own.to_parquet(tmp_path / "mine.parquet")
    reference = novelty_reference(with_data(path=str(tmp_path / "mine.parquet"), kind="user"))
    assert reference.smiles == set(own.smiles[own.split == "train"])
    assert reference.vs == "training set" and "mine.parquet" in reference.note


@pytest.mark.parametrize("path", ["data/full/gone.parquet", ""])
def test_a_missing_user_training_set_falls_back_to_the_subset_and_says_so(path):
    reference = novelty_reference(with_data(path=path, kind="user"))
    assert reference.vs == "subset" and "subset" in reference.note
    if path:
        assert "gone.parquet is not here" in reference.note
