"""Step-by-step decoding: one molecule written a SELFIES symbol at a time (the Generate page's
Play / Pause / Step / Reset), continuing exactly as an uninterrupted ``generate_step`` run with
the same seed would.

A ``Stepper`` holds plain data only (numbers, strings, lists), so a UI can keep it in its
session state across reruns and threads; the model is handed to each ``step``, which runs it
on a ``core.pool`` thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from core.checkpoint import Bundle
from core.closed_loop import MAX_RING
from core.feedback import prefix_properties
from core.generate import Step, generate_step, make_sampler
from core.inspect import partial_properties
from core.pool import on_pool


@dataclass(frozen=True)
class StepSettings:
    """What a step-by-step run decodes with; other settings make another run.

    >>> StepSettings({"logp": 2.0, "tpsa": None}, top_k=40).report_top
    15
    """

    targets: Mapping[str, float | None]  # per property of the model: its target, None = free
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0  # 0: sample among all symbols
    feedback: bool = True  # False: a closed-loop model reads the empty molecule throughout
    max_ring: int | None = MAX_RING  # closed loop: largest ring it may close (None: any)
    # closed loop: (property, ± window) pairs a derivation may only end inside (None: anywhere)
    finish_window: tuple[tuple[str, float], ...] | None = None
    checkpoint: str = ""  # the model's folder (another model's token ids mean nothing)

    @property
    def report_top(self) -> int:
        """How many of the most probable next symbols each step records: the top-k (at most
        15), else 10."""
        return min(self.top_k, 15) if self.top_k else 10


class Stepper:
    """The state of one step-by-step decoding.

    After each ``step``: ``symbols`` (the SELFIES symbols so far), and per step ``chosen``
    (the token id, [EOS] included), ``top_ids`` / ``top_probs`` (the most probable next
    symbols, best first), ``partial`` (per symbol: ``partial_properties`` of the prefix with
    every property of the model, None before the first atom) and, for a closed-loop model,
    ``reads`` (the properties of the molecule the choosing position read) and ``refused`` (the
    symbols drawn first and refused because they closed a ring larger than ``max_ring``).
    ``done`` once the molecule is finished (``completed``: because no further symbol could
    change it; ``at_limit``: at ``Bundle.token_limit`` symbols, the longest SELFIES the
    model was trained on, without an [EOS]); ``playing`` while a UI steps on a timer.
    """

    def __init__(self, settings: StepSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Back to the empty molecule, with the same settings."""
        self.symbols: list[str] = []
        self.chosen: list[int] = []
        self.top_ids: list[list[int]] = []
        self.top_probs: list[list[float]] = []
        self.partial: list[dict | None] = []
        self.reads: list[dict[str, float]] = []
        self.next_read: dict[str, float] | None = None  # closed loop: what the next step reads
        self.refused: list[list[int]] = []  # per step: symbols drawn and refused (large ring)
        self.completed = False  # ended because no further symbol could change the molecule
        self.at_limit = False  # ended at the length limit, without [EOS]
        self.done = False
        self.playing = False

    def toggle_play(self) -> None:
        """Play, or pause; a finished molecule does not play."""
        self.playing = not self.playing and not self.done

    def step(self, bundle: Bundle) -> None:
        """Decode one more symbol (on a pool thread) and record it with what the model read
        to choose it. Finishing ([EOS], or ``Bundle.token_limit`` symbols) sets ``done`` and
        stops playing; a finished molecule takes no more steps."""
        if self.done:
            return
        step = on_pool(self._next_step, bundle)
        token, names = int(step.tokens[0]), bundle.properties
        self.chosen.append(token)
        self.top_ids.append(step.top_ids[0].tolist())
        self.top_probs.append(step.top_probs[0].tolist())
        self.refused.append(list(step.refused[0]) if step.refused else [])
        self.completed = step.completed is not None and bool(step.completed[0])
        if step.prefix_props is not None:
            if self.next_read is None:  # the first position reads the empty molecule
                self.next_read = dict(zip(names, prefix_properties("", names)[1], strict=True))
            self.reads.append(self.next_read)
            self.next_read = dict(zip(names, step.prefix_props[0].tolist(), strict=True))
        if token == bundle.tokenizer.eos_id:
            self.done = True
        else:
            self.symbols.append(bundle.tokenizer.tokens[token])
            self.partial.append(partial_properties("".join(self.symbols), names))
            self.done = self.at_limit = len(self.symbols) >= bundle.token_limit
        self.playing = self.playing and not self.done

    def _next_step(self, bundle: Bundle) -> Step:
        """The ``Step`` that decodes one more symbol.

        Decoding from the symbols so far as a prefix gives the uninterrupted run's next step,
        what a closed loop reads included. Open loop on a closed-loop model is the exception:
        ``generate_step`` freezes the reads at its prefix's molecule, and this run's were
        frozen at the empty one, so the run is decoded again from the start (tens of steps,
        n = 1).
        """
        s = self.settings
        common = dict(
            n=1, seed=s.seed, sampler=make_sampler(s.temperature, s.top_k),
            report_top=s.report_top, max_ring=s.max_ring,
            finish_window=None if s.finish_window is None else dict(s.finish_window),
        )  # fmt: skip
        targets = dict(s.targets)
        if s.feedback or not bundle.args.feedback:
            prefix = "".join(self.symbols)
            return next(generate_step(bundle, targets, prefix=prefix, max_tokens=1, **common))
        steps = generate_step(
            bundle, targets, max_tokens=len(self.chosen) + 1, feedback=False, **common
        )
        return deque(steps, maxlen=1)[0]
