"""SELFIES written so that the model, not the grammar, ends each molecule.

A SELFIES derivation stops by itself once the main chain's last atom has no bond left: a
canonical SMILES that ends on ``=O``, ``F`` or a ring closure gives a SELFIES whose last
symbol ends the molecule (about a third of MOSES). A closed-loop decoder trained on those
learns to end molecules with such a symbol, chosen before it can read the gap the symbol
leaves, and those molecules miss their targets far more often than the ones it ends with
``[EOS]`` at a small gap (``bench.dead_ends``). Written from another root atom, almost every
such molecule (98 % of a MOSES sample) has a main chain that stays open after its last
symbol, so the decoder learns to end with ``[EOS]`` where it reads the gap.

``open_end_selfies`` keeps RDKit's canonical traversal and only moves its root: the
canonical SMILES when it is already open-ended, otherwise the SMILES rooted at the
lowest-ranked atom that gives an open end and decodes back to the same molecule.
"""

from __future__ import annotations

import selfies as sf
from rdkit import Chem
from rdkit.Chem.rdchem import Mol

from core.chem import selfies_to_smiles
from core.derivation import derive


def ends_itself(selfies: str) -> bool:
    """Whether the derivation of ``selfies`` has ended after its last symbol (no symbol
    could extend the molecule).

    >>> ends_itself("[C][C][=O]"), ends_itself("[O][=C][C]")
    (True, False)
    """
    return derive(list(sf.split_selfies(selfies)))[-1].finished


def open_end_selfies(mol: Mol, canonical: str, selfies: str, max_roots: int = 64) -> str:
    """A SELFIES of ``mol`` whose derivation is still open after its last symbol, or
    ``selfies`` (the canonical one) when it already is or no root up to ``max_roots`` gives
    one. Every returned string decodes to ``canonical``.

    >>> mol = Chem.MolFromSmiles("CC=O")
    >>> open_end_selfies(mol, "CC=O", sf.encoder("CC=O"))
    '[O][=C][C]'
    """
    if not ends_itself(selfies):
        return selfies
    ranks = list(Chem.CanonicalRankAtoms(mol))
    roots = sorted(range(mol.GetNumAtoms()), key=ranks.__getitem__)
    for root in roots[:max_roots]:
        other = sf.encoder(Chem.MolToSmiles(mol, rootedAtAtom=root))
        if other and not ends_itself(other) and selfies_to_smiles(other) == canonical:
            return other
    return selfies


def as_trained(meta: dict, selfies: str) -> str:
    """``selfies`` (canonical) written the way a checkpoint's training data wrote molecules
    (``meta``: its config's ``meta``): open-ended for a model trained on ``prepare --open-end``.

    >>> as_trained({"data": {"open_end": True}}, "[C][C][=O]"), as_trained({}, "[C][C][=O]")
    ('[O][=C][C]', '[C][C][=O]')
    """
    if not (meta.get("data") or {}).get("open_end") or not ends_itself(selfies):
        return selfies
    canonical = selfies_to_smiles(selfies)
    return open_end_selfies(Chem.MolFromSmiles(canonical), canonical, selfies)
