"""Looking inside the model: attention maps, the causal-mask leak check, partial molecules
and latent interpolation. Everything returns plain numpy/Python (safe to keep in a UI's state).

The decoder reads ``[conditions..., z, BOS, symbols...]``; the encoder reads
``[conditions..., symbols..., EOS]``. Labels follow those orders so a heatmap axis can show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
import selfies as sf
from rdkit import Chem

from core.checkpoint import Bundle
from core.chem import DESCRIPTOR_SHORT, describe, mol_from_smiles, smiles_to_selfies
from core.closed_loop import prefix_inputs
from core.errors import UserError
from core.generate import condition_arrays, generate_step, make_sampler
from core.ordering import as_trained
from core.tokenizer import SPECIALS, TokenizerError

PROPERTY_NAMES = DESCRIPTOR_SHORT  # short labels for axis ticks and condition tokens
PARTIAL_PROPERTIES = ("logp", "tpsa")  # descriptors tracked while a molecule grows
MAX_INTERPOLATION_STEPS = 50


class InspectError(UserError, ValueError):
    """A molecule the model cannot read (unknown symbol, too long, empty) or a bad argument."""


@dataclass
class AttentionMaps:
    """Attention weights of one molecule under teacher forcing."""

    decoder: list[np.ndarray]  # per layer (H, S, S): row = query position, column = key
    encoder: list[np.ndarray]  # per layer (H, Se, Se)
    decoder_labels: list[str]  # S labels: conditions, "z", "[BOS]", SELFIES symbols
    encoder_labels: list[str]  # Se labels: conditions, SELFIES symbols, "[EOS]"
    causal: np.ndarray  # (S, S) bool: True where the row may attend to the column
    n_prefix: int  # decoder positions before [BOS] (one per condition, one for z)
    z: np.ndarray  # (latent_dim,) the latent code the decoder was given


@dataclass
class LeakReport:
    """How the decoder's outputs change when one input symbol is replaced."""

    position: int  # index of the replaced SELFIES symbol
    original: str  # the symbol that was there
    replacement: str  # the symbol put in its place
    changed_row: int  # decoder position that reads the replaced symbol
    row_delta: np.ndarray  # (S,) max |Δ logit| of each decoder position (both attention paths)
    max_before: float  # max |Δ logit| over positions < changed_row (0 if the mask holds)
    max_after: float  # max |Δ logit| over positions >= changed_row
    weights_max_before: float  # max |Δ attention weight| over rows < changed_row
    labels: list[str]  # decoder position labels (the original molecule's)


def condition_labels(bundle: Bundle, targets: dict[str, float | None]) -> list[str]:
    """Tick labels of the condition tokens, e.g. ``["LogP=2.5", "TPSA (free)"]``.

    >>> condition_labels(bundle, {"logp": 2.5})  # doctest: +SKIP
    ['LogP=2.5', 'TPSA (free)']
    """
    labels = []
    for name in bundle.properties:
        short = PROPERTY_NAMES.get(name, name)
        value = targets.get(name)
        labels.append(f"{short} (free)" if value is None else f"{short}={round(value, 2):g}")
    return labels


def molecule_ids(bundle: Bundle, selfies: str) -> list[int]:
    """Token ids of ``selfies`` with [EOS]; InspectError if the model cannot read it.

    >>> molecule_ids(bundle, "[C][O]")  # doctest: +SKIP
    [4, 11, 2]
    """
    try:
        ids = bundle.tokenizer.encode(selfies, eos=True, strict=True)
    except TokenizerError as exc:
        raise InspectError(str(exc)) from exc
    if len(ids) < 2:
        raise InspectError("the molecule has no SELFIES symbols")
    if len(ids) > bundle.args.max_len:
        raise InspectError(
            f"the molecule has {len(ids) - 1} symbols; the model reads at most "
            f"{bundle.args.max_len - 1}"
        )
    return ids


