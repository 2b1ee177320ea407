"""core.data: prepare (pool, failures, resume), load_dataset errors, the command line."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import data
from core.chem import describe_smiles, selfies_to_smiles

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():
    PYTHON = Path(sys.executable)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> data.PrepareReport:
    out = tmp_path_factory.mktemp("prepared") / "moses_200.parquet"
    return data.prepare(out, limit=200, workers=2)


def _fake_moses(monkeypatch, train: list[str], test: list[str]) -> None:
    """Serve these SMILES as the MOSES splits (read in the parent process only)."""
    monkeypatch.setattr(data, "read_moses", lambda split: {"train": train, "test": test}[split])


def test_moses_is_found_without_importing_it():
    # in a fresh interpreter: other tests (the benchmark's) may have imported torch here
    code = (
        "import sys; from core import data; "
        "assert (data.moses_dir() / 'train.csv.gz').is_file(); "
        "assert 'moses' not in sys.modules and 'torch' not in sys.modules"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_prepare_limit_writes_every_column(prepared):
    report = prepared
    assert (report.n_in, report.n_ok, report.n_failed, report.n_resumed) == (222, 222, 0, 0)
    assert not report.out.with_name(report.out.name + ".partial").exists()
    frame = data.load_dataset(report.out)
    assert frame.columns.tolist() == [
        "smiles",
        "selfies",
        "n_tokens",
        *data.PROPERTY_COLUMNS,
        "split",
    ]
    assert frame["split"].value_counts().to_dict() == {"train": 200, "test": 22}
    first = frame.iloc[0]
    assert selfies_to_smiles(first["selfies"]) == first["smiles"]
    assert describe_smiles(first["smiles"]) == pytest.approx(
        first[data.PROPERTY_COLUMNS].astype(float).to_dict(), rel=1e-5
    )


def test_prepare_counts_failures(tmp_path, monkeypatch):
    _fake_moses(monkeypatch, ["CCO", "C1CC", "c1ccccc1", "", "nonsense"], ["CC(=O)O", "[Xx]"])
    report = data.prepare(tmp_path / "out.parquet", workers=1)
    assert (report.n_in, report.n_ok, report.n_failed) == (7, 3, 4)
    frame = data.load_dataset(report.out)
    assert frame["smiles"].tolist() == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert frame["split"].tolist() == ["train", "train", "test"]


def test_prepare_resumes_from_finished_chunks(tmp_path, monkeypatch):
    smiles = data.load_dataset()["smiles"].head(50).tolist()
    _fake_moses(monkeypatch, smiles[:40], smiles[40:])
    monkeypatch.setattr(data, "CHUNK_SIZE", 10)
    out = tmp_path / "out.parquet"
    partial = tmp_path / "out.parquet.partial"
    write = data._write_parquet

    def interrupted(table, path, compression_level):
        if path == out:  # every chunk is done; stop before the final file
            raise KeyboardInterrupt
        write(table, path, compression_level)

    monkeypatch.setattr(data, "_write_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(out, workers=2)
    chunks = sorted(partial.glob("chunk_*.parquet"))
    assert len(chunks) == 5 and not out.exists()

    chunks[2].unlink()  # as if the run had stopped while this chunk was in flight
    monkeypatch.setattr(data, "_write_parquet", write)
    report = data.prepare(out, workers=2)
    assert (report.n_in, report.n_ok, report.n_resumed) == (50, 50, 40)
    assert data.load_dataset(out)["smiles"].tolist() == smiles
    assert not partial.exists()


def test_prepare_discards_chunks_of_another_run(tmp_path, monkeypatch):
    _fake_moses(monkeypatch, ["CCO", "CCN"], ["CCC"])
    partial = tmp_path / "out.parquet.partial"
    partial.mkdir()
    (partial / "manifest.json").write_text('{"source": "something else"}')
    pd.DataFrame({"smiles": ["C"]}).to_parquet(partial / "chunk_00000.parquet")
    report = data.prepare(tmp_path / "out.parquet", workers=1)
    assert (report.n_ok, report.n_resumed) == (3, 0)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(data.DataError, match="no data set"):
        data.load_dataset(tmp_path / "missing.parquet")
    garbled = tmp_path / "garbled.parquet"
    garbled.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(data.DataError, match="cannot read"):
        data.load_dataset(garbled)
    partial_columns = tmp_path / "columns.parquet"
    pd.DataFrame({"smiles": ["CCO"], "logp": [0.5]}).to_parquet(partial_columns)
    with pytest.raises(data.DataError, match="lacks columns"):
        data.load_dataset(partial_columns)


def test_committed_subset():
    frame = data.load_dataset()
    counts = frame["split"].value_counts()
    assert counts["train"] > 39_000 and counts["test"] > 3_900
    assert frame["smiles"].is_unique
    assert data.DEFAULT_DATA.stat().st_size < 5e6


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PYTHON), "-m", "core.data", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["prepare", "--limit", "-5"],
        ["prepare", "--limit", "many"],
        ["subset", "--workers", "0"],
        ["prepare", "--frobnicate"],
        [],
    ],
)
def test_cli_usage_errors(args):
    result = _cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_cli_unwritable_out(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _cli("prepare", "--limit", "10", "--out", str(blocker / "out.parquet"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (blocker.parent / "out.parquet").exists()


def test_cli_help():
    result = _cli("prepare", "--help")
    assert result.returncode == 0 and "--limit" in result.stdout
