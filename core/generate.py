"""Autoregressive generation: KV cache, samplers, the ``generate_step`` generator, and the
``python -m core.generate`` command line.

``generate_step`` yields one ``Step`` per decoded position; the dashboard (step by step) and
the batch functions below both consume it. Each call builds and evaluates its whole graph in
the calling thread and keeps its cache to itself, so one loaded model serves many threads.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from core.checkpoint import Bundle
from core.errors import UserError

MAX_MOLECULES = 100_000  # largest --n accepted by the command line


class GenerationError(UserError, ValueError):
    """Bad generation input: unknown property, non-finite target, invalid prefix..."""


class KVCache:
    """Keys and values of one decoder layer for one generation call."""

    def __init__(self) -> None:
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array]:
        """Append (B, H, T, Dh) keys/values; return everything cached so far."""
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = mx.concatenate([self.keys, k], axis=2)  # (B, H, S, Dh)
            self.values = mx.concatenate([self.values, v], axis=2)
        self.offset += k.shape[2]
        return self.keys, self.values


def make_cache(bundle: Bundle) -> list[KVCache]:
    return [KVCache() for _ in range(bundle.args.n_layers)]


@dataclass(frozen=True)
class Sampler:
    """Picks token ids (B,) from logits (B, V); build it with ``make_sampler``."""

    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k truncation
    top_p: float = 1.0  # 1 means no nucleus truncation

    def probabilities(self, logits: mx.array) -> mx.array:
        """The distribution after temperature, before truncation (what the dashboard shows)."""
        return mx.softmax(logits / max(self.temperature, 1e-6), axis=-1)

    def __call__(self, logits: mx.array, key: mx.array) -> mx.array:
        if self.temperature == 0:
            return mx.argmax(logits, axis=-1)
        logits = logits / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = mx.sort(logits, axis=-1)[:, -self.top_k][:, None]  # (B, 1)
            logits = mx.where(logits < kth, -mx.inf, logits)
        if self.top_p < 1:
            order = mx.argsort(-logits, axis=-1)
            probs = mx.softmax(mx.take_along_axis(logits, order, axis=-1), axis=-1)
            drop_sorted = (mx.cumsum(probs, axis=-1) - probs) > self.top_p
            drop = mx.put_along_axis(mx.zeros_like(drop_sorted), order, drop_sorted, axis=-1)
            logits = mx.where(drop, -mx.inf, logits)
        return mx.random.categorical(logits, key=key)


def make_sampler(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Sampler:
    """A sampler: (logits (B, V), key) -> token ids (B,).

    >>> sample = make_sampler(temperature=0.0)
    >>> sample(mx.array([[0.1, 2.0, 0.3]]), mx.random.key(0)).tolist()
    [1]
    """
    if not math.isfinite(temperature) or temperature < 0:
        raise GenerationError(f"temperature must be a finite number ≥ 0, got {temperature}")
    if top_k < 0 or not 0 < top_p <= 1:
        raise GenerationError("top-k must be ≥ 0 and top-p in (0, 1]")
    return Sampler(float(temperature), int(top_k), float(top_p))


@dataclass
class Step:
    """One decoding step for a batch of B sequences."""

    index: int  # 0 for the first generated token
    tokens: np.ndarray  # (B,) chosen token ids ([PAD] once a sequence has ended)
    top_ids: np.ndarray  # (B, K) most probable next tokens, best first
    top_probs: np.ndarray  # (B, K) their probabilities (after temperature, before truncation)
    done: np.ndarray  # (B,) True once [EOS] was chosen
    attention: list[np.ndarray] | None  # per layer (B, H, S): this position's attention
    # (B, P) properties (real units) of the molecule decoded so far, which a closed-loop
    # model reads as the gap to its targets at the next position; None without feedback
    prefix_props: np.ndarray | None = None


def condition_arrays(bundle: Bundle, targets: dict[str, float | np.ndarray | None], n: int):
    """Normalised values and presence flags (n, P) for targets in real units (None = free;
    an array of n values gives each row its own target)."""
    unknown = set(targets) - set(bundle.properties)
    if unknown:
        raise GenerationError(
            f"unknown properties {sorted(unknown)}; model has {bundle.properties}"
        )
    values, present = [], []
    for name in bundle.properties:
        target = targets.get(name)
        column = np.zeros(n) if target is None else np.broadcast_to(np.asarray(target, float), n)
        if not np.isfinite(column).all():
            raise GenerationError(f"target for {name} must be a finite number, got {target}")
        values.append(bundle.scales[name].normalise(column))
        present.append(np.full(n, 0.0 if target is None else 1.0))
    as_array = lambda cols: mx.array(np.stack(cols, axis=1).astype(np.float32))  # noqa: E731
    return as_array(values), as_array(present)


def encode_prefix(bundle: Bundle, prefix: str) -> list[int]:
    """Token ids of a SELFIES prefix; GenerationError if a symbol is unknown or malformed."""
    from core.tokenizer import TokenizerError

    if not prefix:
        return []
    try:
        ids = bundle.tokenizer.encode(prefix, eos=False, strict=True)
    except TokenizerError as exc:
        raise GenerationError(f"invalid --prefix: {exc}") from exc
    if len(ids) >= bundle.args.max_len:
        raise GenerationError(f"prefix is longer than the model's {bundle.args.max_len} tokens")
    return ids


def generate_step(
    bundle: Bundle,
    targets: dict[str, float | None],
    *,
    n: int = 1,
    seed: int = 0,
    sampler: Sampler | None = None,
    prefix: str = "",
    z: mx.array | None = None,
    cfg_scale: float = 1.0,
    report_top: int = 5,
    return_attention: bool = False,
    max_tokens: int | None = None,
    feedback: bool = True,
) -> Iterator[Step]:
    """Decode ``n`` molecules token by token, yielding a ``Step`` after each token.

    ``z`` (n, latent_dim) defaults to a draw from the prior; ``cfg_scale`` > 1 applies
    classifier-free guidance against the unconditioned prediction. A closed-loop model
    (``args.feedback``) reads after every token the properties of each molecule so far,
    computed with RDKit (``core.feedback``); ``feedback=False`` freezes them at the prefix's
    molecule (an open-loop experiment: the model no longer sees its progress).
    """
    model, args = bundle.model, bundle.args
    sampler = sampler or make_sampler()
    z_key, tokens_key = mx.random.split(mx.random.key(seed))
    if z is None:
        z = mx.random.normal((n, args.latent_dim), key=z_key)
    props, present = condition_arrays(bundle, targets, n)
    prefix_ids = encode_prefix(bundle, prefix)
    tokens = mx.array([prefix_ids] * n, dtype=mx.int32).reshape(n, len(prefix_ids))
    limit = args.max_len - len(prefix_ids) if max_tokens is None else max_tokens
    if not 0 < limit <= args.max_len - len(prefix_ids):
        room = args.max_len - len(prefix_ids)
        raise GenerationError(f"max_tokens must be between 1 and {room}, got {limit}")
    tracker = _Feedback(bundle, n, prefix, feedback) if args.feedback else None
    guided = cfg_scale != 1.0
    streams = [(present, make_cache(bundle))]
    if guided:
        streams.append((mx.zeros_like(present), make_cache(bundle)))

    def forward(x_for: Callable[[mx.array], mx.array], offset: int):
        outs = []
        for flags, cache in streams:
            logits, w = model.decoder(x_for(flags), offset, cache, return_attention)
            outs.append((logits[:, -1], w))
        return outs

    bos = bundle.tokenizer.bos_id
    first = None if tracker is None else tracker.table  # (n, 1 + len(prefix_ids), P)
    outs = forward(lambda flags: model.decoder_inputs(z, props, flags, tokens, bos, first), 0)
    offset = args.n_prefix + 1 + len(prefix_ids)
    done = mx.zeros((n,), dtype=mx.bool_)
    # one key per absolute position: decoding from a prefix of an earlier run's own tokens
    # continues exactly as that run did (the dashboard steps this way)
    keys = mx.random.split(tokens_key, args.max_len)
    pick = _picker(bundle, sampler, report_top)
    # without guidance or attention, positions after the first run as one compiled function
    # over a fixed-size cache (about 3x less time per token at batch 1 on CPU)
    fast = None
    if not guided and not return_attention and limit > 1:
        fast = _compiled_step(bundle, sampler, report_top)
    static: tuple[list, list] | None = None
    reads = None if tracker is None else tracker.latest  # (n, 1, P) normalised
    for index in range(limit):
        if index == 0 or fast is None:
            logits = outs[0][0]
            if guided:
                logits = outs[1][0] + cfg_scale * (logits - outs[1][0])
            token, top_ids, top_probs, done = pick(logits, keys[len(prefix_ids) + index], done)
        else:
            if static is None:
                static = _static_cache(streams[0][1], model.decoder.pos.weight.shape[0])
            # the token goes in at position offset - 1; the step takes the key of index
            # len(prefix_ids) + index, which is that position minus n_prefix
            token, top_ids, top_probs, done, *static = fast(
                token, mx.array(offset - 1), keys, done, props, present, reads, *static
            )
        attn = [w[:, :, -1] for w in outs[0][1]] if return_attention else []
        mx.eval(token, top_ids, top_probs, done, *attn)
        order = np.argsort(-np.array(top_probs), axis=-1, kind="stable")  # best first
        finished = np.array(done)
        chosen = np.array(token)
        if tracker is not None:
            reads = tracker.push(chosen, finished)
        yield Step(
            index=index,
            tokens=chosen,
            top_ids=np.take_along_axis(np.array(top_ids), order, axis=-1),
            top_probs=np.take_along_axis(np.array(top_probs), order, axis=-1),
            done=finished,
            attention=[np.array(a) for a in attn] if return_attention else None,
            prefix_props=None if tracker is None else tracker.raw.copy(),
        )
        if finished.all() or index == limit - 1:
            return
        if fast is None:

            def x_for(flags, token=token, reads=reads):
                return model.decoder.embed_tokens(token[:, None], props, flags, reads)

            outs = forward(x_for, offset)
        offset += 1


def _picker(bundle: Bundle, sampler: Sampler, report_top: int):
    """(logits (B, V), key, done) -> (token, top_ids, top_probs, done): the sampled token
    ([PAD] once a row is done; [PAD], [BOS] and [UNK] never chosen) and the k most likely
    tokens, unordered."""
    tok = bundle.tokenizer
    banned = mx.zeros((len(tok),)).at[mx.array([tok.pad_id, tok.bos_id, tok.unk_id])].add(-mx.inf)
    mx.eval(banned)  # evaluated here: a compiled step may run it in another thread

    def pick(logits: mx.array, key: mx.array, done: mx.array):
        logits = logits + banned
        token = mx.where(done, tok.pad_id, sampler(logits, key))
        probs = sampler.probabilities(logits)
        k = min(report_top, probs.shape[-1])
        top_ids = mx.argpartition(-probs, kth=k - 1, axis=-1)[:, :k]
        top_probs = mx.take_along_axis(probs, top_ids, axis=-1)
        return token, top_ids, top_probs, done | (token == tok.eos_id)

    return pick


_COMPILED_LOCK = threading.Lock()


def _compiled_step(bundle: Bundle, sampler: Sampler, report_top: int) -> Callable:
    """``mx.compile`` of (token, pos, key, done, keys, values) -> (token, top_ids, top_probs,
    done, keys, values): one position of ``Decoder.step`` and ``_picker``. Kept on the model,
    one per sampler and report size, so it is traced once per batch size."""
    model = bundle.model
    with _COMPILED_LOCK:
        table = model.__dict__.get("_molscope_steps")
        if table is None:
            table = {}
            object.__setattr__(model, "_molscope_steps", table)  # not a parameter
        fn = table.get((sampler, report_top))
        if fn is None:
            decoder, pick = model.decoder, _picker(bundle, sampler, report_top)

            first = bundle.args.n_prefix

            def step(token, pos, rng_keys, done, props, present, reads, keys, values):
                logits, keys, values = decoder.step(token, pos, keys, values, props, present, reads)
                rng_key = mx.take(rng_keys, pos - first, axis=0)
                return (*pick(logits, rng_key, done), keys, values)

            # the decoder's weights as implicit inputs: a later load_weights is seen
            fn = table[(sampler, report_top)] = mx.compile(step, inputs=decoder.state)
    return fn


def prefix_inputs(bundle: Bundle, selfies: str) -> mx.array | None:
    """What a closed-loop decoder reads at [BOS] and at each symbol of ``selfies``: the
    normalised properties (1, L + 1, P) of every prefix's molecule; None without feedback."""
    from core.feedback import prefix_table

    if not bundle.args.feedback:
        return None
    names = bundle.properties
    mean = np.array([bundle.scales[p].mean for p in names], dtype=np.float32)
    std = np.array([bundle.scales[p].std for p in names], dtype=np.float32)
    return mx.array(((prefix_table(selfies, names) - mean) / std)[None].astype(np.float32))


