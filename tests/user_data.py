"""Small molecule files written by the tests: a user's CSV of a few hundred molecules with
salts, charges, duplicates and invalid rows, and the same molecules as SMILES list / SDF."""

from __future__ import annotations

import csv
from pathlib import Path

from rdkit import Chem

from core.data import load_dataset

# rows a chemist's file really has, with what preparing them must do
SALTED = [
    ("CC(=O)[O-].[Na+]", "CC(=O)O"),  # salt: the counter-ion goes, the acid is neutralised
    ("c1ccncc1.Cl", "c1ccncc1"),  # hydrochloride
    ("CCN.O.O", "CCN"),  # hydrate
    ("C[NH3+].[Cl-]", "CN"),  # charged amine salt
]
INVALID = ["", "C1CC", "not-a-molecule", "C(C)(C)(C)(C)C"]  # empty, unclosed ring, text, valence
# symbols that the MOSES-like molecules above never use: stereo centres, Si, Se
NEW_SYMBOLS = [
    "C[C@H](N)C(=O)O",
    "C[C@@H](O)c1ccccc1",
    "C[Si](C)(C)CCO",
    "c1cc[se]c1",
    "CC[Si](C)C",
]


def moses_smiles(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct molecules of the committed MOSES subset."""
    return load_dataset()["smiles"].iloc[offset : offset + n].tolist()


def write_csv(path: Path, n: int = 300) -> dict:
    """A CSV (``ID,Canonical_SMILES,pIC50``) of ``n`` MOSES molecules, the salted forms, two
    duplicates (one written differently) and the invalid rows; returns what to expect."""
    good = moses_smiles(n)
    rows = [*good, *(s for s, _ in SALTED), good[0], Chem.MolToSmiles(
        Chem.MolFromSmiles(good[1]), doRandom=True
    ), *INVALID]  # fmt: skip
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ID", "Canonical_SMILES", "pIC50"])
        for i, smiles in enumerate(rows):
            writer.writerow([f"mol-{i}", smiles, f"{5 + (i % 7) / 3:.2f}"])
    return {
        "n_rows": len(rows),
        "n_ok": n + len(SALTED),
        "duplicate": 2,
        "invalid": len(INVALID),
        "standardised": [parent for _, parent in SALTED],
    }


def write_new_symbols_smi(path: Path, n: int = 80) -> list[str]:
    """A SMILES list of ``n`` MOSES molecules and the molecules with new symbols."""
    smiles = [*moses_smiles(n, offset=1000), *NEW_SYMBOLS]
    path.write_text("smiles name\n" + "".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    return smiles


def write_sdf(path: Path, smiles: list[str], broken: bool = True) -> None:
    """An SDF of ``smiles`` (titles ``mol-<i>``); with ``broken``, a record RDKit cannot
    sanitise (a pentavalent carbon) comes second."""
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        mol.SetProp("_Name", f"mol-{i}")
        writer.write(mol)
    writer.close()
    if broken:
        first, rest = path.read_text().split("$$$$\n", 1)
        path.write_text(first + "$$$$\n" + _pentavalent_block() + "$$$$\n" + rest)


def _pentavalent_block() -> str:
    """A mol block of CH3-C(F)(F)(F)(F): a carbon with five bonds."""
    atoms = ["C", "C", "F", "F", "F", "F"]
    bonds = [(1, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    counts = f"{len(atoms):3d}{len(bonds):3d}  0  0  0  0  0  0  0  0999 V2000"
    lines = ["broken-record", "  test", "", counts]
    lines += [
        f"    0.0000    0.0000    0.0000 {a:<3} 0  0  0  0  0  0  0  0  0  0  0  0" for a in atoms
    ]
    lines += [f"{a:3d}{b:3d}  1  0" for a, b in bonds]
    return "\n".join(lines) + "\nM  END\n"
