"""Molecule tables as MolScope uses them: read, described with RDKit, stored as parquet.

The default source is the MOSES benchmark (1.58M train / 176k test SMILES) that the
``molsets`` wheel ships; it is read from the installed package folder without importing
``moses`` (that would pull in torch). A user's own file (CSV/TSV, SMILES list, SDF; see
``core.molfile``) goes the same way with ``--input``: standardised (``core.chem.standardize``:
largest fragment, neutralised; the choice is recorded in the table's metadata),
canonicalised, de-duplicated and split into train/test with a seed.

Every molecule becomes one row: canonical SMILES, SELFIES, SELFIES token count, the
descriptors of ``core.chem.DESCRIPTORS`` and its split. A molecule that RDKit or selfies
rejects, or whose SELFIES does not decode back to the same canonical SMILES, is left out and
counted by reason; for a user's file the rejected rows go to ``NAME.rejected.csv`` beside it.

Work runs in a process pool, chunk by chunk; each finished chunk is kept in
``<out>.partial/`` so an interrupted run picks up where it stopped.

    python -m core.data prepare [--limit N] [--out PATH] [--workers 2]
    python -m core.data prepare --input FILE [--smiles-column NAME] [--test-fraction 0.1]
                                [--seed 0] [--out data/NAME.parquet] [--prefix-features ...]
    python -m core.data subset [--train 40000] [--test 4000] [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import selfies as sf
from rdkit import Chem
from tqdm import tqdm

from core.chem import (
    DESCRIPTORS,
    MAX_SMILES_CHARS,
    describe,
    mol_from_smiles,
    rdkit_quiet,
    selfies_to_smiles,
    standardize,
)
from core.errors import UserError
from core.feedback import prefix_table
from core.molfile import MAX_INPUT_BYTES, MAX_INPUT_CHARS, MolFileError, read_molecules
from core.ordering import open_end_selfies

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DATA = DATA_DIR / "moses_subset.parquet"
FULL_DATA = DATA_DIR / "full" / "moses.parquet"

PROPERTY_COLUMNS = list(DESCRIPTORS)
COLUMNS = ["smiles", "selfies", "n_tokens", *PROPERTY_COLUMNS, "split"]
SPLITS = ("train", "test")
CHUNK_SIZE = 2_000
INPUT_ROW = "input_row"  # a user table's column: the row of the input file each molecule is from
REJECTED_COLUMNS = ["row", "input", "reason", "detail"]

SCHEMA = pa.schema(
    [
        ("smiles", pa.string()),
        ("selfies", pa.string()),
        ("n_tokens", pa.int32()),
        *[(name, pa.float32()) for name in PROPERTY_COLUMNS],
        ("split", pa.string()),
    ]
)


class DataError(UserError, RuntimeError):
    """The data set cannot be found, read or written (the message says what to do)."""


@dataclass(frozen=True)
class PrepareReport:
    """What one ``prepare`` / ``make_subset`` run did."""

    out: Path  # the parquet file written
    n_in: int  # molecules read from MOSES
    n_ok: int  # rows written
    n_failed: int  # molecules left out (unparsable, not encodable, no round trip)
    n_resumed: int  # molecules taken from chunks an earlier, interrupted run finished
    seconds: float  # wall time of this run
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows (user files)
    rejected_file: Path | None = None  # the rows left out and why (user files)
    n_train: int | None = None  # rows in the train split (user files)


def moses_dir() -> Path:
    """Folder of the MOSES CSV files inside the installed ``molsets`` wheel.

    Found with ``importlib.util.find_spec`` so ``moses`` (and torch) is never imported.

    >>> (moses_dir() / "train.csv.gz").is_file()
    True
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("molsets is not installed: pip install --no-deps molsets==0.3.1")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset" / "data"
    if not folder.is_dir():
        raise DataError(f"the molsets package has no data folder {folder}; reinstall molsets")
    return folder