def _encode(bundle: Bundle, ids: mx.array, props: mx.array, present: mx.array, weights: bool):
    valid = mx.ones(ids.shape, dtype=mx.bool_)
    return bundle.model.encoder(ids, valid, props, present, return_weights=weights)


def attention_maps(
    bundle: Bundle,
    selfies: str,
    targets: dict[str, float | None],
    z: np.ndarray | None = None,
) -> AttentionMaps:
    """Teacher-forced pass over one molecule, returning every layer's attention weights.

    ``targets`` (real units, None = unconditioned) feed the condition tokens of both encoder
    and decoder; ``z`` defaults to the encoder's ``mu`` for the molecule.

    >>> maps = attention_maps(bundle, "[C][C][O]", {"logp": 0.5, "tpsa": 20.0})  # doctest: +SKIP
    >>> maps.decoder_labels, maps.decoder[0].shape  # doctest: +SKIP
    (['LogP=0.5', 'TPSA=20', 'z', '[BOS]', '[C]', '[C]', '[O]'], (4, 7, 7))
    """
    model, tok = bundle.model, bundle.tokenizer
    ids_list = molecule_ids(bundle, selfies)
    ids = mx.array([ids_list], dtype=mx.int32)  # (1, T)
    props, present = condition_arrays(bundle, targets, 1)
    mu, _, enc_weights = _encode(bundle, ids, props, present, weights=True)
    given = None if z is None else np.asarray(z, dtype=np.float32).reshape(1, -1)  # (1, Z)
    z_used = mu if given is None else mx.array(given)
    reads = prefix_inputs(bundle, tok.decode(ids_list))
    x = model.decoder_inputs(z_used, props, present, ids[:, :-1], tok.bos_id, reads)
    _, dec_weights = model.decoder(x, return_weights=True)
    mx.eval(z_used, *enc_weights, *dec_weights)

    symbols = [tok.tokens[i] for i in ids_list[:-1]]
    conditions = condition_labels(bundle, targets)
    dec_labels = conditions + ["z", "[BOS]"] + symbols
    S = len(dec_labels)
    return AttentionMaps(
        decoder=[np.array(w[0]) for w in dec_weights],
        encoder=[np.array(w[0]) for w in enc_weights],
        decoder_labels=dec_labels,
        encoder_labels=conditions + symbols + ["[EOS]"],
        causal=np.tril(np.ones((S, S), dtype=bool)),
        n_prefix=bundle.args.n_prefix,
        z=np.array(z_used[0]),
    )


def condition_share(maps: AttentionMaps, positions: list[int] | None = None) -> np.ndarray:
    """Mean attention mass (layers, heads) that token rows ([BOS] onward) put on the prefix.

    ``positions`` picks prefix columns (default: all conditions and z); a share near 0 in
    every head means the decoder ignores them.

    >>> condition_share(maps).shape  # doctest: +SKIP
    (4, 4)
    """
    columns = list(range(maps.n_prefix)) if positions is None else list(positions)
    rows = slice(maps.n_prefix, None)
    return np.stack([w[:, rows][:, :, columns].sum(-1).mean(-1) for w in maps.decoder])


def uniform_share(maps: AttentionMaps, positions: list[int] | None = None) -> float:
    """``condition_share`` of a head that spreads its attention evenly over what it may see:
    the baseline to compare real shares with (row i sees i + 1 positions).

    >>> uniform_share(maps)  # doctest: +SKIP
    0.31
    """
    n_columns = maps.n_prefix if positions is None else len(list(positions))
    rows = np.arange(maps.n_prefix, len(maps.decoder_labels))
    return float(np.mean(n_columns / (rows + 1)))


def replacement_symbol(bundle: Bundle, symbol: str) -> str:
    """A vocabulary symbol different from ``symbol`` (the most common one that differs)."""
    symbols = [t for t in bundle.tokenizer.tokens[len(SPECIALS) :] if t != symbol]
    if not symbols:
        raise InspectError("the vocabulary has no other symbol to swap in")
    return symbols[0]


