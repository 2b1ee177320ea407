"""Fine-tuning a trained model on new data: ``python -m core.train --init-from CHECKPOINT``.

The base checkpoint's sizes and closed-loop flag are kept; a closed-loop base can learn to
read the SELFIES derivation too (``--derivation``: its tables start at zero, so the grown
model starts out computing what the base did). Its vocabulary grows by the
symbols the new data uses and it lacks, appended after its own so every existing embedding
row keeps its id; a new symbol's embedding and output-head rows start at the mean of the
existing rows (a neutral guess, close to what the model already knows). Its conditions become
the requested properties: one it was trained on keeps its condition MLP, type embedding, null
vector, feedback inputs and property-head output; a new one gets fresh rows and columns (the
feedback columns start at zero, so the new property only gradually reaches the decoder).
Position tables are remapped so that z, [BOS] and every token keep their positions' rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

import mlx.core as mx
import numpy as np
import selfies as sf
from mlx.utils import tree_flatten, tree_unflatten

from core.checkpoint import Bundle
from core.errors import UserError
from core.model import Model, ModelArgs
from core.tokenizer import Tokenizer

VOCAB_TABLES = ("encoder.embed.weight", "decoder.embed.weight", "decoder.head.weight")
POSITION_TABLES = ("encoder.pos.weight", "decoder.pos.weight")
PROPERTY_ROWS = ("cond.type.weight", "cond.null", "property_head.net.layers.2.")
FEEDBACK_INPUT = "decoder.feedback.net.layers.0.weight"  # (d, 3P): gap, target, flag per P
CONDITION_MLP = re.compile(r"^(?P<part>(?:encoder|decoder)\.cond\.value)\.(?P<index>\d+)\.")


class FineTuneError(UserError, ValueError):
    """The base model cannot be grown to the new data (e.g. a parameter that does not fit)."""


def union_tokenizer(base: Tokenizer, selfies: Iterable[str]) -> Tokenizer:
    """The base vocabulary, then the symbols of ``selfies`` it lacks (most frequent first).

    >>> base = Tokenizer.build(["[C][O]"])
    >>> union_tokenizer(base, ["[C][Cl]", "[Cl][Br]"]).tokens[len(base):]
    ('[Cl]', '[Br]')
    """
    known = set(base.tokens)
    counts: Counter[str] = Counter()
    for s in selfies:
        counts.update(symbol for symbol in sf.split_selfies(s) if symbol not in known)
    return Tokenizer(base.tokens + tuple(sorted(counts, key=lambda t: (-counts[t], t))))


def _property_map(base: Sequence[str], new: Sequence[str]) -> list[int | None]:
    """For each new property, its index among the base's (None: a new one)."""
    return [list(base).index(name) if name in base else None for name in new]


def _copy_rows(fresh: np.ndarray, old: np.ndarray, mapping: list[int | None]) -> np.ndarray:
    """``fresh`` with row i replaced by ``old[mapping[i]]`` where it maps."""
    out = fresh.copy()
    for i, j in enumerate(mapping):
        if j is not None:
            out[i] = old[j]
    return out


def _grown(
    name: str,
    fresh: np.ndarray,
    old: np.ndarray,
    mapping: list[int | None],
    n_base_props: int,
    n_base_vocab: int,
) -> np.ndarray:
    """The value of parameter ``name`` in the grown model, from the base's ``old``."""
    P = len(mapping)
    if name in VOCAB_TABLES:  # (V, d): base rows keep their ids, new ones their mean
        out = np.repeat(old.mean(axis=0, keepdims=True), fresh.shape[0], axis=0)
        out[:n_base_vocab] = old
        return out.astype(old.dtype)
    if name in POSITION_TABLES:  # (P + rest, d): condition rows by property, the rest shifted
        out = fresh.copy()
        out[:P] = _copy_rows(fresh[:P], old[:n_base_props], mapping)
        out[P:] = old[n_base_props:]
        return out
    if name == FEEDBACK_INPUT:  # (d, 3P): columns k * P + i; new inputs start at zero
        out = np.zeros_like(fresh)
        for k in range(3):
            for i, j in enumerate(mapping):
                if j is not None:
                    out[:, k * P + i] = old[:, k * n_base_props + j]
        return out
    if any(part in name for part in PROPERTY_ROWS):  # (P, ...): one row per property
        return _copy_rows(fresh, old, mapping)
    if fresh.shape != old.shape:
        raise FineTuneError(f"parameter {name}: base {old.shape} does not fit {fresh.shape}")
    return old