def read_moses(split: str) -> list[str]:
    """The SMILES of one MOSES split, ``"train"`` or ``"test"``, in file order.

    >>> len(read_moses("test"))
    176074
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = moses_dir() / f"{split}.csv.gz"
    try:
        return pd.read_csv(path, usecols=["SMILES"])["SMILES"].astype(str).tolist()
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read MOSES {split} set {path}: {e}") from e


# reasons a row is left out (counted, and listed in a user file's NAME.rejected.csv)
EMPTY = "empty"
TOO_LONG = f"longer than {MAX_SMILES_CHARS} characters"
NOT_SMILES = "not a valid SMILES"
NOT_STANDARDIZED = "standardisation failed"
NO_SELFIES = "SELFIES cannot encode it"
NO_ROUND_TRIP = "SELFIES does not decode back to it"
NO_DESCRIPTORS = "descriptors failed"
DUPLICATE = "duplicate"


def _row(
    smiles: str,
    names: Sequence[str] = PROPERTY_COLUMNS,
    standardization: dict | None = None,
    open_end: bool = False,
) -> list | str:
    """One table row for a SMILES string (``split`` not included), or why there is none.

    Descriptors not in ``names`` are NaN (a faster table for training on LogP/TPSA only).
    ``standardization``: keyword arguments of ``core.chem.standardize`` (None: as written).
    ``open_end``: the SELFIES is written so its derivation stays open after the last symbol
    (``core.ordering``); the SMILES column stays canonical.
    """
    text = smiles.strip() if isinstance(smiles, str) else ""
    if not text:
        return EMPTY
    if len(text) > MAX_SMILES_CHARS:
        return TOO_LONG
    mol = mol_from_smiles(text)
    if mol is None:
        return NOT_SMILES
    try:
        if standardization is not None:
            mol = standardize(mol, **standardization)
            if mol is None:
                return NOT_STANDARDIZED
            # described as parsed back from the canonical SMILES, as generated molecules are
            mol = mol_from_smiles(Chem.MolToSmiles(mol))
            if mol is None:
                return NOT_STANDARDIZED
        canonical = Chem.MolToSmiles(mol)
        selfies = sf.encoder(canonical)
        if open_end:
            selfies = open_end_selfies(mol, canonical, selfies)
    except Exception:  # one odd molecule in 1.7M must not stop the run; it is counted
        return NO_SELFIES
    if selfies_to_smiles(selfies) != canonical:
        return NO_ROUND_TRIP
    try:
        properties = describe(mol, names)
    except Exception:
        return NO_DESCRIPTORS
    values = [properties.get(name, math.nan) for name in PROPERTY_COLUMNS]
    return [canonical, selfies, sf.len_selfies(selfies), *values]


def prefix_column(name: str) -> str:
    """Column of the per-prefix values of a property (``core.feedback.prefix_table``)."""
    return f"prefix_{name}"


def schema(prefix_names: Sequence[str] = ()) -> pa.Schema:
    """The table's schema: ``SCHEMA`` plus one list column per property with prefix values."""
    extra = [(prefix_column(n), pa.list_(pa.float32())) for n in prefix_names]
    return pa.schema([*SCHEMA, *extra]) if extra else SCHEMA


def _chunk_schema(prefix_names: Sequence[str]) -> pa.Schema:
    """A chunk's schema: the table's plus the input row of each molecule."""
    return schema(prefix_names).append(pa.field(INPUT_ROW, pa.int64()))


def _rejected_path(chunk: Path) -> Path:
    """Where a chunk's rejected rows are kept (``rejected_00003.parquet``)."""
    return chunk.with_name("rejected_" + chunk.name.removeprefix("chunk_"))


def _prepare_chunk(task: tuple) -> tuple[int, int]:
    """Describe one chunk of molecules and write it to ``path`` (the rows left out, with
    their reasons, first beside it: the chunk file marks the chunk done); returns
    (n_in, n_ok)."""
    path, smiles, rows, splits, names, prefix_names, standardization, open_end = task
    good, bad = [], []
    with rdkit_quiet():
        for one_smiles, row_number, split in zip(smiles, rows, splits, strict=True):
            row = _row(one_smiles, names, standardization, open_end)
            if isinstance(row, str):
                text = one_smiles if isinstance(one_smiles, str) else ""
                bad.append([row_number, text[:MAX_INPUT_CHARS], row, ""])
                continue
            extra = []
            if prefix_names:
                values = prefix_table(row[1], prefix_names)  # (L + 1, P)
                extra = [values[:, j].tolist() for j in range(len(prefix_names))]
            good.append([*row, split, *extra, row_number])
    rejected = pa.table(dict(zip(REJECTED_COLUMNS, _columns(bad, 4), strict=True)))
    _write_parquet(rejected, _rejected_path(path), compression_level=3)
    chunk_schema = _chunk_schema(prefix_names)
    columns = dict(zip(chunk_schema.names, _columns(good, len(chunk_schema)), strict=True))
    _write_parquet(pa.table(columns, schema=chunk_schema), path, compression_level=3)
    return len(smiles), len(good)


