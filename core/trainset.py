"""The data of a training run: the prepared table's molecules that have every conditioned
property, split into training and validation rows, each property's normalisation from the
training rows, and both splits encoded for the model (with the properties of every prefix
when the model is closed loop).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core.batches import EncodedSet, encode_set
from core.checkpoint import Bundle, PropertyScale
from core.data import DataError, dataset_info, load_dataset, prefix_column


def load_table(path: Path) -> pd.DataFrame:
    """The prepared table (train and test splits) at ``path``."""
    table = load_dataset(path)
    if "split" not in table or not (table["split"] == "train").any():
        raise DataError(f"{path} has no training rows (column 'split' == 'train')")
    return table


def with_properties(table: pd.DataFrame, names: list[str], path: Path) -> pd.DataFrame:
    """The rows of ``table`` that have every property in ``names``; DataError when the table
    has no values for one (a MOSES table prepared with ``--descriptors``, say)."""
    missing = [n for n in names if n not in table or table[n].isna().all()]
    if missing:
        raise DataError(
            f"{path} has no values for {', '.join(missing)}; prepare it with every descriptor"
        )
    keep = table[names].notna().all(axis=1)
    if not keep.all():
        print(f"note: {int((~keep).sum()):,} rows lack a property value; left out", file=sys.stderr)
    return table[keep]


def split_rows(
    table: pd.DataFrame, limit: int | None, val_size: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and at most ``val_size`` validation rows (the test split's, or the last
    tenth of the training rows when there is none), of the first ``limit`` rows of each split.

    >>> table = pd.DataFrame({"split": ["train"] * 30 + ["test"] * 5})
    >>> [len(rows) for rows in split_rows(table, 20, 3)], len(split_rows(table[:30], None, 9)[1])
    ([20, 3], 3)
    """
    if limit:
        table = table.groupby("split", group_keys=False).head(limit)
    train_rows = table[table["split"] == "train"]
    val_rows = table[table["split"] != "train"].head(val_size)
    if len(val_rows) == 0:
        val_rows = train_rows.tail(min(val_size, len(train_rows) // 10 or 1))
    return train_rows, val_rows


def training_rows(
    table: pd.DataFrame, names: list[str], path: Path, limit: int | None, val_size: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation rows (``split_rows``) of the molecules in ``table`` (read
    from ``path``) that have every property in ``names`` (``with_properties``)."""
    return split_rows(with_properties(table, names, path), limit, val_size)


def property_scales(table: pd.DataFrame, names: list[str]) -> dict[str, PropertyScale]:
    """Normalisation and data range of each property, from the training split only.

    >>> property_scales(pd.DataFrame({"logp": [1.0, 2.0, 3.0]}), ["logp"])["logp"].mean
    2.0
    """
    scales = {}
    for name in names:
        col = table[name].to_numpy(dtype=np.float64)
        lo, hi = np.percentile(col, [0.5, 99.5])
        scales[name] = PropertyScale(float(col.mean()), float(col.std()), float(lo), float(hi))
    return scales


def prefix_arrays(rows: pd.DataFrame, bundle: Bundle) -> list[np.ndarray]:
    """Per molecule what each position reads (L + 1, P) (``Bundle.position_reads``): the
    normalised properties of its prefixes, from the table's ``prefix_<name>`` columns
    (``core.data prepare --prefix-features``) when it has them, else computed here with RDKit
    (``core.feedback.prefix_table``, ~7 ms a molecule); then, for a model that reads the
    derivation, its codes (``core.derivation``, ~3 µs a symbol)."""
    import selfies as sf
    from tqdm import tqdm

    from core.derivation import derivation_codes
    from core.feedback import prefix_table

    names = bundle.properties
    columns = [prefix_column(n) for n in names]
    if all(c in rows for c in columns):
        tables = [np.stack(c, axis=1) for c in zip(*(rows[c] for c in columns), strict=True)]
    else:
        selfies = rows["selfies"].tolist()
        tables = [
            prefix_table(s, names)
            for s in tqdm(selfies, desc="prefix properties", unit="mol", file=sys.stderr)
        ]
    if not bundle.args.derivation:
        return [bundle.normalise_properties(t) for t in tables]
    codes = [derivation_codes(list(sf.split_selfies(s))) for s in rows["selfies"]]
    return [bundle.position_reads(t, c) for t, c in zip(tables, codes, strict=True)]


def encode_rows(rows: pd.DataFrame, bundle: Bundle) -> EncodedSet:
    """``rows`` encoded for ``bundle``'s model: token ids, normalised properties and, for a
    closed-loop model, the properties of every prefix; molecules longer than the model's
    ``max_len`` are left out."""
    args = bundle.args
    scaled = np.stack([bundle.scales[n].normalise(rows[n].to_numpy()) for n in args.properties], 1)
    prefix = prefix_arrays(rows, bundle) if args.feedback else None
    return encode_set(rows["selfies"].tolist(), scaled, bundle.tokenizer, args.max_len, prefix)


def encode_splits(
    train_rows: pd.DataFrame, val_rows: pd.DataFrame, bundle: Bundle, batch_size: int,
    verbose: bool = True,
) -> tuple[EncodedSet, EncodedSet]:  # fmt: skip
    """Both splits encoded (``encode_rows``), with a note (``verbose``) on the training
    molecules too long for the model; DataError when fewer than a batch are left."""
    train_set, val_set = encode_rows(train_rows, bundle), encode_rows(val_rows, bundle)
    too_long = len(train_rows) - len(train_set)
    if too_long and verbose:
        print(
            f"note: {too_long:,} training molecules are longer than the model's "
            f"{bundle.args.max_len} tokens; left out",
            file=sys.stderr,
        )
    if len(train_set) < batch_size:
        raise DataError(f"only {len(train_set)} training molecules for a batch of {batch_size}")
    return train_set, val_set


def data_identity(path: Path, n_train: int, n_val: int) -> dict:
    """What a checkpoint records of its training data: path, name, kind, sizes and whether
    its SELFIES are open-ended (``core.ordering``)."""
    identity = {"path": str(path), "n_train": n_train, "n_val": n_val}
    try:
        info = dataset_info(path)
    except DataError:
        return identity
    identity |= {"name": info.name, "kind": info.kind, "n_molecules": info.n_rows}
    return identity | ({"open_end": True} if info.source.get("open_end") else {})
