"""The MOSES molecules as MolScope uses them: read, described with RDKit, stored as parquet.

The source is the MOSES benchmark (1.58M train / 176k test SMILES) that the ``molsets``
wheel ships; it is read from the installed package folder without importing ``moses``
(that would pull in torch). Every molecule becomes one row: canonical SMILES, SELFIES,
SELFIES token count, the descriptors of ``core.chem.DESCRIPTORS`` and its split.
A molecule that RDKit or selfies rejects, or whose SELFIES does not decode back to the
same canonical SMILES, is counted and left out.

Work runs in a process pool, chunk by chunk; each finished chunk is kept in
``<out>.partial/`` so an interrupted run picks up where it stopped.

    python -m core.data prepare [--limit N] [--out PATH] [--workers 2]
    python -m core.data subset [--train 40000] [--test 4000] [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import selfies as sf
from rdkit import Chem
from tqdm import tqdm

from core.chem import DESCRIPTORS, describe, mol_from_smiles, rdkit_quiet, selfies_to_smiles
from core.errors import UserError
from core.feedback import prefix_table

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DATA = DATA_DIR / "moses_subset.parquet"
FULL_DATA = DATA_DIR / "full" / "moses.parquet"

PROPERTY_COLUMNS = list(DESCRIPTORS)
COLUMNS = ["smiles", "selfies", "n_tokens", *PROPERTY_COLUMNS, "split"]
SPLITS = ("train", "test")
CHUNK_SIZE = 2_000

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


def _row(smiles: str, names: Sequence[str] = PROPERTY_COLUMNS) -> list | None:
    """One table row for a SMILES string (``split`` not included), or ``None``.

    Descriptors not in ``names`` are NaN (a faster table for training on LogP/TPSA only).
    """
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    try:
        canonical = Chem.MolToSmiles(mol)
        selfies = sf.encoder(canonical)
        if selfies_to_smiles(selfies) != canonical:
            return None
        properties = describe(mol, names)
    except Exception:  # one odd molecule in 1.7M must not stop the run; it is counted
        return None
    values = [properties.get(name, math.nan) for name in PROPERTY_COLUMNS]
    return [canonical, selfies, sf.len_selfies(selfies), *values]


def prefix_column(name: str) -> str:
    """Column of the per-prefix values of a property (``core.feedback.prefix_table``)."""
    return f"prefix_{name}"


def schema(prefix_names: Sequence[str] = ()) -> pa.Schema:
    """The table's schema: ``SCHEMA`` plus one list column per property with prefix values."""
    extra = [(prefix_column(n), pa.list_(pa.float32())) for n in prefix_names]
    return pa.schema([*SCHEMA, *extra]) if extra else SCHEMA


def _prepare_chunk(
    task: tuple[Path, list[str], list[str], list[str], list[str]],
) -> tuple[int, int]:
    """Describe one chunk of molecules and write it to ``path``; returns (n_in, n_ok)."""
    path, smiles, splits, names, prefix_names = task
    rows = []
    with rdkit_quiet():
        for one_smiles, split in zip(smiles, splits, strict=True):
            row = _row(one_smiles, names)
            if row is not None:
                rows.append([*row, split])
                if prefix_names:
                    values = prefix_table(row[1], prefix_names)  # (L + 1, P)
                    rows[-1] += [values[:, j].tolist() for j in range(len(prefix_names))]
    columns_names = COLUMNS + [prefix_column(n) for n in prefix_names]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in columns_names]
    table = pa.table(dict(zip(columns_names, columns, strict=True)), schema=schema(prefix_names))
    _write_parquet(table, path, compression_level=3)
    return len(smiles), table.num_rows


def _write_parquet(table: pa.Table, path: Path, compression_level: int) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
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