class _Feedback:
    """What a closed-loop model reads during one generation call: the properties of each
    sequence's molecule so far (``core.feedback.PrefixTracker``), normalised."""

    def __init__(self, bundle: Bundle, n: int, prefix: str, live: bool):
        import selfies as sf

        from core.feedback import PrefixTracker

        names = bundle.properties
        self.tokenizer, self.live = bundle.tokenizer, live
        self.mean = np.array([bundle.scales[p].mean for p in names], dtype=np.float32)
        self.std = np.array([bundle.scales[p].std for p in names], dtype=np.float32)
        symbols = list(sf.split_selfies(prefix)) if prefix else []
        table = prefix_inputs(bundle, prefix)  # (1, 1 + L, P)
        self.table = mx.broadcast_to(table, (n, *table.shape[1:]))
        self.tracker = PrefixTracker(n, names, symbols)
        self.raw = self.tracker.values.copy()
        self.latest = self.table[:, -1:]  # (n, 1, P)

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def push(self, tokens: np.ndarray, done: np.ndarray) -> mx.array:
        """The molecules after this step's tokens -> what the next position reads (n, 1, P)."""
        if self.live:
            eos = self.tokenizer.eos_id
            symbols = [
                None if finished or t == eos else self.tokenizer.tokens[t]
                for t, finished in zip(tokens.tolist(), done.tolist(), strict=True)
            ]
            self.raw = self.tracker.push(symbols).copy()
            self.latest = mx.array(self._normalise(self.raw)[:, None])
        return self.latest