def grow(
    base: Bundle,
    tokenizer: Tokenizer,
    properties: Sequence[str],
    seed: int = 0,
    derivation: bool = False,
) -> Model:
    """A model with the base's sizes, ``tokenizer`` (the base's vocabulary first, see
    ``union_tokenizer``) and conditions ``properties``, holding the base's weights wherever
    they apply and fresh ones elsewhere (``seed``); ``derivation`` adds (zero) derivation
    tables to a closed-loop base that lacks them.

    >>> import sys; sys.path.insert(0, "tests"); from tiny import tiny_bundle
    >>> base = tiny_bundle()
    >>> tok = union_tokenizer(base.tokenizer, ["[C][Br]"])
    >>> grow(base, tok, ["tpsa", "qed"]).args.properties, len(tok) - len(base.tokenizer)
    (['tpsa', 'qed'], 1)
    """
    if tokenizer.tokens[: len(base.tokenizer)] != base.tokenizer.tokens:
        raise FineTuneError("the new vocabulary must start with the base vocabulary")
    if not properties:
        raise FineTuneError("fine-tuning needs at least one property to condition on")
    if derivation and not base.args.feedback:
        raise FineTuneError("--derivation needs a closed-loop base (trained with --feedback)")
    args: ModelArgs = replace(
        base.args,
        vocab_size=len(tokenizer),
        properties=list(properties),
        derivation=base.args.derivation or derivation,
    )
    mx.random.seed(seed)
    model = Model(args)
    old = {k: np.array(v) for k, v in tree_flatten(base.model.parameters())}
    mapping = _property_map(base.args.properties, properties)
    grown = []
    for name, value in tree_flatten(model.parameters()):
        fresh = np.array(value)
        value_mlp = CONDITION_MLP.match(name)
        if value_mlp:  # one condition MLP per property: the base's own, or a fresh one
            j = mapping[int(value_mlp["index"])]
            if j is not None:
                grown.append((name, mx.array(old[CONDITION_MLP.sub(rf"\g<part>.{j}.", name)])))
            continue
        if name.startswith("decoder.derivation.") and name not in old:
            continue  # new derivation tables: zeros, as made
        if name not in old:
            raise FineTuneError(f"parameter {name} has no counterpart in the base model")
        n_props, n_vocab = len(base.args.properties), len(base.tokenizer)
        grown.append((name, mx.array(_grown(name, fresh, old[name], mapping, n_props, n_vocab))))
    model.update(tree_unflatten(grown))
    mx.eval(model.parameters())
    return model


def growth_note(base: Bundle, tokenizer: Tokenizer, properties: Sequence[str]) -> str:
    """One line on what fine-tuning ``base`` keeps and adds (``tokenizer``, ``properties``).

    >>> import sys; sys.path.insert(0, "tests"); from tiny import tiny_bundle
    >>> base = tiny_bundle()
    >>> growth_note(base, union_tokenizer(base.tokenizer, ["[C][Br]"]), ["logp", "qed"])[-37:]
    "1 new symbols, new conditions ['qed']"
    """
    new = [p for p in properties if p not in base.properties] or "none"
    return (
        f"note: fine-tuning {base.path} ({base.args.d_model} wide, {base.args.n_layers} layers;"
        f" its sizes and closed-loop setting are kept): {len(tokenizer) - len(base.tokenizer)}"
        f" new symbols, new conditions {new}"
    )
