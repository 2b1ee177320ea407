"""Evaluation: ``python -m core.evaluate --checkpoint DIR [--n N] [--out FILE.json]``

Validity, uniqueness, novelty and diversity; conditioning on the reference grid (MAD, SD,
hit rates, and the same against shuffled targets); conditioning on every property at once at
the values of held-out molecules of the checkpoint's own data; unconditional property
statistics; reconstruction (teacher-forced vs free-running); latent use (KL per dim, active
units); the MOSES suite (``core.moses``) of unconditional samples and of samples conditioned
on the (LogP, TPSA) pairs of MOSES test molecules, against the MOSES test set.

The grid and the hit windows follow the checkpoint's properties. LogP and TPSA use the
literature's: targets LogP ∈ {1, 2, 3} and TPSA ∈ {40, 60, 80, 100} Å², hits within
±0.5 / ±10 Å² (strict ±0.4 / ±8). Any other property is placed by its training data
(``PropertyScale``): targets at mean − σ, mean and mean + σ, kept inside the data's
0.5–99.5 percentile range and rounded to the property's resolution; hits within ±0.5σ
(strict ±0.4σ) — about what ±0.5 LogP and ±10 Å² are in σ of MOSES — rounded to two
significant digits, at least ±0.5 for counts (an exact hit).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
import pandas as pd

from core.batches import EncodedSet, encode_set, take
from core.checkpoint import Bundle, PropertyScale, load_checkpoint
from core.chem import COUNT_DESCRIPTORS, DESCRIPTOR_STEPS
from core.closed_loop import MAX_RING
from core.data import DEFAULT_DATA, DataError, checkpoint_data_path, load_dataset, read_moses
from core.generate import GenerationError, generate, generate_step, make_sampler, score
from core.losses import gaussian_kl, masked_cross_entropy
from core.ordering import as_trained
from core.targets import csv_properties
from core.trainset import prefix_arrays

LOGP_GRID = (1.0, 2.0, 3.0)
TPSA_GRID = (40.0, 60.0, 80.0, 100.0)
GRIDS = {"logp": LOGP_GRID, "tpsa": TPSA_GRID}
HIT = {"logp": 0.5, "tpsa": 10.0}
STRICT_HIT = {"logp": 0.4, "tpsa": 8.0}
HIT_SIGMAS, STRICT_SIGMAS = 0.5, 0.4  # hit windows of the other properties, in σ of the data
MAX_SAMPLES = 20_000
MOSES_REFERENCE = 5_000  # MOSES test molecules the suite compares against (None: all 176,074)
HELDOUT = "heldout"  # the result's section: every property at held-out molecules' values


def _two_digits(x: float) -> float:
    """``x`` rounded to two significant digits."""
    return float(f"{x:.2g}")


def hit_windows(scales: dict[str, PropertyScale], strict: bool = False) -> dict[str, float]:
    """The ± window of a hit for each property of ``scales`` (see the module docstring).

    >>> hit_windows({"logp": PropertyScale(2.4, 0.9, -0.5, 4.3),
    ...              "qed": PropertyScale(0.8, 0.12, 0.4, 0.95),
    ...              "rings": PropertyScale(2.7, 0.6, 1, 4)})
    {'logp': 0.5, 'qed': 0.06, 'rings': 0.5}
    """
    fixed, sigmas = (STRICT_HIT, STRICT_SIGMAS) if strict else (HIT, HIT_SIGMAS)
    windows = {}
    for name, scale in scales.items():
        if name in fixed:
            windows[name] = fixed[name]
            continue
        window = _two_digits(sigmas * scale.std)
        windows[name] = max(window, 0.5) if name in COUNT_DESCRIPTORS else window
    return windows


def grid_values(name: str, scale: PropertyScale) -> tuple[float, ...]:
    """Reference targets of one property (see the module docstring).

    >>> grid_values("tpsa", PropertyScale(65, 18, 23, 117))
    (40.0, 60.0, 80.0, 100.0)
    >>> grid_values("qed", PropertyScale(0.81, 0.12, 0.41, 0.94))
    (0.69, 0.81, 0.93)
    """
    if name in GRIDS:
        return GRIDS[name]
    step = DESCRIPTOR_STEPS.get(name, 0.01)
    values = []
    for raw in (scale.mean - scale.std, scale.mean, scale.mean + scale.std):
        value = round(round(min(max(raw, scale.lo), scale.hi) / step) * step, 6)
        if value not in values:
            values.append(value)
    return tuple(values)


def reference_grid(
    properties: tuple[str, ...] | list[str] = ("logp", "tpsa"),
    scales: dict[str, PropertyScale] | None = None,
) -> list[dict[str, float | None]]:
    """Each property alone on its targets, then every pair of targets of the first two
    properties (for LogP and TPSA: 3 + 4 + 12 targets). ``scales`` places properties other
    than LogP and TPSA.

    >>> len(reference_grid()), reference_grid()[-1]
    (19, {'logp': 3.0, 'tpsa': 100.0})
    """
    values = {}
    for name in properties:
        if name not in GRIDS and (scales is None or name not in scales):
            raise GenerationError(f"no data scale to place targets of {name}")
        values[name] = grid_values(name, scales[name] if name not in GRIDS else None)
    grid: list[dict[str, float | None]] = [{p: v} for p in properties for v in values[p]]
    if len(properties) >= 2:
        a, b = properties[:2]
        grid += [{a: x, b: y} for x in values[a] for y in values[b]]
    return grid


def target_metrics(
    table: pd.DataFrame,
    targets: dict[str, float | np.ndarray | None],
    windows: dict[str, float] | None = None,
    strict_windows: dict[str, float] | None = None,
) -> dict:
    """MAD, SD and hit rates of the valid molecules in ``table`` against ``targets`` (a
    number per property, or one per row of ``table``); hits within ``windows`` (default
    ``HIT``) and, for the strict joint rate, ``strict_windows`` (default ``STRICT_HIT``)."""
    windows = HIT if windows is None else windows
    strict_windows = STRICT_HIT if strict_windows is None else strict_windows
    keep = (table.smiles != "").to_numpy()
    valid = table[keep]
    out: dict = {
        "targets": targets,
        "n": len(table),
        "validity": len(valid) / max(len(table), 1),
        "uniqueness": valid.smiles.nunique() / max(len(valid), 1),
    }
    hits, strict = np.ones(len(valid), bool), np.ones(len(valid), bool)
    for name, target in targets.items():
        if isinstance(target, np.ndarray) and target.ndim:
            target = target[keep]
        dev = np.abs(valid[name].to_numpy() - target)
        out[f"mad_{name}"] = float(dev.mean()) if len(dev) else math.nan
        out[f"sd_{name}"] = float(dev.std()) if len(dev) else math.nan
        out[f"hit_{name}"] = float((dev <= windows[name]).mean()) if len(dev) else 0.0
        hits &= dev <= windows[name]
        strict &= dev <= strict_windows[name]
    if len(targets) > 1:
        out["hit_joint"] = float(hits.mean()) if len(valid) else 0.0
        out["hit_joint_strict"] = float(strict.mean()) if len(valid) else 0.0
    return out


def summarise(rows: list[dict], properties: tuple[str, ...] | list[str] = ("logp", "tpsa")) -> dict:
    """The headline numbers: each property's MAD and SD on its own targets (``logp_mad``...),
    and the joint hit rates of the first two properties' pairs (``joint_hit``...)."""

    def mean(key: str, kind: set[str]) -> float:
        vals = [r[key] for r in rows if set(r["targets"]) == kind and key in r]
        return float(np.mean(vals)) if vals else math.nan

    out = {}
    for p in properties:
        out[f"{p}_mad"] = mean(f"mad_{p}", {p})
        out[f"{p}_sd"] = mean(f"sd_{p}", {p})
    pair = set(properties[:2])
    out["joint_hit"] = mean("hit_joint", pair) if len(pair) == 2 else math.nan
    out["joint_hit_strict"] = mean("hit_joint_strict", pair) if len(pair) == 2 else math.nan
    return out


