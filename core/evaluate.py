"""Evaluation: ``python -m core.evaluate --checkpoint DIR [--n N] [--out FILE.json]``

Validity, uniqueness, novelty and diversity; conditioning on the reference grid (MAD, SD,
hit rates, and the same against shuffled targets); unconditional property statistics;
reconstruction (teacher-forced vs free-running); latent use (KL per dim, active units); the
MOSES suite (``core.moses``) of unconditional samples and of samples conditioned on the
(LogP, TPSA) pairs of MOSES test molecules, against the MOSES test set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np
import pandas as pd

from core.batches import encode_set, take
from core.checkpoint import Bundle, load_checkpoint
from core.generate import GenerationError, generate, generate_step, make_sampler, score

LOGP_GRID = (1.0, 2.0, 3.0)
TPSA_GRID = (40.0, 60.0, 80.0, 100.0)
HIT = {"logp": 0.5, "tpsa": 10.0}
STRICT_HIT = {"logp": 0.4, "tpsa": 8.0}
MAX_SAMPLES = 20_000
MOSES_REFERENCE = 5_000  # MOSES test molecules the suite compares against (None: all 176,074)


def reference_grid() -> list[dict[str, float | None]]:
    """LogP alone, TPSA alone, then every (LogP, TPSA) pair."""
    grid: list[dict[str, float | None]] = [{"logp": v} for v in LOGP_GRID]
    grid += [{"tpsa": v} for v in TPSA_GRID]
    grid += [{"logp": a, "tpsa": b} for a in LOGP_GRID for b in TPSA_GRID]
    return grid


def target_metrics(table: pd.DataFrame, targets: dict[str, float | None]) -> dict:
    """MAD, SD and hit rates of the valid molecules in ``table`` against ``targets``."""
    valid = table[table.smiles != ""]
    out: dict = {
        "targets": targets,
        "n": len(table),
        "validity": len(valid) / max(len(table), 1),
        "uniqueness": valid.smiles.nunique() / max(len(valid), 1),
    }
    hits, strict = np.ones(len(valid), bool), np.ones(len(valid), bool)
    for name, target in targets.items():
        dev = np.abs(valid[name].to_numpy() - target)
        out[f"mad_{name}"] = float(dev.mean()) if len(dev) else math.nan
        out[f"sd_{name}"] = float(dev.std()) if len(dev) else math.nan
        out[f"hit_{name}"] = float((dev <= HIT[name]).mean()) if len(dev) else 0.0
        hits &= dev <= HIT[name]
        strict &= dev <= STRICT_HIT[name]
    if len(targets) > 1:
        out["hit_joint"] = float(hits.mean()) if len(valid) else 0.0
        out["hit_joint_strict"] = float(strict.mean()) if len(valid) else 0.0
    return out


def summarise(rows: list[dict]) -> dict:
    """The headline numbers: LogP MAD (LogP-only), TPSA MAD (TPSA-only), joint hit rates."""

    def mean(key: str, kind: set[str]) -> float:
        vals = [r[key] for r in rows if set(r["targets"]) == kind and key in r]
        return float(np.mean(vals)) if vals else math.nan

    return {
        "logp_mad": mean("mad_logp", {"logp"}),
        "logp_sd": mean("sd_logp", {"logp"}),
        "tpsa_mad": mean("mad_tpsa", {"tpsa"}),
        "tpsa_sd": mean("sd_tpsa", {"tpsa"}),
        "joint_hit": mean("hit_joint", {"logp", "tpsa"}),
        "joint_hit_strict": mean("hit_joint_strict", {"logp", "tpsa"}),
    }


def shuffled(rows: list[dict], tables: list[pd.DataFrame]) -> dict:
    """Deviations of each target's molecules from another target of the same kind: if the
    condition is used, these are far worse than the real MADs."""
    out = []
    for kind in ({"logp"}, {"tpsa"}, {"logp", "tpsa"}):
        idx = [i for i, r in enumerate(rows) if set(r["targets"]) == kind]
        for j, i in enumerate(idx):
            other = rows[idx[(j + len(idx) // 2) % len(idx)]]["targets"]
            out.append(target_metrics(tables[i], other))
    return summarise(out)


def training_smiles(bundle: Bundle) -> set[str]:
    """Canonical SMILES of the full MOSES training set when prepared, else the model's data."""
    from core.data import DEFAULT_DATA, FULL_DATA, load_dataset

    for path in (FULL_DATA, Path(bundle.meta.get("data", {}).get("path", "")), DEFAULT_DATA):
        if path.is_file():
            table = load_dataset(path)
            return set(table.loc[table.split == "train", "smiles"])
    return set()


def reconstruction(bundle: Bundle, selfies: list[str], props: np.ndarray) -> dict:
    """Teacher-forced token accuracy vs greedy free-running exact match, with z = mu."""
    from core.train import prefix_arrays

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
    kl_dim = np.array((0.5 * (mu * mu + mx.exp(logvar) - 1 - logvar)).mean(axis=0))
    return {
        "teacher_forced_token_acc": acc,
        "free_running_exact_match": float(np.mean(exact)),
        "kl_per_dim": kl_dim.round(4).tolist(),
        "active_units": int((np.array(mu).var(axis=0) > 0.01).sum()),
        "latent_dim": args.latent_dim,
    }