def _columns(rows: list[list], width: int) -> list:
    """Row lists as column lists (``width`` empty ones when there are no rows)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp{os.getpid()}")


def _write_parquet(table: pa.Table, path: Path, compression_level: int) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    tmp = _tmp(path)
    pq.write_table(table, tmp, compression="zstd", compression_level=compression_level)
    os.replace(tmp, path)


def _checked_out(out: Path | str) -> Path:
    """``out`` as a Path once its folder exists and is writable (checked before long work)."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out} is a directory; give a .parquet file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder of {out}: {e.strerror or e}") from e
    if not os.access(out.parent, os.W_OK):
        raise DataError(f"cannot write to {out.parent}: permission denied")
    return out


def _open_partial(partial: Path, manifest: dict) -> None:
    """Create the chunk folder; chunks of a run with other inputs are discarded."""
    manifest_path = partial / "manifest.json"
    if manifest_path.is_file():
        try:
            same = json.loads(manifest_path.read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if not same:
            print(f"note: discarding chunks of a different run in {partial}", file=sys.stderr)
            shutil.rmtree(partial)
    try:
        partial.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    except OSError as e:
        raise DataError(f"cannot write to {partial.parent}: {e.strerror or e}") from e


def _run_chunks(
    out: Path,
    smiles: list[str],
    rows: list[int],
    splits: list[str],
    workers: int,
    source: dict,
) -> tuple[pa.Table, pd.DataFrame, int, Path]:
    """Describe ``smiles`` chunk by chunk in ``workers`` processes, resuming from the chunks
    in ``<out>.partial/`` of an interrupted run with the same ``source``. Returns the table
    (with the ``INPUT_ROW`` column), the rows left out, the number of molecules resumed and
    the chunk folder (the caller removes it once ``out`` is written)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    partial = out.with_name(out.name + ".partial")
    n_in = len(smiles)
    _open_partial(partial, {"source": source, "n_in": n_in, "chunk_size": CHUNK_SIZE})

    starts = range(0, n_in, CHUNK_SIZE)
    paths = [partial / f"chunk_{i:05d}.parquet" for i in range(len(starts))]
    todo = [(path, s) for path, s in zip(paths, starts, strict=True) if not path.is_file()]
    n_resumed = n_in - sum(len(smiles[s : s + CHUNK_SIZE]) for _, s in todo)
    names = source.get("descriptors") or PROPERTY_COLUMNS
    prefix_names = source.get("prefix_features") or []
    standardization = source.get("standardization")
    tasks = [
        (
            p,
            smiles[s : s + CHUNK_SIZE],
            rows[s : s + CHUNK_SIZE],
            splits[s : s + CHUNK_SIZE],
            names,
            prefix_names,
            standardization,
            bool(source.get("open_end")),
        )
        for p, s in todo
    ]

    # spawn: workers start clean, without the parent's BLAS or Arrow thread pools
    context = multiprocessing.get_context("spawn")
    with (
        tqdm(total=n_in, initial=n_resumed, unit="mol", desc=out.name, smoothing=0.02) as bar,
        context.Pool(min(workers, max(len(tasks), 1))) as pool,
    ):
        for n_chunk, _ in pool.imap_unordered(_prepare_chunk, tasks):
            bar.update(n_chunk)

    chunk_schema = _chunk_schema(prefix_names)
    table = (
        pa.concat_tables([pq.read_table(path) for path in paths])
        if paths
        else chunk_schema.empty_table()
    )
    rejected = [
        pq.read_table(_rejected_path(p)).to_pandas() for p in paths if _rejected_path(p).is_file()
    ]
    rejected = pd.concat(rejected) if rejected else pd.DataFrame(columns=REJECTED_COLUMNS)
    return table, rejected, n_resumed, partial


def _identity(source: dict, n_in: int, n_ok: int) -> dict:
    """What the table's metadata says about where its rows come from."""
    return {
        **source,
        "n_in": n_in,
        "n_failed": n_in - n_ok,
        "rdkit": importlib.metadata.version("rdkit"),
        "selfies": importlib.metadata.version("selfies"),
    }


def _save(table: pa.Table, out: Path, identity: dict) -> None:
    table = table.replace_schema_metadata({"molscope": json.dumps(identity)})
    try:
        _write_parquet(table, out, compression_level=9)
    except OSError as e:
        raise DataError(f"cannot write {out}: {e.strerror or e}") from e


def _build(
    out: Path | str, smiles: list[str], splits: list[str], workers: int, source: dict
) -> PrepareReport:
    """Describe MOSES ``smiles`` chunk by chunk in ``workers`` processes and write ``out``."""
    start = time.perf_counter()
    out = _checked_out(out)
    n_in = len(smiles)
    table, _, n_resumed, partial = _run_chunks(
        out, smiles, list(range(n_in)), splits, workers, source
    )
    table = table.drop_columns([INPUT_ROW])
    _save(table, out, _identity(source, n_in, table.num_rows))
    shutil.rmtree(partial)
    return PrepareReport(
        out=out,
        n_in=n_in,
        n_ok=table.num_rows,
        n_failed=n_in - table.num_rows,
        n_resumed=n_resumed,
        seconds=time.perf_counter() - start,
    )


def prepare(
    out: Path | str = FULL_DATA,
    limit: int | None = None,
    workers: int = 2,
    descriptors: Sequence[str] | None = None,
    prefix_features: Sequence[str] = (),
    skip: int = 0,
    open_end: bool = False,
) -> PrepareReport:
    """Describe all of MOSES (or the first ``limit`` train molecules) into ``out``.

    ``descriptors`` restricts the computed columns (the others are NaN): LogP and TPSA
    alone take about a third of the time of all eight. ``prefix_features`` adds, per named
    property, a list column of its value for every SELFIES prefix (what a closed-loop model
    reads in training; ~7 ms a molecule for LogP and TPSA).

    With ``limit``, the test split is cut in the same proportion: the first
    ``round(limit * 176074 / 1584663)`` test molecules (22 for a limit of 200). ``skip``
    starts after the first ``skip`` train molecules (and test molecules in proportion): the
    next slice of MOSES for a model that has read the first one. ``open_end`` writes each
    SELFIES so that its derivation stays open after the last symbol (``core.ordering``): the
    model learns to end molecules with ``[EOS]``, where it reads the gap.

    >>> prepare("/tmp/moses_200.parquet", limit=200).n_in
    222
    >>> prepare("/tmp/moses_200b.parquet", limit=200, skip=200).n_in
    222
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if skip < 0:
        raise ValueError(f"skip must be 0 or more, got {skip}")
    unknown = (set(descriptors or ()) | set(prefix_features)) - set(PROPERTY_COLUMNS)
    if unknown:
        raise DataError(f"unknown descriptors {sorted(unknown)}; known: {PROPERTY_COLUMNS}")
    _checked_out(out)
    train, test = read_moses("train"), read_moses("test")
    test_start = round(skip * len(test) / len(train))
    train, test = train[skip:], test[test_start:]
    if limit is not None:
        n_test = round(limit * len(test) / len(train))
        train, test = train[:limit], test[:n_test]
    return _build(
        out,
        train + test,
        ["train"] * len(train) + ["test"] * len(test),
        workers,
        # the manifest names descriptors only when restricted, so older full runs still resume
        {
            "kind": "prepare",
            "limit": limit,
            **({"skip": skip} if skip else {}),
            **({"descriptors": list(descriptors)} if descriptors else {}),
            **({"prefix_features": list(prefix_features)} if prefix_features else {}),
            **({"open_end": True} if open_end else {}),
        },
    )


def make_subset(
    out: Path | str = DEFAULT_DATA,
    n_train: int = 40_000,
    n_test: int = 4_000,
    seed: int = 0,
    workers: int = 2,
) -> PrepareReport:
    """Describe a random sample (fixed ``seed``) of each MOSES split into ``out``.

    Rows keep the MOSES file order within each split.

    >>> make_subset("/tmp/subset.parquet", n_train=100, n_test=10).n_in
    110
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"subset sizes must be positive, got {n_train} and {n_test}")
    _checked_out(out)
    rng = np.random.default_rng(seed)
    smiles, splits = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        pool = read_moses(split)
        keep = np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))
        smiles += [pool[i] for i in keep]
        splits += [split] * len(keep)
    source = {"kind": "subset", "n_train": n_train, "n_test": n_test, "seed": seed}
    return _build(out, smiles, splits, workers, source)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_out(input_path: Path | str, root: Path | str = DATA_DIR) -> Path:
    """Where ``prepare --input FILE`` writes by default: ``data/<FILE's stem>.parquet``.

    >>> default_out("/tmp/My actives.csv", "data").as_posix()
    'data/My_actives.parquet'
    """
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(input_path).stem)
    return Path(root) / f"{stem.strip('._') or 'molecules'}.parquet"


