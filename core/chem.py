"""Chemistry helpers: parsing, SELFIES, the descriptor table, drawings and diversity.

``DESCRIPTORS`` is the one table of molecular properties in MolScope: training labels,
scores of generated molecules and every plot use it, so their numbers cannot drift apart.
A SMILES or SELFIES string that does not give a molecule yields ``None`` (or ``""``),
never an exception; RDKit's log noise is kept quiet. Programmer errors raise ``ChemError``.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import selfies as sf
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.Draw import rdMolDraw2D
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.rdBase import BlockLogs

from core.errors import UserError

Mol = Chem.Mol
MAX_SMILES_CHARS = 500  # longer text is no small molecule; RDKit's descriptors grow ~n² with it


class ChemError(UserError, ValueError):
    """A chemistry helper was called wrongly (unknown descriptor, bad atom index, ...)."""


@functools.cache
def _sascorer() -> ModuleType:
    """The SA score module shipped in RDKit's Contrib folder, loaded on first use."""
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    spec = importlib.util.spec_from_file_location("sascorer", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ChemError(f"RDKit Contrib SA_Score not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Mol) -> float:
    """Synthetic accessibility (Ertl & Schuffenhauer 2009): 1 (easy) to 10 (hard).

    >>> round(sa_score(Chem.MolFromSmiles("CCO")), 2)
    1.98
    """
    score = _sascorer().calculateScore(mol)
    return float("nan") if score is None else float(score)


DESCRIPTORS: dict[str, Callable[[Mol], float]] = {
    "logp": Crippen.MolLogP,
    "tpsa": rdMolDescriptors.CalcTPSA,
    "mw": Descriptors.MolWt,
    "qed": QED.qed,
    "sa": sa_score,
    "hbd": Lipinski.NumHDonors,
    "hba": Lipinski.NumHAcceptors,
    "rings": rdMolDescriptors.CalcNumRings,
}

DESCRIPTOR_LABELS: dict[str, str] = {
    "logp": "LogP (Crippen)",
    "tpsa": "TPSA (Å²)",
    "mw": "Molecular weight (Da)",
    "qed": "QED (0–1)",
    "sa": "SA score (1 easy – 10 hard)",
    "hbd": "H-bond donors",
    "hba": "H-bond acceptors",
    "rings": "Rings",
}

DESCRIPTOR_SHORT: dict[str, str] = {  # axis ticks, table headers, condition-token labels
    "logp": "LogP",
    "tpsa": "TPSA",
    "mw": "MW",
    "qed": "QED",
    "sa": "SA",
    "hbd": "HBD",
    "hba": "HBA",
    "rings": "Rings",
}
DESCRIPTOR_UNITS: dict[str, str] = {"tpsa": "Å²", "mw": "Da"}  # the others have none
DESCRIPTOR_STEPS: dict[str, float] = {  # the resolution a value is shown and set at
    "logp": 0.1,
    "tpsa": 1.0,
    "mw": 1.0,
    "qed": 0.01,
    "sa": 0.1,
    "hbd": 1.0,
    "hba": 1.0,
    "rings": 1.0,
}
COUNT_DESCRIPTORS = ("hbd", "hba", "rings")  # whole numbers


@contextmanager
def rdkit_quiet() -> Iterator[None]:
    """Silence RDKit's log messages inside the block; the previous state comes back after.

    >>> with rdkit_quiet():
    ...     Chem.MolFromSmiles("C1CC") is None
    True
    """
    block = BlockLogs()
    try:
        yield
    finally:
        del block


def mol_from_smiles(smiles: str) -> Mol | None:
    """Parse a SMILES string; ``None`` when it is empty, not a string, longer than
    ``MAX_SMILES_CHARS`` or not a molecule.

    >>> mol_from_smiles("c1ccccc1").GetNumAtoms(), mol_from_smiles("C1CC")
    (6, None)
    """
    if not isinstance(smiles, str) or not smiles.strip() or len(smiles) > MAX_SMILES_CHARS:
        return None
    with rdkit_quiet():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES, or ``None`` when the input does not parse.

    >>> canonical_smiles("C(O)C")
    'CCO'
    """
    mol = mol_from_smiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def smiles_to_selfies(smiles: str) -> str | None:
    """SELFIES of the canonical SMILES; ``None`` when RDKit or selfies rejects it.

    >>> smiles_to_selfies("OCC")
    '[C][C][O]'
    """
    canonical = canonical_smiles(smiles)
    if canonical is None:
        return None
    try:
        return sf.encoder(canonical)
    except sf.EncoderError:
        return None


def standardize(
    mol: Mol | None, largest_fragment: bool = True, neutralize: bool = True
) -> Mol | None:
    """The parent molecule a chemist registers: RDKit's ``rdMolStandardize`` cleanup (metals
    disconnected, functional groups normalised, reionised), then with ``largest_fragment``
    the largest organic fragment (salts and solvents go), and with ``neutralize`` charges
    neutralised where a neutral form exists (a quaternary ammonium stays charged).
    ``None`` when there is no molecule or the standardiser fails.

    >>> Chem.MolToSmiles(standardize(Chem.MolFromSmiles("CC(=O)[O-].[Na+].O")))
    'CC(=O)O'
    >>> Chem.MolToSmiles(standardize(Chem.MolFromSmiles("CC(=O)[O-].[Na+]"), neutralize=False))
    'CC(=O)[O-]'
    """
    if mol is None:
        return None
    try:
        with rdkit_quiet():
            mol = rdMolStandardize.Cleanup(mol)
            if largest_fragment:
                mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
            if neutralize:
                mol = rdMolStandardize.Uncharger().uncharge(mol)
    except Exception:  # RDKit raises several types on exotic input; the molecule is rejected
        return None
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def selfies_to_mol(selfies: str) -> Mol | None:
    """Decode a SELFIES string to a molecule; ``None`` when it decodes to nothing.

    >>> selfies_to_mol("[C][C][O]").GetNumAtoms()
    3
    """
    if not isinstance(selfies, str):
        return None
    try:
        smiles = sf.decoder(selfies)
    except sf.DecoderError:
        return None
    return mol_from_smiles(smiles) if smiles else None


def selfies_to_smiles(selfies: str) -> str:
    """Canonical SMILES of the decoded molecule; ``""`` when there is none.

    >>> selfies_to_smiles("[C][C][O]"), selfies_to_smiles("[Xx]")
    ('CCO', '')
    """
    mol = selfies_to_mol(selfies)
    return "" if mol is None else Chem.MolToSmiles(mol)


def describe(mol: Mol, names: Sequence[str] | None = None) -> dict[str, float]:
    """The descriptors ``names`` (all of ``DESCRIPTORS`` by default) of one molecule.

    >>> describe(Chem.MolFromSmiles("CCO"), ["hbd", "rings"])
    {'hbd': 1.0, 'rings': 0.0}
    """
    if mol is None:
        raise ChemError("describe() needs a molecule, got None")
    names = list(DESCRIPTORS) if names is None else list(names)
    unknown = [name for name in names if name not in DESCRIPTORS]
    if unknown:
        raise ChemError(f"unknown descriptor(s) {unknown}; known: {list(DESCRIPTORS)}")
    with rdkit_quiet():
        return {name: float(DESCRIPTORS[name](mol)) for name in names}


def describe_smiles(smiles: str, names: Sequence[str] | None = None) -> dict[str, float] | None:
    """``describe`` for a SMILES string; ``None`` when it does not parse.

    >>> describe_smiles("CCO", ["tpsa"])
    {'tpsa': 20.23}
    """
    mol = mol_from_smiles(smiles)
    return None if mol is None else describe(mol, names)


def _draw(mol: Mol, size: tuple[int, int], highlight: list[int], legend: str) -> bytes:
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    # a fixed scale: a one-atom molecule is not blown up to fill the canvas, so a molecule
    # growing token by token keeps its size (large ones still shrink to fit)
    drawer.drawOptions().fixedBondLength = 28
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, legend=legend, highlightAtoms=highlight)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


@functools.lru_cache(maxsize=16)
def _placeholder_png(size: tuple[int, int], legend: str) -> bytes:
    """The word "invalid" (and the legend) drawn in place of a missing molecule."""
    label = Chem.MolFromSmiles("*")  # one dummy atom whose label is the message
    label.GetAtomWithIdx(0).SetProp("atomLabel", "invalid")
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    drawer.drawOptions().fixedFontSize = 20
    drawer.DrawMolecule(label, legend=legend)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def mol_to_png(
    mol: Mol | str | None,
    size: tuple[int, int] = (300, 220),
    highlight_atoms: Sequence[int] = (),
    legend: str = "",
) -> bytes:
    """PNG drawing of a molecule (or SMILES string); a small "invalid" image for ``None``.

    >>> mol_to_png("c1ccccc1")[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if isinstance(mol, str):
        mol = mol_from_smiles(mol)
    if mol is None or mol.GetNumAtoms() == 0:
        return _placeholder_png(tuple(size), legend)
    highlight = [int(i) for i in highlight_atoms]
    bad = [i for i in highlight if not 0 <= i < mol.GetNumAtoms()]
    if bad:
        raise ChemError(f"highlight atom indices {bad} outside 0..{mol.GetNumAtoms() - 1}")
    with rdkit_quiet():
        return _draw(mol, tuple(size), highlight, legend)


def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI (for ``st.column_config.ImageColumn`` and HTML).

    >>> png_data_uri(b"abc")
    'data:image/png;base64,YWJj'
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def tanimoto_diversity(
    smiles: Sequence[str],
    radius: int = 2,
    n_bits: int = 2048,
    max_pairs: int | None = None,
    seed: int = 0,
) -> float:
    """Internal diversity: 1 - mean Tanimoto similarity over distinct pairs of molecules.

    Morgan fingerprints of the parsable SMILES (others are skipped). When there are more
    than ``max_pairs`` pairs, a random subset of molecules (fixed ``seed``) with at most
    that many pairs is used; the mean over it estimates the full mean without bias.
    Returns NaN with fewer than two parsable molecules.

    >>> tanimoto_diversity(["CCO", "CCO"]), tanimoto_diversity(["CCO", "c1ccccc1"]) > 0.9
    (0.0, True)
    """
    if max_pairs is not None and max_pairs < 1:
        raise ChemError(f"max_pairs must be positive, got {max_pairs}")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    mols = [m for m in (mol_from_smiles(s) for s in smiles) if m is not None]
    n = len(mols)
    if max_pairs is not None and n * (n - 1) // 2 > max_pairs:
        n = max(2, int((1 + (1 + 8 * max_pairs) ** 0.5) / 2))  # largest n with n(n-1)/2 <= max
        keep = np.random.default_rng(seed).choice(len(mols), size=n, replace=False)
        mols = [mols[i] for i in keep]
    if n < 2:
        return float("nan")
    fps = [generator.GetFingerprint(m) for m in mols]
    total = 0.0
    for i in range(n - 1):
        total += sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1 :]))
    return 1.0 - total / (n * (n - 1) / 2)
