"""A user's molecule file read into rows: CSV/TSV (a SMILES column), SMILES lists, SDF.

``read_molecules`` turns a file into numbered SMILES strings (the input row of each) plus
the records it could not read at all; it checks first what a user can get wrong (no file, an
empty, binary or oversized file, an unknown format, no SMILES column) and says so in one
line (``MolFileError``). Nothing here judges the chemistry: ``core.data`` standardises,
encodes and describes each row, and counts every row it rejects by reason.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rdkit import Chem

from core.chem import rdkit_quiet
from core.errors import UserError

MAX_INPUT_BYTES = 200 * 1024 * 1024  # a molecule file larger than this is refused
FORMATS = {  # file suffix -> format
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".smi": "smi",
    ".smiles": "smi",
    ".txt": "smi",
    ".sdf": "sdf",
    ".sd": "sdf",
}
# column names taken as the SMILES column, best first (compared in lower case)
SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles", "smi", "mol_smiles")
MAX_INPUT_CHARS = 200  # of a rejected row's text kept in the report


class MolFileError(UserError, ValueError):
    """A molecule file cannot be read (missing, empty, binary, too big, no SMILES column)."""


@dataclass
class MolFile:
    """The molecules of one file, before any chemistry: one SMILES per readable row."""

    format: str  # "csv", "tsv", "smi" or "sdf"
    rows: list[int]  # input row of each SMILES: file line (CSV, SMILES list) or SDF record
    smiles: list[str]  # as written in the file (CSV, list) or written by RDKit (SDF)
    column: str | None = None  # the SMILES column of a CSV/TSV
    unreadable: list[tuple[int, str, str, str]] = field(default_factory=list)
    # (row, input, reason, detail) of records that give no SMILES at all (SDF)

    @property
    def n_rows(self) -> int:
        """Rows (records) read, readable or not."""
        return len(self.rows) + len(self.unreadable)


def file_format(path: Path | str) -> str:
    """The format a file name says, or MolFileError.

    >>> file_format("actives.SDF"), file_format("x.tsv")
    ('sdf', 'tsv')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise MolFileError(f"{Path(path).name}: unknown file type {suffix!r}; use one of {known}")
    return FORMATS[suffix]


def _encoding(head: bytes) -> str:
    """UTF-16 with a byte-order mark (spreadsheets' "Unicode text"), else UTF-8."""
    return "utf-16" if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"


def check_file(path: Path | str, max_bytes: int = MAX_INPUT_BYTES) -> Path:
    """``path`` once it is an existing, non-empty text file of at most ``max_bytes``.

    >>> check_file("/nonexistent.csv")
    Traceback (most recent call last):
    ...
    core.molfile.MolFileError: no file /nonexistent.csv
    """
    path = Path(path)
    if not path.is_file():
        raise MolFileError(f"no file {path}")
    size = path.stat().st_size
    if size == 0:
        raise MolFileError(f"{path.name} is empty")
    if size > max_bytes:
        raise MolFileError(
            f"{path.name} is {size / 1024**2:.1f} MB; the limit is {max_bytes / 1024**2:.0f} MB"
        )
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if _encoding(head) != "utf-16" and b"\x00" in head:
        raise MolFileError(f"{path.name} looks like a binary file, not a text molecule file")
    return path


def _read_text(path: Path) -> str:
    return decode_text(path.name, path.read_bytes(), what="a text molecule file")


def decode_text(
    name: str,
    data: bytes,
    error: type[Exception] | None = None,
    what: str = "text",
    hint: str = "",
) -> str:
    """The text of an uploaded or read file ``name``: UTF-16 with a byte-order mark, else
    UTF-8; ``error`` (default ``MolFileError``) with one line if it is binary, not text in
    that encoding (``hint`` appended) or blank.

    >>> decode_text("a.smi", "CCO\\n".encode("utf-16"))
    'CCO\\n'
    >>> decode_text("a.smi", b"\\n\\n")
    Traceback (most recent call last):
    ...
    core.molfile.MolFileError: a.smi holds only blank lines
    """
    error = error or MolFileError
    encoding = _encoding(data[:2])
    if encoding != "utf-16" and b"\x00" in data[:65536]:
        raise error(f"{name} looks like a binary file, not {what}")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        kind = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise error(
            f"{name} is not {kind} text (undecodable byte at position {exc.start}){hint}"
        ) from None
    if not text.strip():
        raise error(f"{name} holds only blank lines")
    return text