def rejected_file(out: Path | str) -> Path:
    """The side file of a user table: the rows left out and why (``NAME.rejected.csv``).

    >>> rejected_file("data/mine.parquet").as_posix()
    'data/mine.rejected.csv'
    """
    out = Path(out)
    return out.with_name(out.stem + ".rejected.csv")


def _split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """``"train"``/``"test"`` for ``n`` rows: a seeded random ``test_fraction`` of them test
    (at least one when the fraction is positive and there are two rows or more)."""
    n_test = round(n * test_fraction)
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    splits = np.full(n, "train", dtype=object)
    splits[np.random.default_rng(seed).choice(n, size=n_test, replace=False)] = "test"
    return splits


def _reason_counts(rejected: pd.DataFrame) -> dict[str, int]:
    """Rows per reason, most frequent first."""
    return dict(Counter(rejected["reason"]).most_common())


def _deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``frame`` (in file order) whose SMILES is new, and the others as rejected
    rows naming the row they repeat."""
    first = frame.drop_duplicates("smiles")
    again = frame[~frame.index.isin(first.index)]
    firsts = dict(zip(first["smiles"], first[INPUT_ROW], strict=True))
    rejected = pd.DataFrame(
        {
            "row": again[INPUT_ROW],
            "input": again["smiles"].str.slice(0, MAX_INPUT_CHARS),
            "reason": DUPLICATE,
            "detail": [f"same molecule as row {firsts[s]}" for s in again["smiles"]],
        },
        columns=REJECTED_COLUMNS,
    )
    return first, rejected


def _nothing_usable(input_path: Path, n_in: int, counts: dict[str, int]) -> DataError:
    why = ", ".join(f"{reason}: {n:,}" for reason, n in counts.items())
    return DataError(
        f"none of the {n_in:,} rows of {input_path.name} is a usable molecule ({why}); "
        "nothing written"
    )


def _check_options(test_fraction: float, prefix_features: Sequence[str]) -> None:
    """DataError for a test fraction outside [0, 1) or an unknown descriptor."""
    if not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    unknown = set(prefix_features) - set(PROPERTY_COLUMNS)
    if unknown:
        raise DataError(f"unknown descriptors {sorted(unknown)}; known: {PROPERTY_COLUMNS}")


def _by_row(*frames: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows of ``frames`` together, in input order."""
    parts = [frame for frame in frames if len(frame)]
    rejected = pd.concat(parts) if parts else pd.DataFrame(columns=REJECTED_COLUMNS)
    return rejected.astype({"row": "int64"}).sort_values("row", kind="stable")