def leak_check(
    bundle: Bundle, selfies: str, position: int, targets: dict[str, float | None]
) -> LeakReport:
    """Replace the symbol at ``position`` and measure how every decoder position changes.

    Under a causal mask applied before the softmax, positions before the replaced symbol
    change by exactly 0; the replaced position and later ones change. Logits are compared on
    both attention paths (fast, as in training, and inspection), weights on the inspection
    path. Both runs use the same z (the original molecule's ``mu``).

    >>> report = leak_check(bundle, "[C][C][O][N]", 2, {"logp": 1.0})  # doctest: +SKIP
    >>> report.max_before, report.max_after > 0  # doctest: +SKIP
    (0.0, True)
    """
    model, tok = bundle.model, bundle.tokenizer
    ids_list = molecule_ids(bundle, selfies)
    n_symbols = len(ids_list) - 1
    if not 0 <= position < n_symbols:
        raise InspectError(f"position must be in 0..{n_symbols - 1}, got {position}")
    original = tok.tokens[ids_list[position]]
    replacement = replacement_symbol(bundle, original)
    changed = list(ids_list)
    changed[position] = tok.tokens.index(replacement)

    props, present = condition_arrays(bundle, targets, 1)
    mu, _, _ = _encode(bundle, mx.array([ids_list], dtype=mx.int32), props, present, False)
    # one sequence per call, so both runs go through identical kernels row for row
    runs = []
    for row_ids in (ids_list, changed):
        reads = prefix_inputs(bundle, tok.decode(row_ids))
        x = model.decoder_inputs(
            mu, props, present, mx.array([row_ids[:-1]], dtype=mx.int32), tok.bos_id, reads
        )
        fast, _ = model.decoder(x)
        slow, weights = model.decoder(x, return_weights=True)
        runs.append((fast[0], slow[0], [w[0] for w in weights]))  # (S, V) x2, (H, S, S)/layer
    (fast_a, slow_a, weights_a), (fast_b, slow_b, weights_b) = runs
    row_delta = mx.maximum(
        mx.abs(fast_a - fast_b).max(axis=-1), mx.abs(slow_a - slow_b).max(axis=-1)
    )  # (S,)
    weight_delta = [
        mx.abs(a - b).max(axis=(0, 2)) for a, b in zip(weights_a, weights_b, strict=True)
    ]  # per layer (S,)
    mx.eval(row_delta, *weight_delta)

    row = bundle.args.n_prefix + 1 + position
    rows = np.array(row_delta)
    w_rows = np.max(np.stack([np.array(w) for w in weight_delta]), axis=0)
    labels = condition_labels(bundle, targets) + ["z", "[BOS]"]
    labels += [tok.tokens[i] for i in ids_list[:-1]]
    return LeakReport(
        position=position,
        original=original,
        replacement=replacement,
        changed_row=row,
        row_delta=rows,
        max_before=float(rows[:row].max()),
        max_after=float(rows[row:].max()),
        weights_max_before=float(w_rows[:row].max()),
        labels=labels,
    )


def _is_atom_token(token: str) -> bool:
    return token[:1].isalpha() or token.startswith("[")