def _static_cache(cache: list[KVCache], size: int) -> tuple[list, list]:
    """The growing caches copied into fixed-size ones of ``size`` positions."""
    pad = [(0, 0), (0, 0), (0, size - cache[0].offset), (0, 0)]
    return [mx.pad(c.keys, pad) for c in cache], [mx.pad(c.values, pad) for c in cache]


def generate(
    bundle: Bundle,
    targets: dict[str, float | np.ndarray | None],
    n: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    prefix: str = "",
    cfg_scale: float = 1.0,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Generate ``n`` SELFIES strings (prefix included) at the given targets (a number, or an
    array of ``n`` numbers: one target per molecule)."""
    if n <= 0:
        raise GenerationError(f"n must be positive, got {n}")
    sampler = make_sampler(temperature, top_k)
    out: list[str] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        rows = {  # per-row target arrays are cut into the batch's rows
            k: v[start : start + b] if isinstance(v, np.ndarray) and v.ndim else v
            for k, v in targets.items()
        }
        steps = [
            s.tokens
            for s in generate_step(
                bundle,
                rows,
                n=b,
                seed=seed + start,
                sampler=sampler,
                prefix=prefix,
                cfg_scale=cfg_scale,
                report_top=1,
            )
        ]
        ids = np.stack(steps, axis=1) if steps else np.zeros((b, 0), dtype=np.int32)
        out += [prefix + bundle.tokenizer.decode(row) for row in ids]
        if progress:
            progress(len(out))
    return out


def score(selfies: list[str], properties: tuple[str, ...] = ("logp", "tpsa")):
    """DataFrame with ``selfies, smiles`` (canonical, "" if none) and RDKit ``properties``."""
    import pandas as pd
    from rdkit import Chem

    from core.chem import describe, rdkit_quiet, selfies_to_mol

    rows = []
    with rdkit_quiet():
        for s in selfies:
            mol = selfies_to_mol(s)
            if mol is None or mol.GetNumAtoms() == 0:
                rows.append({"selfies": s, "smiles": "", **{p: float("nan") for p in properties}})
                continue
            rows.append(
                {"selfies": s, "smiles": Chem.MolToSmiles(mol), **describe(mol, properties)}
            )
    return pd.DataFrame(rows, columns=["selfies", "smiles", *properties])


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.checkpoint import CheckpointError, load_checkpoint

    if not 0 < args.n <= MAX_MOLECULES:
        raise GenerationError(f"--n must be between 1 and {MAX_MOLECULES}, got {args.n}")
    bundle = load_checkpoint(args.checkpoint)
    targets = {"logp": args.logp, "tpsa": args.tpsa}
    targets = {k: v for k, v in targets.items() if v is not None and k in bundle.properties}
    for name, value in targets.items():
        if not math.isfinite(value):
            raise GenerationError(f"--{name} must be a finite number, got {value}")
    encode_prefix(bundle, args.prefix)  # bad input fails here, before any progress output
    make_sampler(args.temperature, args.top_k)
    with tqdm(total=args.n, desc="generating", unit="mol", file=sys.stderr) as bar:
        selfies = generate(
            bundle,
            targets,
            args.n,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            prefix=args.prefix,
            cfg_scale=args.cfg_scale,
            progress=lambda done: bar.update(done - bar.n),
        )
    table = score(selfies)
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".partial")
        try:
            table.to_csv(tmp, index=False)
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"cannot write {out}: {exc.strerror or exc}") from exc
        valid = (table.smiles != "").mean()
        print(f"wrote {len(table)} molecules to {out} (valid {valid:.3f})", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    from core.cli import OneLineParser, run_cli

    parser = OneLineParser(description="Generate molecules at target LogP / TPSA.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder")
    parser.add_argument("--logp", type=float, help="target LogP (omit: unconditioned)")
    parser.add_argument("--tpsa", type=float, help="target TPSA in Å² (omit: unconditioned)")
    parser.add_argument("--n", type=int, default=10, help="number of molecules")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k best (0: all)")
    parser.add_argument("--prefix", default="", help="SELFIES to start every molecule with")
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    run_cli(main, parser)