def latent_sensitivity(bundle: Bundle, n: int = 200, seed: int = 0) -> float:
    """Fraction of greedy molecules that change when only z is redrawn (0: z is ignored)."""
    targets = {"logp": 2.5, "tpsa": 60.0}
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
) -> dict:
    """The MOSES suite of the ``unconditioned`` SMILES and of ``n`` molecules generated at the
    (LogP, TPSA) pairs of randomly drawn MOSES test molecules (with the MAD from those
    targets), both against ``reference_size`` MOSES test molecules (all when None)."""
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


def evaluate(
    bundle: Bundle,
    n: int = 1000,
    seed: int = 0,
    temperature: float = 1.0,
    cfg_scale: float = 1.0,
    progress: Callable[[float, str], None] | None = None,
    moses_reference: int | None = MOSES_REFERENCE,
) -> dict:
    """All metrics for ``bundle``; ``progress(fraction, message)`` is called as work proceeds.

    The MOSES suite compares against ``moses_reference`` MOSES test molecules (default
    ``MOSES_REFERENCE``, 5,000, drawn with a fixed seed; None: the whole test set).
    """
    from core.chem import tanimoto_diversity
    from core.data import DEFAULT_DATA, load_dataset

    started = time.time()
    report = progress or (lambda f, m: None)
    grid = reference_grid()
    known = [t for t in grid if set(t) <= set(bundle.properties)]
    rows, tables = [], []
    for i, targets in enumerate(known):
        report(i / (len(known) + 4), f"generating at {targets}")
        table = score(
            generate(bundle, targets, n, seed=seed + 1000 * i, temperature=temperature,
                     cfg_scale=cfg_scale)
        )  # fmt: skip
        rows.append(target_metrics(table, targets))
        tables.append(table)
    report(len(known) / (len(known) + 4), "unconditional samples")
    free = score(generate(bundle, {}, n, seed=seed + 99_999, temperature=temperature))
    all_valid = pd.concat([*tables, free])
    all_valid = all_valid[all_valid.smiles != ""]
    report((len(known) + 1) / (len(known) + 4), "novelty and diversity")
    train = training_smiles(bundle)
    unique = set(all_valid.smiles)
    rng = np.random.default_rng(seed)
    sample = rng.choice(sorted(unique), size=min(2000, len(unique)), replace=False)
    report((len(known) + 2) / (len(known) + 4), "MOSES suite")
    moses = moses_section(
        bundle, free.smiles.tolist(), n, seed, temperature, cfg_scale, moses_reference
    )
    data_path = Path(bundle.meta.get("data", {}).get("path", ""))
    table = load_dataset(data_path if data_path.is_file() else DEFAULT_DATA)
    n_recon = min(500, n)  # greedy reconstructions are costly; at most 500
    test = table[table.split == "test"].head(n_recon)
    if test.empty:
        test = table.head(n_recon)
    report((len(known) + 3) / (len(known) + 4), "reconstruction and latent use")
    props = np.stack(
        [bundle.scales[p].normalise(test[p].to_numpy()) for p in bundle.properties], axis=1
    )
    unconditional = {"n": len(free), "validity": float((free.smiles != "").mean())}
    for p in bundle.properties:
        unconditional[f"{p}_mean"] = float(free[p].mean())
        unconditional[f"{p}_std"] = float(free[p].std())
        unconditional[f"data_{p}_mean"] = float(table.loc[table.split == "train", p].mean())
        unconditional[f"data_{p}_std"] = float(table.loc[table.split == "train", p].std())
    result = {
        "checkpoint": str(bundle.path),
        "n_per_target": n,
        "temperature": temperature,
        "cfg_scale": cfg_scale,
        "overall": {
            "validity": float(np.mean([r["validity"] for r in rows] or [math.nan])),
            "uniqueness": float(np.mean([r["uniqueness"] for r in rows] or [math.nan])),
            "novelty": len(unique - train) / max(len(unique), 1),
            "internal_diversity": tanimoto_diversity(list(sample)),
        },
        "summary": summarise(rows),
        "shuffled": shuffled(rows, tables),
        "targets": rows,
        "unconditional": unconditional,
        "reconstruction": reconstruction(bundle, test.selfies.tolist(), props),
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
    if args.moses_reference < 0:
        raise GenerationError(f"--moses-reference must be 0 or more, got {args.moses_reference}")
    bundle = load_checkpoint(args.checkpoint)
    with tqdm(total=100, desc="evaluating", unit="%", file=sys.stderr) as bar:

        def progress(fraction: float, message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(round(fraction * 100) - bar.n)

        result = evaluate(
            bundle, args.n, args.seed, args.temperature, args.cfg_scale, progress,
            moses_reference=args.moses_reference or None,
        )  # fmt: skip
    out = Path(args.out) if args.out else Path(args.checkpoint) / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    s, o = result["summary"], result["overall"]
    m = result["moses"]["unconditioned"]
    print(
        f"validity {o['validity']:.3f}  uniqueness {o['uniqueness']:.3f}  novelty "
        f"{o['novelty']:.3f}  diversity {o['internal_diversity']:.3f}\n"
        f"LogP MAD {s['logp_mad']:.3f}  TPSA MAD {s['tpsa_mad']:.2f}  joint hit "
        f"{s['joint_hit']:.3f} (strict {s['joint_hit_strict']:.3f})\n"
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
    parser.add_argument("--out", help="JSON file (default: CHECKPOINT/evaluation.json)")
    run_cli(main, parser)
