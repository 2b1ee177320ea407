"""SELFIES tokenizer: a fixed vocabulary of SELFIES symbols plus four special tokens.

Every token the model reads or writes is a SELFIES symbol (``[C]``, ``[=O]``, ``[Ring1]``...),
so every prefix of a generated sequence decodes to a valid molecule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import selfies as sf

from core.errors import UserError

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIALS = (PAD, BOS, EOS, UNK)


class TokenizerError(UserError, ValueError):
    """A SELFIES string holds a symbol that is not in the vocabulary, or is malformed."""


@dataclass(frozen=True)
class Tokenizer:
    """Maps SELFIES symbols to integer ids and back.

    >>> tok = Tokenizer.build(["[C][O]", "[C][N]"])
    >>> tok.decode(tok.encode("[C][O]"))
    '[C][O]'
    """

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise TokenizerError(f"vocabulary must start with {SPECIALS}")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, selfies: Iterable[str], extra: Iterable[str] = ()) -> Tokenizer:
        """A vocabulary of every symbol seen, most frequent first, then the ``extra`` symbols
        not seen (e.g. ``selfies.get_semantic_robust_alphabet()``, so that data added later
        rarely meets an unknown symbol)."""
        counts: Counter[str] = Counter()
        for s in selfies:
            counts.update(sf.split_selfies(s))
        symbols = sorted(counts, key=lambda t: (-counts[t], t))
        unseen = sorted(set(extra) - set(counts) - set(SPECIALS))
        return cls(SPECIALS + tuple(symbols) + tuple(unseen))

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def unk_id(self) -> int:
        return 3

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, selfies: str) -> list[str]:
        """The SELFIES symbols of ``selfies``; raises TokenizerError if it is malformed."""
        try:
            symbols = list(sf.split_selfies(selfies))
        except Exception as exc:  # selfies raises several types for malformed input
            raise TokenizerError(f"malformed SELFIES: {selfies!r}") from exc
        if "".join(symbols) != selfies:
            raise TokenizerError(f"malformed SELFIES: {selfies!r}")
        return symbols

    def encode(self, selfies: str, eos: bool = True, strict: bool = False) -> list[int]:
        """Token ids of ``selfies`` (unknown symbols become [UNK], or raise when ``strict``)."""
        ids = []
        for symbol in self.split(selfies):
            idx = self._ids.get(symbol)  # type: ignore[attr-defined]
            if idx is None or idx < len(SPECIALS):
                if strict:
                    raise TokenizerError(f"symbol {symbol} is not in the model's vocabulary")
                idx = self.unk_id
            ids.append(idx)
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """The SELFIES string of ``ids``, stopping at [EOS] and skipping other special tokens."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.tokens[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        return cls(tuple(d["tokens"]))