def _build(
    out: Path | str, smiles: list[str], splits: list[str], workers: int, source: dict
) -> PrepareReport:
    """Describe ``smiles`` chunk by chunk in ``workers`` processes and write ``out``."""
    start = time.perf_counter()
    out = _checked_out(out)
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
    tasks = [
        (p, smiles[s : s + CHUNK_SIZE], splits[s : s + CHUNK_SIZE], names, prefix_names)
        for p, s in todo
    ]

    # spawn: workers start clean, without the parent's BLAS or Arrow thread pools
    context = multiprocessing.get_context("spawn")
    with (
        tqdm(total=n_in, initial=n_resumed, unit="mol", desc=out.name, smoothing=0.02) as bar,
        context.Pool(workers) as pool,
    ):
        for n_chunk, _ in pool.imap_unordered(_prepare_chunk, tasks):
            bar.update(n_chunk)

    table = (
        pa.concat_tables([pq.read_table(path) for path in paths])
        if paths
        else schema(prefix_names).empty_table()
    )
    identity = {
        **source,
        "n_in": n_in,
        "n_failed": n_in - table.num_rows,
        "rdkit": importlib.metadata.version("rdkit"),
        "selfies": importlib.metadata.version("selfies"),
    }
    table = table.replace_schema_metadata({"molscope": json.dumps(identity)})
    try:
        _write_parquet(table, out, compression_level=9)
    except OSError as e:
        raise DataError(f"cannot write {out}: {e.strerror or e}") from e
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
) -> PrepareReport:
    """Describe all of MOSES (or the first ``limit`` train molecules) into ``out``.

    ``descriptors`` restricts the computed columns (the others are NaN): LogP and TPSA
    alone take about a third of the time of all eight. ``prefix_features`` adds, per named
    property, a list column of its value for every SELFIES prefix (what a closed-loop model
    reads in training; ~7 ms a molecule for LogP and TPSA).

    With ``limit``, the test split is cut in the same proportion: the first
    ``round(limit * 176074 / 1584663)`` test molecules (22 for a limit of 200).

    >>> prepare("/tmp/moses_200.parquet", limit=200).n_in
    222
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    unknown = (set(descriptors or ()) | set(prefix_features)) - set(PROPERTY_COLUMNS)
    if unknown:
        raise DataError(f"unknown descriptors {sorted(unknown)}; known: {PROPERTY_COLUMNS}")
    _checked_out(out)
    train, test = read_moses("train"), read_moses("test")
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
            **({"descriptors": list(descriptors)} if descriptors else {}),
            **({"prefix_features": list(prefix_features)} if prefix_features else {}),
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


def main(args: argparse.Namespace) -> int:
    """Run the ``prepare`` or ``subset`` command; returns the exit code."""
    try:
        if args.command == "prepare":
            names = args.descriptors.split(",") if args.descriptors else None
            prefix = args.prefix_features.split(",") if args.prefix_features else ()
            report = prepare(
                args.out,
                limit=args.limit,
                workers=args.workers,
                descriptors=names,
                prefix_features=prefix,
            )
        else:
            report = make_subset(args.out, args.train, args.test, args.seed, args.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    size_mb = report.out.stat().st_size / 1e6
    print(
        f"wrote {report.out} ({size_mb:.1f} MB): {report.n_ok:,} of {report.n_in:,} molecules, "
        f"{report.n_failed:,} failed, {report.n_resumed:,} resumed, {report.seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    defaults = argparse.ArgumentDefaultsHelpFormatter
    from core.cli import OneLineParser

    parser = OneLineParser(prog="python -m core.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = commands.add_parser(
        "prepare", help="describe all of MOSES (or its first N)", formatter_class=defaults
    )
    prep.add_argument(
        "--limit", type=_positive_int, help="first N train molecules (test cut in proportion)"
    )
    prep.add_argument("--out", type=Path, default=FULL_DATA, help="parquet file to write")
    prep.add_argument(
        "--descriptors", help="comma-separated subset, e.g. logp,tpsa (others left empty)"
    )
    prep.add_argument(
        "--prefix-features",
        help="properties of every SELFIES prefix (closed-loop training), e.g. logp,tpsa",
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