def _with_splits(
    first: pd.DataFrame, test_fraction: float, seed: int, prefix_features: Sequence[str]
) -> tuple[pa.Table, int]:
    """The deduplicated rows as a table of the chunk schema with a seeded ``split`` column,
    and how many of them are in the train split."""
    splits = _split(len(first), test_fraction, seed)
    kept = pa.Table.from_pandas(first.assign(split=splits), preserve_index=False)
    kept = kept.select([*schema(prefix_features).names, INPUT_ROW])
    return kept.cast(_chunk_schema(prefix_features)), int((splits == "train").sum())


def _save_with_rejected(
    kept: pa.Table, rejected: pd.DataFrame, out: Path, identity: dict
) -> Path | None:
    """``kept`` saved to ``out`` and the ``rejected`` rows, when there are any, beside it
    (``rejected_file``, whose path is returned); a stale one of an overwritten table goes."""
    side = rejected_file(out)
    tmp_side = _tmp(side)
    try:
        if len(rejected):
            rejected.to_csv(tmp_side, index=False)
        _save(kept, out, identity)
        if len(rejected):
            os.replace(tmp_side, side)
        else:
            side.unlink(missing_ok=True)
    finally:
        tmp_side.unlink(missing_ok=True)
    return side if len(rejected) else None