def shuffled(
    rows: list[dict],
    tables: list[pd.DataFrame],
    properties: tuple[str, ...] | list[str] = ("logp", "tpsa"),
    windows: dict[str, float] | None = None,
    strict_windows: dict[str, float] | None = None,
) -> dict:
    """Deviations of each target's molecules from another target of the same kind: if the
    condition is used, these are far worse than the real MADs."""
    out = []
    kinds = []
    for r in rows:
        if set(r["targets"]) not in kinds:
            kinds.append(set(r["targets"]))
    for kind in kinds:
        idx = [i for i, r in enumerate(rows) if set(r["targets"]) == kind]
        for j, i in enumerate(idx):
            other = rows[idx[(j + len(idx) // 2) % len(idx)]]["targets"]
            out.append(target_metrics(tables[i], other, windows, strict_windows))
    return summarise(out, properties)


@dataclass
class NoveltyReference:
    """The training molecules novelty is measured against."""

    smiles: set[str]  # canonical SMILES
    vs: str  # "training set", or "subset" when the checkpoint's own is not here
    note: str  # one sentence that says which molecules


def _train_smiles(path: Path) -> set[str]:
    table = load_dataset(path)
    return set(table.loc[table.split == "train", "smiles"])


def novelty_reference(bundle: Bundle) -> NoveltyReference:
    """What novelty is measured against: a user's model, its own training molecules; a MOSES
    model, the full MOSES training set (1.58M SMILES from the ``molsets`` wheel, as molsets's
    own novelty, with the checkpoint's training split added). Where neither is here, the MOSES
    subset, labelled "subset" (it overstates novelty)."""
    data = bundle.meta.get("data", {})
    named = checkpoint_data_path(bundle.meta)
    own = _train_smiles(named) if named is not None and named.is_file() else None
    if data.get("kind") == "user" and own is not None:
        note = f"Against the model's {len(own):,} training molecules ({named.name})."
        return NoveltyReference(own, "training set", note)
    if data.get("kind") != "user":
        try:
            moses = set(read_moses("train"))
        except DataError:
            moses = None
        if moses is not None:
            note = f"Against the full MOSES training set ({len(moses):,} SMILES, as molsets)."
            return NoveltyReference(moses | (own or set()), "training set", note)
    missing = named.name if named is not None else "the training set"
    note = f"{missing} is not here: novelty is measured against the MOSES subset (overstated)."
    return NoveltyReference(_train_smiles(DEFAULT_DATA), "subset", note)


def reconstruction(bundle: Bundle, selfies: list[str], props: np.ndarray) -> dict:
    """Teacher-forced token accuracy vs greedy free-running exact match, with z = mu."""
    args, tok = bundle.args, bundle.tokenizer
    rows = pd.DataFrame({"selfies": selfies})
    prefix = prefix_arrays(rows, bundle) if args.feedback else None
    data = encode_set(selfies, props, tok, args.max_len, prefix)
    ids, valid, p, pre = (mx.array(a) for a in take(data, np.arange(len(data))))
    present = mx.ones(p.shape)
    logits, mu, logvar, _, _ = bundle.model(
        ids, valid, p, present, mx.zeros((len(data), args.latent_dim)), tok.bos_id,
        prefix_props=pre,
    )  # fmt: skip
    mask = np.array(valid)
    acc = float((np.array(logits.argmax(-1)) == np.array(ids))[mask].mean())
    targets = {
        name: bundle.scales[name].denormalise(np.array(p[:, i]))
        for i, name in enumerate(bundle.properties)
    }
    greedy = make_sampler(0.0)
    steps = [s.tokens for s in generate_step(bundle, targets, n=len(data), z=mu, sampler=greedy)]
    decoded = [tok.decode(row) for row in np.stack(steps, axis=1)]
    exact = [d == s for d, s in zip(decoded, selfies[: len(data)], strict=True)]
    kl_dim = np.array(gaussian_kl(mu, logvar).mean(axis=0))
    return {
        "teacher_forced_token_acc": acc,
        "free_running_exact_match": float(np.mean(exact)),
        "kl_per_dim": kl_dim.round(4).tolist(),
        "active_units": int((np.array(mu).var(axis=0) > 0.01).sum()),
        "latent_dim": args.latent_dim,
    }


def evaluate_batches(bundle: Bundle, data: EncodedSet, batch_size: int = 256) -> dict:
    """Validation metrics of ``data`` with all conditions present and z = mu (deterministic):
    reconstruction CE and accuracy per token, KL per molecule, active latent units, and the
    property head's MAE of each property (in its own units)."""
    model, args = bundle.model, bundle.args
    bos = bundle.tokenizer.bos_id
    totals = {"ce": 0.0, "correct": 0.0, "tokens": 0.0, "kl": 0.0, "n": 0}
    abs_err = np.zeros(len(args.properties))
    mus = []
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        ids, valid, props, prefix = (mx.array(a) for a in take(data, rows))
        present = mx.ones(props.shape)
        eps = mx.zeros((len(rows), args.latent_dim))
        logits, mu, logvar, pred, _ = model(
            ids, valid, props, present, eps, bos, prefix_props=prefix
        )
        mask = valid.astype(mx.float32)
        ce = masked_cross_entropy(logits, ids, valid, reduction="sum")
        correct = ((logits.argmax(-1) == ids) * mask).sum()
        kl = gaussian_kl(mu, logvar).sum()
        err = mx.abs(pred - props).sum(axis=0)
        mx.eval(ce, correct, kl, err, mu)
        totals["ce"] += ce.item()
        totals["correct"] += correct.item()
        totals["tokens"] += mask.sum().item()
        totals["kl"] += kl.item()
        totals["n"] += len(rows)
        abs_err += np.array(err)
        mus.append(np.array(mu))
    mu_all = np.concatenate(mus)
    out = {
        "val_recon": totals["ce"] / totals["tokens"],
        "val_token_acc": totals["correct"] / totals["tokens"],
        "val_kl": totals["kl"] / totals["n"],
        "val_active_units": int((mu_all.var(axis=0) > 0.01).sum()),
    }
    for i, name in enumerate(args.properties):
        out[f"val_mae_{name}"] = float(abs_err[i] / totals["n"] * bundle.scales[name].std)
    return out


def latent_sensitivity(bundle: Bundle, n: int = 200, seed: int = 0) -> float:
    """Fraction of greedy molecules that change when only z is redrawn (0: z is ignored),
    every property at its training mean."""
    targets = {p: bundle.scales[p].mean for p in bundle.properties}
    greedy = make_sampler(0.0)
    runs = []
    for s in (seed, seed + 1):
        steps = [st.tokens for st in generate_step(bundle, targets, n=n, seed=s, sampler=greedy)]
        runs.append([bundle.tokenizer.decode(r) for r in np.stack(steps, axis=1)])
    return float(np.mean([a != b for a, b in zip(*runs, strict=True)]))


def moses_section(
    bundle: Bundle,
    unconditioned: list[str],
    n: int,
    seed: int = 0,
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    reference_size: int | None = MOSES_REFERENCE,
    max_ring: int | None = MAX_RING,
    finish_window: dict[str, float] | None = None,
) -> dict:
    """The MOSES suite of the ``unconditioned`` SMILES and of ``n`` molecules generated at the
    (LogP, TPSA) pairs of randomly drawn MOSES test molecules (with the MAD from those
    targets), both against ``reference_size`` MOSES test molecules (all when None);
    ``max_ring`` and ``finish_window`` as in ``core.generate.generate_step``."""
    from core.chem import describe_smiles
    from core.moses import moses_suite, moses_test_smiles, reference_statistics

    smiles = moses_test_smiles(reference_size)
    reference = reference_statistics(smiles)
    section: dict = {
        "reference": {"set": "MOSES test", "n": reference.n},
        "unconditioned": moses_suite(unconditioned, reference),
    }
    names = [p for p in ("logp", "tpsa") if p in bundle.properties]
    if not names:
        return section
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(smiles), size=n, replace=n > len(smiles))
    pairs = [d for d in (describe_smiles(smiles[i], names) for i in drawn) if d is not None]
    targets = {p: np.array([d[p] for d in pairs]) for p in names}
    table = score(
        generate(
            bundle,
            targets,
            len(pairs),
            seed=seed + 77_777,
            temperature=temperature,
            cfg_scale=cfg_scale,
            max_ring=max_ring,
            finish_window=finish_window,
        ),
        tuple(names),
    )
    suite = moses_suite(table.smiles.tolist(), reference)
    valid = (table.smiles != "").to_numpy()
    for p in names:
        deviation = np.abs(table[p].to_numpy() - targets[p])[valid]
        suite[f"mad_{p}"] = float(deviation.mean()) if len(deviation) else math.nan
    section["conditioned_test_pairs"] = suite
    return section


def checkpoint_table(bundle: Bundle) -> pd.DataFrame:
    """The table the checkpoint was trained on (``meta.data.path``), else the MOSES subset."""
    named = checkpoint_data_path(bundle.meta)
    return load_dataset(named if named is not None and named.is_file() else DEFAULT_DATA)


def heldout_conditioning(
    bundle: Bundle,
    table: pd.DataFrame,
    n: int,
    seed: int = 0,
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    train: set[str] | None = None,
    max_ring: int | None = MAX_RING,
    finish_window: dict[str, float] | None = None,
) -> dict:
    """Every property of the checkpoint targeted at once, at the values of ``n`` molecules
    drawn (``seed``) from the test split of ``table`` — combinations real molecules have:
    validity, uniqueness, novelty (against ``train``, default the table's train split), and
    per property the MAD, the MAD in σ of the training data and the hit rate, plus the joint
    hit rates. ``max_ring`` and ``finish_window`` as in ``core.generate.generate_step``.

    >>> heldout_conditioning(bundle, checkpoint_table(bundle), 100)["mad_logp"]  # doctest: +SKIP
    0.41
    """
    names = bundle.properties
    test = table[table.split == "test"]
    if test.empty:
        test = table
    drawn = test.iloc[np.random.default_rng(seed).choice(len(test), size=n, replace=n > len(test))]
    targets = {p: drawn[p].to_numpy(dtype=np.float64) for p in names}
    selfies = generate(
        bundle, targets, n, seed=seed + 55_555, temperature=temperature, cfg_scale=cfg_scale,
        max_ring=max_ring, finish_window=finish_window,
    )  # fmt: skip
    scored = score(selfies, csv_properties(names))
    out = target_metrics(
        scored, targets, hit_windows(bundle.scales), hit_windows(bundle.scales, True)
    )
    out["targets"] = {
        "drawn_from": "test split",
        "n_molecules": int(len(drawn)),
        "properties": names,
    }
    if len(names) == 1:
        out["hit_joint"] = out[f"hit_{names[0]}"]
    train = set(table.loc[table.split == "train", "smiles"]) if train is None else train
    valid = set(scored.smiles[scored.smiles != ""])
    out["novelty"] = len(valid - train) / max(len(valid), 1)
    for p in names:
        out[f"mad_sigma_{p}"] = out[f"mad_{p}"] / bundle.scales[p].std
    return out


def _overall(
    rows: list[dict], generated: list[pd.DataFrame], reference: NoveltyReference, seed: int
) -> dict:
    """Validity and uniqueness averaged over the targets' rows; novelty against ``reference``
    and internal diversity (of at most 2,000) of every valid molecule ``generated``."""
    from core.chem import tanimoto_diversity

    valid = pd.concat(generated)
    unique = set(valid.smiles[valid.smiles != ""])
    rng = np.random.default_rng(seed)
    sample = rng.choice(sorted(unique), size=min(2000, len(unique)), replace=False)
    return {
        "validity": float(np.mean([r["validity"] for r in rows] or [math.nan])),
        "uniqueness": float(np.mean([r["uniqueness"] for r in rows] or [math.nan])),
        "novelty": len(unique - reference.smiles) / max(len(unique), 1),
        "internal_diversity": tanimoto_diversity(list(sample)),
    }


def _reconstructions(bundle: Bundle, table: pd.DataFrame, n: int) -> dict:
    """``reconstruction`` of the first ``n`` (at most 500: greedy decoding is costly) test
    molecules of ``table``."""
    test = table[table.split == "test"].head(min(500, n))
    if test.empty:
        test = table.head(min(500, n))
    scales = bundle.scales
    props = np.stack([scales[p].normalise(test[p].to_numpy()) for p in bundle.properties], 1)
    selfies = [as_trained(bundle.meta, s) for s in test.selfies]  # the subset is canonical
    return reconstruction(bundle, selfies, props)


def _unconditional(free: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> dict:
    """Validity and each property's mean and SD of the unconditional samples ``free``, beside
    the training split's of ``table``."""
    out = {"n": len(free), "validity": float((free.smiles != "").mean())}
    train = table[table.split == "train"]
    for p in names:
        out[f"{p}_mean"] = float(free[p].mean())
        out[f"{p}_std"] = float(free[p].std())
        out[f"data_{p}_mean"] = float(train[p].mean())
        out[f"data_{p}_std"] = float(train[p].std())
    return out


def evaluate(
    bundle: Bundle,
    n: int = 1000,
    seed: int = 0,
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    progress: Callable[[float, str], None] | None = None,
    moses_reference: int | None = MOSES_REFERENCE,
    max_ring: int | None = MAX_RING,
    on_target: bool = False,
) -> dict:
    """All metrics for ``bundle``; ``progress(fraction, message)`` is called as work proceeds;
    ``max_ring`` as in ``core.generate.generate_step`` (None: rings of any size); ``on_target``
    generates every conditioned molecule with the hit windows as ``finish_window`` (a decoding
    aid that knows the targets: its figures are reported apart from the raw ones).

    The MOSES suite compares against ``moses_reference`` MOSES test molecules (default
    ``MOSES_REFERENCE``, 5,000, drawn with a fixed seed; None: the whole test set).
    """
    started = time.time()
    report = progress or (lambda f, m: None)
    names = bundle.properties
    columns = csv_properties(names)
    windows, strict = hit_windows(bundle.scales), hit_windows(bundle.scales, strict=True)
    finish = windows if on_target else None
    known = reference_grid(names, bundle.scales)
    steps = len(known) + 5
    tables = []
    for i, targets in enumerate(known):
        report(i / steps, f"generating at {targets}")
        seed_i = seed + 1000 * i
        selfies = generate(bundle, targets, n, seed=seed_i, temperature=temperature,
                           cfg_scale=cfg_scale, max_ring=max_ring,
                           finish_window=finish)  # fmt: skip
        tables.append(score(selfies, columns))
    rows = [target_metrics(t, g, windows, strict) for t, g in zip(tables, known, strict=True)]
    report(len(known) / steps, "unconditional samples")
    free = generate(bundle, {}, n, seed=seed + 99_999, temperature=temperature, max_ring=max_ring)
    free = score(free, columns)
    report((len(known) + 1) / steps, "novelty and diversity")
    reference = novelty_reference(bundle)
    overall = _overall(rows, [*tables, free], reference, seed)
    table = checkpoint_table(bundle)
    report((len(known) + 2) / steps, "every property at held-out molecules' values")
    heldout = heldout_conditioning(
        bundle, table, n, seed, temperature, cfg_scale, reference.smiles, max_ring, finish
    )
    report((len(known) + 3) / steps, "MOSES suite")
    moses = moses_section(
        bundle, free.smiles.tolist(), n, seed, temperature, cfg_scale, moses_reference,
        max_ring, finish,
    )  # fmt: skip
    report((len(known) + 4) / steps, "reconstruction and latent use")
    result = {
        "checkpoint": str(bundle.path),
        "properties": names,
        "grid": {p: list(grid_values(p, bundle.scales[p])) for p in names},
        "hit_windows": windows,
        "strict_hit_windows": strict,
        "n_per_target": n,
        "temperature": temperature,
        "cfg_scale": cfg_scale,
        "max_ring": max_ring,
        "finish_on_target": on_target,
        "novelty_vs": reference.vs,
        "novelty_note": reference.note,
        "overall": overall,
        "summary": summarise(rows, names),
        "shuffled": shuffled(rows, tables, names, windows, strict),
        "targets": rows,
        HELDOUT: heldout,
        "unconditional": _unconditional(free, table, names),
        "reconstruction": _reconstructions(bundle, table, n),
        "latent_sensitivity": latent_sensitivity(bundle, n=min(n, 200), seed=seed),
        "moses": moses,
        "seconds": round(time.time() - started, 1),
    }
    report(1.0, "done")
    return result


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not 0 < args.n <= MAX_SAMPLES:
        raise GenerationError(f"--n must be between 1 and {MAX_SAMPLES}, got {args.n}")
    if args.max_ring < 0:
        raise GenerationError(f"--max-ring must be 0 or more, got {args.max_ring}")
    if args.moses_reference < 0:
        raise GenerationError(f"--moses-reference must be 0 or more, got {args.moses_reference}")
    bundle = load_checkpoint(args.checkpoint)
    if args.on_target and not bundle.args.feedback:
        raise GenerationError("--on-target needs a closed-loop (feedback) model")
    with tqdm(total=100, desc="evaluating", unit="%", file=sys.stderr) as bar:

        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(round(fraction * 100) - bar.n)

        result = evaluate(
            bundle, args.n, args.seed, args.temperature, args.cfg_scale, progress,
            moses_reference=args.moses_reference or None, max_ring=args.max_ring or None,
            on_target=args.on_target,
        )  # fmt: skip
    out = Path(args.out) if args.out else Path(args.checkpoint) / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    s, o, h = result["summary"], result["overall"], result[HELDOUT]
    m = result["moses"]["unconditioned"]
    mads = "  ".join(f"{p} MAD {s[f'{p}_mad']:.3g}" for p in bundle.properties)
    heldout = "  ".join(f"{p} {h[f'mad_{p}']:.3g}" for p in bundle.properties)
    print(
        f"validity {o['validity']:.3f}  uniqueness {o['uniqueness']:.3f}  novelty "
        f"{o['novelty']:.3f} ({result['novelty_note']})  diversity "
        f"{o['internal_diversity']:.3f}\n"
        f"{mads}  joint hit {s['joint_hit']:.3f} (strict {s['joint_hit_strict']:.3f})\n"
        f"all properties at held-out molecules' values: MAD {heldout}  joint hit "
        f"{h.get('hit_joint', math.nan):.3f}\n"
        f"MOSES (unconditioned) SNN/Test {m['SNN/Test']:.3f}  Frag/Test {m['Frag/Test']:.3f}  "
        f"Scaf/Test {m['Scaf/Test']:.3f}  IntDiv1 {m['IntDiv1']:.3f}  Filters "
        f"{m['Filters']:.3f}  -> {out}"
    )
    return 0


if __name__ == "__main__":
    from core.cli import OneLineParser, run_cli

    parser = OneLineParser(description="Evaluate a checkpoint on the reference grid.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder")
    parser.add_argument("--n", type=int, default=1000, help="samples per target")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance")
    parser.add_argument(
        "--moses-reference",
        type=int,
        default=MOSES_REFERENCE,
        help=f"MOSES test molecules for the MOSES suite (default {MOSES_REFERENCE:,}; 0: all)",
    )
    parser.add_argument(
        "--max-ring", type=int, default=MAX_RING,
        help=f"largest ring a closed-loop model may close (default {MAX_RING}; 0: any size)",
    )  # fmt: skip
    parser.add_argument(
        "--on-target", action="store_true",
        help="redraw a symbol that would end a molecule outside the hit windows (a decoding "
        "aid: report apart from the raw figures)",
    )  # fmt: skip
    parser.add_argument("--out", help="JSON file (default: CHECKPOINT/evaluation.json)")
    run_cli(main, parser)