def partial_properties(
    selfies_prefix: str, names: Sequence[str] = PARTIAL_PROPERTIES
) -> dict | None:
    """The descriptors ``names`` (LogP and TPSA by default) of the molecule a SELFIES prefix
    decodes to, and its newest atom.

    ``smiles`` keeps the decoder's atom order, so ``newest_atom`` (the atom made by the
    latest atom-making symbol) indexes the molecule parsed from it. None when the prefix
    decodes to nothing (empty, or only branch/ring symbols so far).

    >>> p = partial_properties("[C][C][O]")
    >>> p["smiles"], p["newest_atom"], round(p["tpsa"], 2)
    ('CCO', 2, 20.23)
    >>> partial_properties("[C][C][O]", ["hbd"])["hbd"]
    1.0
    """
    try:
        smiles, attribution = sf.decoder(selfies_prefix, attribute=True)
    except sf.DecoderError:
        return None
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None
    made_by = [
        max(a.index for a in item.attribution)
        for item in attribution
        if _is_atom_token(item.token) and item.attribution
    ]
    n_atoms = mol.GetNumAtoms()
    newest = int(np.argmax(made_by)) if len(made_by) == n_atoms else n_atoms - 1
    return {
        "smiles": smiles,
        "n_atoms": n_atoms,
        "newest_atom": newest,
        **describe(mol, names),
    }


def readable_selfies(bundle: Bundle, smiles: str) -> tuple[str, bool]:
    """SELFIES of ``smiles`` that the model can read, and whether stereochemistry was dropped
    to get there (the training data may have none). InspectError when it cannot be read.

    >>> readable_selfies(bundle, "C[C@H](N)O")  # doctest: +SKIP
    ('[C][C][Branch1][C][N][O]', True)
    """
    mol = mol_from_smiles(smiles)
    selfies = smiles_to_selfies(smiles)
    if mol is None or selfies is None:
        raise InspectError(f"not a valid SMILES: {smiles[:60]!r}")
    selfies = as_trained(bundle.meta, selfies)
    try:
        molecule_ids(bundle, selfies)
        return selfies, False
    except InspectError as exc:
        flat = smiles_to_selfies(Chem.MolToSmiles(mol, isomericSmiles=False))
        flat = flat and as_trained(bundle.meta, flat)
        if flat is None or flat == selfies:
            raise
        try:
            molecule_ids(bundle, flat)
        except InspectError:
            raise exc from None
        return flat, True


def encode_smiles(bundle: Bundle, smiles: str) -> np.ndarray:
    """The encoder's ``mu`` (latent_dim,) for a SMILES, conditioned on its own properties.

    >>> encode_smiles(bundle, "CCO").shape  # doctest: +SKIP
    (16,)
    """
    selfies, _ = readable_selfies(bundle, smiles)
    ids = mx.array([molecule_ids(bundle, selfies)], dtype=mx.int32)
    own = describe(mol_from_smiles(smiles), bundle.properties)
    props, present = condition_arrays(bundle, own, 1)
    mu, _, _ = _encode(bundle, ids, props, present, weights=False)
    mx.eval(mu)
    return np.array(mu[0])


def interpolate(
    bundle: Bundle,
    smiles_a: str,
    smiles_b: str,
    steps: int = 7,
    targets: dict[str, float | None] | None = None,
) -> list[str]:
    """Greedy SELFIES decoded along the straight line from mu(a) to mu(b) in latent space.

    Each molecule is encoded with its own properties; decoding uses ``targets`` (default:
    unconditioned). The first and last entries are the model's reconstructions of a and b.

    >>> interpolate(bundle, "CCO", "c1ccccc1", steps=5)  # doctest: +SKIP
    ['[C][C][O]', '[C][C][O]', '[C][=C][C]', ...]
    """
    if not 2 <= steps <= MAX_INTERPOLATION_STEPS:
        raise InspectError(f"steps must be in 2..{MAX_INTERPOLATION_STEPS}, got {steps}")
    za, zb = encode_smiles(bundle, smiles_a), encode_smiles(bundle, smiles_b)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    z = mx.array((1 - t) * za + t * zb)  # (steps, latent_dim)
    tokens = [
        s.tokens
        for s in generate_step(
            bundle, targets or {}, n=steps, z=z, sampler=make_sampler(0.0), report_top=1
        )
    ]
    ids = np.stack(tokens, axis=1)  # (steps, T)
    return [bundle.tokenizer.decode(row) for row in ids]