def prepare_input(
    input_path: Path | str,
    out: Path | str | None = None,
    smiles_column: str | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 2,
    prefix_features: Sequence[str] = (),
    largest_fragment: bool = True,
    neutralize: bool = True,
    overwrite: bool = False,
    open_end: bool = False,
) -> PrepareReport:
    """Prepare a user's molecule file (``core.molfile``: CSV/TSV, SMILES list, SDF) into
    ``out`` (default ``data/<stem>.parquet``), the rows left out into ``NAME.rejected.csv``.

    Each molecule is standardised (``core.chem.standardize``: ``largest_fragment``,
    ``neutralize``), canonicalised, encoded as SELFIES and described; duplicates after
    standardisation keep their first row; a seeded ``test_fraction`` goes to the test split.
    A bad row is counted by reason, never fatal; a file with no usable row is a DataError
    and nothing is written. ``prefix_features`` and ``open_end`` as in ``prepare`` (open-ended
    SELFIES for fine-tuning a model trained on them, as ``checkpoints/default`` is).

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "mine.smi")
    >>> _ = open(path, "w").write("CCO\\nCC(=O)[O-].[Na+]\\nOCC\\nC1CC\\n")
    >>> report = prepare_input(path, os.path.join(folder, "mine.parquet"), workers=1)
    >>> report.n_ok, report.rejected
    (2, {'duplicate': 1, 'not a valid SMILES': 1})
    """
    start = time.perf_counter()
    _check_options(test_fraction, prefix_features)
    input_path = Path(input_path)
    out = _checked_out(out if out is not None else default_out(input_path))
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists: choose another --out or pass --overwrite")
    try:
        found = read_molecules(input_path, smiles_column)
    except MolFileError as e:
        raise DataError(str(e)) from e
    source = {
        "kind": "user", "name": out.stem, "input": input_path.name,
        "input_sha256": _sha256(input_path), "format": found.format,
        "smiles_column": found.column,
        "standardization": {"largest_fragment": largest_fragment, "neutralize": neutralize},
        "test_fraction": test_fraction, "seed": seed,
        **({"prefix_features": list(prefix_features)} if prefix_features else {}),
        **({"open_end": True} if open_end else {}),
    }  # fmt: skip
    n_in = found.n_rows
    unreadable = pd.DataFrame(found.unreadable, columns=REJECTED_COLUMNS)
    if not found.smiles:
        raise _nothing_usable(input_path, n_in, _reason_counts(unreadable))
    table, rejected, n_resumed, partial = _run_chunks(
        out, found.smiles, found.rows, [""] * len(found.smiles), workers, source
    )
    first, duplicates = _deduplicate(table.to_pandas())
    rejected = _by_row(unreadable, rejected, duplicates)
    counts = _reason_counts(rejected)
    if len(first) == 0:
        shutil.rmtree(partial)
        raise _nothing_usable(input_path, n_in, counts)
    kept, n_train = _with_splits(first, test_fraction, seed, prefix_features)
    identity = {
        **_identity(source, n_in, kept.num_rows),
        "rejected": counts,
        "n_train": n_train,
        "n_test": kept.num_rows - n_train,
    }
    side = _save_with_rejected(kept, rejected, out, identity)
    shutil.rmtree(partial)
    return PrepareReport(
        out=out, n_in=n_in, n_ok=kept.num_rows, n_failed=n_in - kept.num_rows,
        n_resumed=n_resumed, seconds=time.perf_counter() - start, rejected=counts,
        rejected_file=side, n_train=n_train,
    )  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """A prepared table as the dashboard lists it (read from its metadata, not its rows)."""

    path: Path
    name: str  # "MOSES subset", "MOSES (moses)", or the name a user gave it
    kind: str  # "subset" or "prepare" (MOSES), "user" (a user's own file), "" (unknown)
    n_rows: int  # molecules in it
    source: dict  # its metadata (how it was made)


