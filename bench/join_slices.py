"""Join consecutive MOSES slices prepared with ``core.data prepare --limit N [--skip S]`` into
the one table ``prepare --limit (sum of N) [--skip (first S)]`` would write: every slice's
train rows, then every slice's test rows, and the metadata of a single run.

    python -m bench.join_slices FIRST NEXT [...] --out OUT

Preparing the next slice beside the one a model was trained on costs only the new molecules
(bench/default_leg7.sh: 260,000 more in ~22 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import run_reporting

KEY = b"molscope"
SAME = ("kind", "descriptors", "prefix_features", "rdkit", "selfies")


def source(path: Path) -> dict:
    """What a prepared table's metadata says about its rows."""
    return json.loads((pq.read_schema(path).metadata or {}).get(KEY, b"{}"))


def joined_source(sources: list[dict]) -> dict:
    """The metadata of the joined table; ValueError unless the slices follow each other.

    >>> a = {"kind": "prepare", "limit": 2, "n_in": 3, "n_failed": 0}
    >>> joined_source([a, {**a, "skip": 2, "n_failed": 1}])
    {'kind': 'prepare', 'limit': 4, 'n_in': 6, 'n_failed': 1}
    >>> joined_source([a, {**a, "skip": 3}])
    Traceback (most recent call last):
    ValueError: slice 2 starts at train molecule 3, not 2
    >>> later = joined_source([{**a, "skip": 4}, {**a, "skip": 6}])
    >>> later["skip"], later["limit"]
    (4, 4)
    """
    start = end = sources[0].get("skip", 0)
    for i, s in enumerate(sources, start=1):
        if s.get("kind") != "prepare" or "limit" not in s:
            raise ValueError(f"slice {i} is not a MOSES slice (core.data prepare --limit)")
        if s.get("skip", 0) != end:
            raise ValueError(f"slice {i} starts at train molecule {s.get('skip', 0)}, not {end}")
        if any(s.get(k) != sources[0].get(k) for k in SAME):
            raise ValueError(f"slice {i} was prepared with other settings than slice 1")
        end += s["limit"]
    out = dict(sources[0])
    out["limit"] = end - start
    out["n_in"] = sum(s["n_in"] for s in sources)
    out["n_failed"] = sum(s["n_failed"] for s in sources)
    return out


def join(paths: list[Path], out: Path) -> int:
    """Write the joined table to ``out``; returns its number of rows."""
    meta = joined_source([source(p) for p in paths])
    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths]
    parts = [t.filter(pc.equal(t["split"], split)) for split in ("train", "test") for t in tables]
    table = pa.concat_tables(parts).replace_schema_metadata({KEY: json.dumps(meta)})
    tmp = out.with_name(out.name + ".partial")
    pq.write_table(table, tmp, compression="zstd", compression_level=9)
    tmp.replace(out)
    return table.num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slices", nargs="+", type=Path, help="prepared slices, in MOSES order")
    parser.add_argument("--out", type=Path, required=True, help="parquet file to write")
    args = parser.parse_args()
    return run_reporting(
        lambda: f"wrote {join(args.slices, args.out):,} molecules to {args.out}",
        (OSError, ValueError, pa.ArrowException),
    )


if __name__ == "__main__":
    sys.exit(main())
