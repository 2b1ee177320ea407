"""The MOSES benchmark metrics (Polykovskiy et al. 2020), as the ``molsets`` package defines them.

IntDiv1/IntDiv2, SNN/Test, Frag/Test, Scaf/Test, Filters and, when the optional ``fcd_torch``
is installed, FCD/Test. The definitions follow ``moses/metrics`` of molsets 0.3.1, which is
read for its data files (the MCF and PAINS SMARTS, the test set) but never imported: that
would pull in torch. As in molsets, invalid molecules are dropped before any metric, and
duplicates among the valid ones are kept.

- Fingerprints: Morgan, radius 2, 1024 bits.
- IntDiv_p = 1 − mean_i (mean_j T(i, j)^p)^(1/p), i and j over all valid molecules (a
  molecule is paired with itself too, so copies of one molecule have IntDiv 0).
- SNN: mean over generated molecules of the largest Tanimoto similarity to the reference.
- Frag / Scaf: cosine similarity of the count vectors of BRICS fragments / Bemis–Murcko
  scaffolds; only scaffolds with at least two rings are counted.
- Filters: share of molecules with no ring of 8 atoms or more, no charged atom (molsets
  allows no exception), only C, N, S, O, F, Cl, Br, H, and no MCF or PAINS match.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold
from tqdm import tqdm

from core.chem import Mol, mol_from_smiles, rdkit_quiet

FINGERPRINT_RADIUS = 2
FINGERPRINT_BITS = 1024
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MACROCYCLE_SIZE = 8  # molsets rejects any ring of this many atoms or more
MIN_SCAFFOLD_RINGS = 2  # molsets leaves scaffolds with fewer rings out of Scaf
MACROCYCLE = "macrocycle (ring ≥ 8)"
CHARGE = "charge"
INVALID = "invalid"
ROUND_TRIP = "SMILES round trip"
PROGRESS_FROM = 10_000  # reference sets at least this large show a progress bar
METRICS = ("FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test", "IntDiv1", "IntDiv2", "Filters")
LOWER_IS_BETTER = frozenset({"FCD/Test"})

# The Test columns of the metrics table in the MOSES repository's README, which cites
# Polykovskiy et al. 2020 (Front. Pharmacol. 11:565644); it gives each value ± its spread over
# several runs (kept: the value), and its "IntDiv" is IntDiv1:
# https://github.com/molecularsets/moses/blob/ffbc4dbad1afddc38b0bcd0a68801b56524c3ca9/README.md
BASELINES_SOURCE = (
    "MOSES benchmark (Polykovskiy et al. 2020), test set, as published in the metrics table "
    "of github.com/molecularsets/moses (README)"
)
PUBLISHED_BASELINES: dict[str, dict[str, float]] = {
    "Train (data)": {
        "FCD/Test": 0.008, "SNN/Test": 0.6419, "Frag/Test": 1.0, "Scaf/Test": 0.9907,
        "IntDiv1": 0.8567, "IntDiv2": 0.8508, "Filters": 1.0,
    },
    "CharRNN": {
        "FCD/Test": 0.0732, "SNN/Test": 0.6015, "Frag/Test": 0.9998, "Scaf/Test": 0.9242,
        "IntDiv1": 0.8562, "IntDiv2": 0.8503, "Filters": 0.9943,
    },
    "VAE": {
        "FCD/Test": 0.099, "SNN/Test": 0.6257, "Frag/Test": 0.9994, "Scaf/Test": 0.9386,
        "IntDiv1": 0.8558, "IntDiv2": 0.8498, "Filters": 0.997,
    },
    "JTN-VAE": {
        "FCD/Test": 0.3954, "SNN/Test": 0.5477, "Frag/Test": 0.9965, "Scaf/Test": 0.8964,
        "IntDiv1": 0.8551, "IntDiv2": 0.8493, "Filters": 0.976,
    },
}  # fmt: skip


def metrics_dir() -> Path:
    """Folder of molsets' metric data files, found without importing ``moses``.

    >>> sorted(p.name for p in metrics_dir().glob("*.csv"))
    ['mcf.csv', 'wehi_pains.csv']
    """
    from core.data import DataError, moses_dir

    folder = moses_dir().parents[1] / "metrics"
    if not folder.is_dir():
        raise DataError(f"the molsets package has no metrics folder {folder}; reinstall molsets")
    return folder


def _alert_name(name: str) -> str:
    """``MCF1`` stays; a PAINS ``<regId=ene_rhod_A(235)>`` becomes ``PAINS ene_rhod_A(235)``."""
    name = name.strip()
    return f"PAINS {name[7:-1]}" if name.startswith("<regId=") else name


@functools.cache
def structural_alerts() -> tuple[tuple[str, Mol], ...]:
    """The MCF and PAINS SMARTS of molsets as ``(name, pattern)``, MCF first.

    >>> alerts = structural_alerts()
    >>> len(alerts), alerts[0][0], alerts[-1][0].startswith("PAINS ")
    (502, 'MCF1', True)
    """
    from core.data import DataError

    folder = metrics_dir()
    mcf = pd.read_csv(folder / "mcf.csv")
    pains = pd.read_csv(folder / "wehi_pains.csv", names=["smarts", "names"])
    table = pd.concat([mcf[["names", "smarts"]], pains[["names", "smarts"]]])
    out = []
    for name, smarts in zip(table.names, table.smarts, strict=True):
        pattern = Chem.MolFromSmarts(str(smarts).strip())
        if pattern is None:
            raise DataError(f"alert {name} in {folder} is not valid SMARTS: {smarts}")
        out.append((_alert_name(str(name)), pattern))
    return tuple(out)


def _as_mol(mol: Mol | str | None) -> Mol | None:
    return mol_from_smiles(mol) if isinstance(mol, str) else mol


def filter_reasons(mol: Mol | str | None) -> list[str]:
    """Why a molecule fails the MOSES filters: ``[]`` when it passes.

    >>> filter_reasons("CC(=O)Nc1ccc(O)cc1"), filter_reasons("C[N+](C)(C)C")
    ([], ['charge'])
    >>> filter_reasons("C1CCCCCCC1"), filter_reasons("CCP(CC)CC"), filter_reasons("C1CC")
    (['macrocycle (ring ≥ 8)'], ['atom P'], ['invalid'])
    """
    mol = _as_mol(mol)
    if mol is None:
        return [INVALID]
    reasons = []
    if any(len(ring) >= MACROCYCLE_SIZE for ring in mol.GetRingInfo().AtomRings()):
        reasons.append(MACROCYCLE)
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        reasons.append(CHARGE)
    symbols = {atom.GetSymbol() for atom in mol.GetAtoms()}
    reasons += [f"atom {symbol}" for symbol in sorted(symbols - ALLOWED_ATOMS)]
    with_h = Chem.AddHs(mol)  # the PAINS SMARTS spell out hydrogens
    reasons += [name for name, pattern in structural_alerts() if with_h.HasSubstructMatch(pattern)]
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    with rdkit_quiet():
        if not smiles or Chem.MolFromSmiles(smiles) is None:
            reasons.append(ROUND_TRIP)
    return reasons


def passes_filters(mol: Mol | str | None) -> bool:
    """Whether a molecule passes every MOSES filter (an invalid one does not).

    >>> passes_filters("CC(=O)Nc1ccc(O)cc1"), passes_filters("OB(O)c1ccccc1")
    (True, False)
    """
    return not filter_reasons(mol)


def filter_failures(smiles: Sequence[str]) -> dict[str, list[str]]:
    """Each distinct valid SMILES that fails the filters -> its reasons (invalid ones are left
    out: validity is a metric of its own).

    >>> filter_failures(["CCO", "C[N+](C)(C)C", "not a molecule", "C[N+](C)(C)C"])
    {'C[N+](C)(C)C': ['charge']}
    """
    out = {}
    for s in dict.fromkeys(smiles):
        mol = mol_from_smiles(s)
        reasons = filter_reasons(mol) if mol is not None else []
        if reasons:
            out[s] = reasons
    return out


def fraction_passes_filters(smiles: Sequence[str | Mol]) -> float:
    """Filters: the share of valid molecules (duplicates counted) passing every filter.

    >>> fraction_passes_filters(["CCO", "CCO", "CCP", "C1CC"])
    0.6666666666666666
    """
    mols = _valid(smiles)
    return float(np.mean([passes_filters(m) for m in mols])) if mols else math.nan


def _valid(molecules: Sequence[str | Mol]) -> list[Mol]:
    return [m for m in map(_as_mol, molecules) if m is not None]


@functools.cache
def _morgan() -> rdFingerprintGenerator.FingerprintGenerator64:
    return rdFingerprintGenerator.GetMorganGenerator(
        radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_BITS
    )


def fingerprints(mols: Sequence[Mol]) -> list[DataStructs.ExplicitBitVect]:
    """Morgan fingerprints (radius 2, 1024 bits), the ones every MOSES similarity uses.

    >>> fingerprints([Chem.MolFromSmiles("CCO")])[0].GetNumBits()
    1024
    """
    generator = _morgan()
    return [generator.GetFingerprint(m) for m in mols]


def internal_diversity(molecules: Sequence[str | Mol], p: int = 1) -> float:
    """IntDiv_p = 1 − mean_i (mean_j T(i, j)^p)^(1/p) over the valid molecules, self-pairs
    included; NaN when none is valid.

    >>> internal_diversity(["CCO", "CCO"]), internal_diversity(["CCO", "c1ccccc1"])
    (0.0, 0.5)
    >>> round(internal_diversity(["CCO", "c1ccccc1"], p=2), 4)  # 1 - sqrt((1 + 0) / 2)
    0.2929
    """
    fps = fingerprints(_valid(molecules))
    if not fps:
        return math.nan
    per_molecule = [
        np.mean(np.asarray(DataStructs.BulkTanimotoSimilarity(fp, fps)) ** p) ** (1 / p)
        for fp in fps
    ]
    return float(1.0 - np.mean(per_molecule))


def _nearest_similarity(generated: Sequence[Mol], reference_fps: Sequence) -> float:
    if not generated or not reference_fps:
        return math.nan
    best = [
        max(DataStructs.BulkTanimotoSimilarity(fp, reference_fps)) for fp in fingerprints(generated)
    ]
    return float(np.mean(best))


def nearest_neighbour_similarity(
    generated: Sequence[str | Mol], reference: Sequence[str | Mol]
) -> float:
    """SNN: mean over valid generated molecules of their largest Tanimoto similarity to the
    reference molecules.

    >>> nearest_neighbour_similarity(["CCO", "c1ccccc1"], ["c1ccccc1", "CCO", "CCN"])
    1.0
    """
    return _nearest_similarity(_valid(generated), fingerprints(_valid(reference)))


def fragments(mol: Mol) -> list[str]:
    """SMILES of the BRICS fragments of a molecule (bond ends marked as ``[n*]``).

    >>> fragments(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
    ['[1*]C([6*])=O', '[16*]c1ccccc1', '[3*]O[3*]', '[4*]CC']
    """
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def scaffold(mol: Mol) -> str | None:
    """Bemis–Murcko scaffold SMILES; ``None`` when it has fewer than two rings (molsets
    leaves those out of Scaf).

    >>> scaffold(Chem.MolFromSmiles("Cc1ccc(-c2ccccc2)cc1"))
    'c1ccc(-c2ccccc2)cc1'
    >>> scaffold(Chem.MolFromSmiles("Cc1ccccc1")) is None  # one ring only
    True
    """
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    return smiles if smiles and core.GetRingInfo().NumRings() >= MIN_SCAFFOLD_RINGS else None


def fragment_counts(mols: Sequence[Mol]) -> Counter[str]:
    """How often each BRICS fragment occurs in ``mols``.

    >>> fragment_counts([Chem.MolFromSmiles(s) for s in ("CCOCC", "c1ccccc1")])
    Counter({'[4*]CC': 2, '[3*]O[3*]': 1, 'c1ccccc1': 1})
    """
    counts: Counter[str] = Counter()
    for mol in mols:
        counts.update(fragments(mol))
    return counts


def scaffold_counts(mols: Sequence[Mol]) -> Counter[str]:
    """How often each scaffold of two rings or more occurs in ``mols``.

    >>> scaffold_counts([Chem.MolFromSmiles(s) for s in ("c1ccc2ccccc2c1", "CCc1ccccc1")])
    Counter({'c1ccc2ccccc2c1': 1})
    """
    return Counter(s for s in map(scaffold, mols) if s is not None)


def cosine_similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Cosine similarity of two count vectors keyed by name (missing = 0); NaN when either
    is empty.

    >>> round(cosine_similarity({"x": 1}, {"x": 1, "y": 1}), 4), cosine_similarity({}, {"x": 1})
    (0.7071, nan)
    """
    if not a or not b:
        return math.nan
    keys = sorted(a.keys() | b.keys())
    u = np.array([a.get(k, 0) for k in keys], float)
    v = np.array([b.get(k, 0) for k in keys], float)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


@dataclass(frozen=True)
class Reference:
    """A reference set with what every comparison against it needs, computed once."""

    smiles: tuple[str, ...]  # as given (FCD reads them)
    n: int  # valid molecules among them
    fingerprints: tuple  # Morgan fingerprints of the valid molecules
    fragments: Counter  # BRICS fragment counts
    scaffolds: Counter  # scaffold counts (two rings or more)


@functools.lru_cache(maxsize=4)
def reference_statistics(smiles: tuple[str, ...]) -> Reference:
    """Fingerprints, fragment and scaffold counts of a reference set (cached; a set of
    ``PROGRESS_FROM`` molecules or more shows a progress bar on stderr).

    >>> ref = reference_statistics(("CCO", "c1ccc2ccccc2c1", "C1CC"))
    >>> ref.n, len(ref.fingerprints), dict(ref.scaffolds)
    (2, 2, {'c1ccc2ccccc2c1': 1})
    """
    fps, frags, scaffolds = [], Counter(), Counter()
    bar = tqdm(
        smiles, desc="MOSES reference", unit="mol", file=sys.stderr,
        disable=len(smiles) < PROGRESS_FROM,
    )  # fmt: skip
    generator = _morgan()
    for s in bar:
        mol = mol_from_smiles(s)
        if mol is None:
            continue
        fps.append(generator.GetFingerprint(mol))
        frags.update(fragments(mol))
        scaffolds.update(filter(None, [scaffold(mol)]))
    return Reference(tuple(smiles), len(fps), tuple(fps), frags, scaffolds)


@functools.cache
def moses_test_smiles(limit: int | None = None, seed: int = 0) -> tuple[str, ...]:
    """The MOSES test set's SMILES (176,074), or ``limit`` of them drawn at random with
    ``seed``, kept in file order.

    >>> len(moses_test_smiles()), len(moses_test_smiles(100))
    (176074, 100)
    """
    from core.data import read_moses

    smiles = read_moses("test")
    if limit is None or limit >= len(smiles):
        return tuple(smiles)
    if limit < 1:
        raise ValueError(f"limit must be positive or None, got {limit}")
    keep = np.sort(np.random.default_rng(seed).choice(len(smiles), size=limit, replace=False))
    return tuple(smiles[i] for i in keep)


def fcd_available() -> bool:
    """Whether the optional ``fcd_torch`` package (and so FCD/Test) is installed."""
    return importlib.util.find_spec("fcd_torch") is not None


@functools.cache
def _fcd_model():
    from fcd_torch import FCD

    return FCD(device="cpu", n_jobs=1)


@functools.lru_cache(maxsize=2)
def _fcd_reference(smiles: tuple[str, ...]) -> dict:
    return _fcd_model().precalc(list(smiles))


def frechet_chemnet_distance(generated: Sequence[str], reference: Sequence[str]) -> float | None:
    """FCD/Test with ``fcd_torch``; ``None`` when it is not installed or fewer than two
    generated molecules are valid (a covariance needs two).

    >>> frechet_chemnet_distance(["CCO"], ["CCO", "CCN"]) is None
    True
    """
    valid = [s for s in generated if mol_from_smiles(s) is not None]
    if len(valid) < 2 or not fcd_available():
        return None
    return float(_fcd_model()(gen=valid, pref=_fcd_reference(tuple(reference))))


def moses_suite(
    generated_smiles: Sequence[str],
    reference_smiles: Sequence[str] | Reference,
    examples: int = 12,
) -> dict:
    """Every MOSES metric of ``generated_smiles`` against the reference, with the counts
    behind them and, per filter failure reason, its count and up to ``examples`` SMILES.

    >>> suite = moses_suite(["CCO", "CCO", "CCP", "C1CC"], ["CCO", "CCP"])
    >>> suite["n"], suite["n_valid"], suite["n_unique"], suite["valid"], suite["SNN/Test"]
    (4, 3, 2, 0.75, 1.0)
    >>> round(suite["Filters"], 4), suite["filter_failures"], suite["filter_examples"]
    (0.6667, {'atom P': 1}, {'atom P': ['CCP']})
    """
    ref = (
        reference_smiles
        if isinstance(reference_smiles, Reference)
        else reference_statistics(tuple(reference_smiles))
    )
    mols, canonical = [], []
    for s in generated_smiles:
        mol = mol_from_smiles(s)
        if mol is not None:
            mols.append(mol)
            canonical.append(Chem.MolToSmiles(mol))
    reasons: dict[str, list[str]] = {}  # once per distinct molecule
    for s, mol in zip(canonical, mols, strict=True):
        if s not in reasons:
            reasons[s] = filter_reasons(mol)
    failures: Counter[str] = Counter()
    shown: dict[str, list[str]] = {}
    for s in canonical:
        for reason in reasons[s]:
            failures[reason] += 1
            if len(shown.setdefault(reason, [])) < examples and s not in shown[reason]:
                shown[reason].append(s)
    n = len(generated_smiles)
    return {
        "n": n,
        "n_valid": len(mols),
        "n_unique": len(set(canonical)),
        "n_reference": ref.n,
        "valid": len(mols) / n if n else math.nan,
        "FCD/Test": frechet_chemnet_distance(canonical, ref.smiles),
        "SNN/Test": _nearest_similarity(mols, ref.fingerprints),
        "Frag/Test": cosine_similarity(ref.fragments, fragment_counts(mols)),
        "Scaf/Test": cosine_similarity(ref.scaffolds, scaffold_counts(mols)),
        "IntDiv1": internal_diversity(mols, p=1),
        "IntDiv2": internal_diversity(mols, p=2),
        "Filters": float(np.mean([not reasons[s] for s in canonical])) if mols else math.nan,
        "filter_failures": dict(failures.most_common()),
        "filter_examples": {r: shown[r] for r, _ in failures.most_common()},
    }