def dataset_info(path: Path | str) -> DatasetInfo:
    """Name, kind and size of a prepared table, from its parquet metadata.

    >>> dataset_info(DEFAULT_DATA).name
    'MOSES subset'
    """
    path = Path(path)
    try:
        meta = pq.read_metadata(path)
        raw = (meta.metadata or {}).get(b"molscope", b"{}")
        source = json.loads(raw)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise DataError(f"cannot read data set {path}: {e}") from e
    kind = source.get("kind", "") if isinstance(source, dict) else ""
    if kind == "subset":
        name = "MOSES subset"
    elif kind == "prepare":
        name = f"MOSES ({path.stem})"
    else:
        name = source.get("name") or path.stem
    return DatasetInfo(path, name, kind, meta.num_rows, source if isinstance(source, dict) else {})


def list_datasets(root: Path | str = DATA_DIR) -> list[DatasetInfo]:
    """The prepared tables: the MOSES subset first, then MOSES tables under ``root/full/``,
    then every other table directly under ``root`` (users' datasets), by name. A file that
    cannot be read is left out.

    >>> list_datasets()[0].name
    'MOSES subset'
    """
    root = Path(root)
    candidates = [DEFAULT_DATA, *sorted((root / "full").glob("*.parquet"))]
    candidates += sorted(p for p in root.glob("*.parquet") if p.resolve() != DEFAULT_DATA)
    found, seen = [], set()
    for path in candidates:
        if not path.is_file() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            found.append(dataset_info(path))
        except DataError:
            continue
    return found


def checkpoint_data_path(meta: dict) -> Path | None:
    """The data file a checkpoint's ``meta`` names, a relative path resolved from the
    repository (as training writes it); None when it names none.

    >>> checkpoint_data_path({"data": {"path": "data/x.parquet"}}) == DATA_DIR / "x.parquet"
    True
    >>> checkpoint_data_path({}) is None
    True
    """
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    path = str(data.get("path") or "")
    if not path:
        return None
    return Path(path) if Path(path).is_absolute() else DATA_DIR.parent / path


def load_dataset(path: Path | str | None = None) -> pd.DataFrame:
    """Read a prepared table (the committed subset by default) as a DataFrame.

    >>> load_dataset().columns[:3].tolist()
    ['smiles', 'selfies', 'n_tokens']
    """
    path = DEFAULT_DATA if path is None else Path(path)
    if not path.is_file():
        raise DataError(
            f"no data set at {path}; build one with `python -m core.data prepare --out {path}`"
        )
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise DataError(f"cannot read data set {path}: {e}") from e
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"data set {path} lacks columns {missing}; rebuild it with core.data")
    return frame


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _prepare_command(args: argparse.Namespace) -> PrepareReport:
    prefix = _names(args.prefix_features)
    if args.input is None:
        for flag in ("smiles_column", "test_fraction", "seed", "keep_fragments", "keep_charges"):
            if getattr(args, flag) not in (None, False):
                raise DataError(f"--{flag.replace('_', '-')} needs --input FILE")
        return prepare(
            args.out or FULL_DATA,
            limit=args.limit,
            skip=args.skip or 0,
            workers=args.workers,
            descriptors=_names(args.descriptors) or None,
            prefix_features=prefix,
            open_end=args.open_end,
        )
    if args.limit is not None or args.descriptors or args.skip:
        raise DataError("--limit, --skip and --descriptors are for MOSES, not with --input")
    return prepare_input(
        args.input,
        args.out,
        smiles_column=args.smiles_column,
        test_fraction=0.1 if args.test_fraction is None else args.test_fraction,
        seed=args.seed or 0,
        workers=args.workers,
        prefix_features=prefix,
        largest_fragment=not args.keep_fragments,
        neutralize=not args.keep_charges,
        overwrite=args.overwrite,
        open_end=args.open_end,
    )