def smiles_column(columns: list[str], wanted: str | None = None) -> str:
    """The SMILES column among ``columns``: ``wanted`` (any letter case), else a known name,
    else the one column whose name contains "smiles"; MolFileError listing the columns.

    >>> smiles_column(["ID", "Canonical_SMILES", "pIC50"])
    'Canonical_SMILES'
    >>> smiles_column(["ID", "structure_smiles"])
    'structure_smiles'
    """
    by_lower = {str(c).strip().lower(): c for c in columns}
    seen = ", ".join(str(c) for c in columns[:12]) + (" ..." if len(columns) > 12 else "")
    if wanted is not None:
        if wanted.strip().lower() not in by_lower:
            raise MolFileError(f"no column {wanted!r}; the columns are: {seen or 'none'}")
        return by_lower[wanted.strip().lower()]
    for name in SMILES_COLUMNS:
        if name in by_lower:
            return by_lower[name]
    containing = [c for lower, c in by_lower.items() if "smiles" in lower]
    if len(containing) == 1:
        return containing[0]
    raise MolFileError(
        f"no 'smiles' column (columns found: {seen or 'none'}); say which one holds SMILES "
        "(--smiles-column)"
    )


def text_table(
    name: str, text: str, fmt: str = "csv", error: type[Exception] | None = None
) -> pd.DataFrame:
    """The cells (all strings) of a CSV or TSV text; a CSV's delimiter (``,;\\t|``) is
    sniffed. ``error`` (default ``MolFileError``) with one line if it cannot be read.

    >>> text_table("a.csv", "smiles;name\\nCCO;ethanol\\n").to_dict("records")
    [{'smiles': 'CCO', 'name': 'ethanol'}]
    """
    error = error or MolFileError
    delimiter = "\t" if fmt == "tsv" else ","
    if fmt != "tsv":
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            pass  # one column, or nothing to tell delimiters apart
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{name} cannot be read as {fmt.upper()}: {first}") from None


def _read_table(path: Path, fmt: str, wanted: str | None) -> MolFile:
    frame = text_table(path.name, _read_text(path), fmt)
    column = smiles_column([str(c) for c in frame.columns], wanted)
    cells = frame[column].astype(str).tolist()
    return MolFile(fmt, [i + 2 for i in range(len(cells))], cells, column)  # line 1: header


def _read_smi(path: Path) -> MolFile:
    rows, smiles = [], []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not rows and fields[0].lower() == "smiles":  # a header line
            continue
        rows.append(number)
        smiles.append(fields[0])
    return MolFile("smi", rows, smiles)


def _read_sdf(path: Path) -> MolFile:
    """Every record's structure as SMILES; a record RDKit cannot read or sanitise is kept
    as unreadable with RDKit's reason."""
    out = MolFile("sdf", [], [])
    with open(path, "rb") as fh, rdkit_quiet():
        supplier = Chem.ForwardSDMolSupplier(fh, sanitize=False, removeHs=False)
        for record, mol in enumerate(supplier, start=1):
            if mol is None:
                out.unreadable.append((record, "", "unreadable SDF record", ""))
                continue
            title = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
            try:
                Chem.SanitizeMol(mol)
                smiles = Chem.MolToSmiles(mol)
            except Exception as exc:  # RDKit raises several types; the record is rejected
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.unreadable.append(
                    (record, title[:MAX_INPUT_CHARS], "RDKit cannot sanitise", detail)
                )
                continue
            out.rows.append(record)
            out.smiles.append(smiles)
    return out


def read_molecules(
    path: Path | str, smiles_column: str | None = None, max_bytes: int = MAX_INPUT_BYTES
) -> MolFile:
    """The molecules of a CSV/TSV (SMILES column found by name unless ``smiles_column``
    names it), a SMILES list (``.smi``/``.txt``: the first field of each line) or an SDF.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.csv")
    >>> _ = open(path, "w").write("ID,SMILES\\n1,CCO\\n2,c1ccccc1\\n")
    >>> m = read_molecules(path)
    >>> m.column, m.rows, m.smiles
    ('SMILES', [2, 3], ['CCO', 'c1ccccc1'])
    """
    path = check_file(path, max_bytes)
    fmt = file_format(path)
    if smiles_column is not None and fmt not in ("csv", "tsv"):
        raise MolFileError(f"--smiles-column is for CSV/TSV files, not {fmt.upper()}")
    if fmt == "sdf":
        found = _read_sdf(path)
    elif fmt == "smi":
        found = _read_smi(path)
    else:
        found = _read_table(path, fmt, smiles_column)
    if found.n_rows == 0:
        raise MolFileError(f"{path.name} has no molecules (no data rows or records)")
    return found