def main(args: argparse.Namespace) -> int:
    """Run the ``prepare`` or ``subset`` command; returns the exit code."""
    try:
        if args.command == "prepare":
            report = _prepare_command(args)
        else:
            report = make_subset(args.out, args.train, args.test, args.seed, args.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    size_mb = report.out.stat().st_size / 1e6
    if report.n_train is None:
        print(
            f"wrote {report.out} ({size_mb:.1f} MB): {report.n_ok:,} of {report.n_in:,} "
            f"molecules, {report.n_failed:,} failed, {report.n_resumed:,} resumed, "
            f"{report.seconds:.0f} s"
        )
        return 0
    why = ", ".join(f"{reason} {n:,}" for reason, n in report.rejected.items())
    left_out = f"{report.n_failed:,} left out ({why}) -> {report.rejected_file}" if why else ""
    print(
        f"wrote {report.out} ({size_mb:.1f} MB): {report.n_ok:,} of {report.n_in:,} rows "
        f"({report.n_train:,} train, {report.n_ok - report.n_train:,} test)"
        + (f"; {left_out}" if left_out else "")
        + f"; {report.seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    defaults = argparse.ArgumentDefaultsHelpFormatter
    from core.cli import OneLineParser

    parser = OneLineParser(prog="python -m core.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = commands.add_parser(
        "prepare",
        help="describe all of MOSES (or its first N), or your own file with --input",
        formatter_class=defaults,
    )
    prep.add_argument(
        "--input",
        type=Path,
        help="your molecules: .csv/.tsv (a SMILES column), .smi/.txt or .sdf, at most "
        f"{MAX_INPUT_BYTES >> 20} MB (default: MOSES)",
    )
    prep.add_argument(
        "--smiles-column", help="the SMILES column of a CSV/TSV (default: found by its name)"
    )
    prep.add_argument(
        "--test-fraction",
        type=_fraction,
        help="share of your molecules held out as the test split (default 0.1)",
    )
    prep.add_argument(
        "--seed", type=int, help="random seed of the train/test split of --input (default 0)"
    )
    prep.add_argument(
        "--keep-fragments",
        action="store_true",
        help="keep every fragment (default: the largest organic one; salts, solvents go)",
    )
    prep.add_argument(
        "--keep-charges", action="store_true", help="do not neutralise charged molecules"
    )
    prep.add_argument(
        "--overwrite", action="store_true", help="replace an existing table of that name"
    )
    prep.add_argument(
        "--limit", type=_positive_int, help="first N train molecules (test cut in proportion)"
    )
    prep.add_argument(
        "--skip", type=_positive_int, help="start after the first N train molecules (and test)"
    )
    prep.add_argument(
        "--out",
        type=Path,
        help=f"parquet file to write (default: {FULL_DATA.relative_to(DATA_DIR.parent)}, "
        "or data/<stem of --input>.parquet)",
    )
    prep.add_argument(
        "--descriptors", help="comma-separated subset, e.g. logp,tpsa (others left empty)"
    )
    prep.add_argument(
        "--prefix-features",
        help="properties of every SELFIES prefix (closed-loop training), e.g. logp,tpsa",
    )
    prep.add_argument(
        "--open-end",
        action="store_true",
        help="write each SELFIES from a root atom that leaves its end open, so the model "
        "learns to end molecules with [EOS] (core.ordering); MOSES or --input (to fine-tune "
        "a model trained so, as checkpoints/default is)",
    )
    sub = commands.add_parser(
        "subset", help="describe a random fixed-seed sample of MOSES", formatter_class=defaults
    )
    sub.add_argument("--train", type=_positive_int, default=40_000, help="train molecules")
    sub.add_argument("--test", type=_positive_int, default=4_000, help="test molecules")
    sub.add_argument("--seed", type=int, default=0, help="random seed of the sample")
    sub.add_argument("--out", type=Path, default=DEFAULT_DATA, help="parquet file to write")
    for command in (prep, sub):
        command.add_argument("--workers", type=_positive_int, default=2, help="worker processes")
    sys.exit(main(parser.parse_args()))
