"""Benchmark: MolScope's MLX model against the same model in PyTorch, on this CPU, in one run.

    python -m bench.run            # full run (< 10 minutes): bench/results/latest.json + a table
    python -m bench.run --quick    # tiny model, 2 steps each: checks the harness end to end

Training throughput (compiled MLX step vs a PyTorch mirror, alternating A/B), sgemm speed and
model FLOP utilisation, decoding latency with and without the KV cache and compilation, batch
generation (open loop, and closed loop with the share of its time spent in RDKit), peak memory
of a training and of a dashboard process, and the levers (mx.compile, the BLAS, the activation).
PyTorch is needed only here: ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads otherwise spin-wait between parallel regions: measured here it
# halved the mirror's training and decoding rates (bench/results/latest_omp_active.json), and
# the comparison must be with PyTorch at its best. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib.metadata
import importlib.util
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import RESULTS
from bench.decode import generate_batch, generate_closed_loop, generate_two_batches
from bench.workload import (
    CHECKPOINT_ENV,
    ROOT,
    Workload,
    alternate,
    build_workload,
    closed_loop_bundle,
    mlx_train_step,
    non_embedding_parameters,
    time_call,
)
from core.blas import blas_name, sgemm_gflops
from core.checkpoint import save_checkpoint
from core.model import count_parameters

INSTALL_HINT = ".venv/bin/pip install -r bench/requirements.txt"
TORCH_THREADS = 2
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TARGETS = {
    "train_ratio": ">= 1.0",
    "mfu": ">= 0.35",
    "kv_speedup": ">= 5",
    "decode_ms_per_token": "<= 2",
    "gen_molecules_per_s": ">= PyTorch",
    "peak_rss_mb_app": "<= 1536",
}
CLOSED_LOOP_TARGETS = {"logp": 2.5, "tpsa": 60.0}  # the middle of core.evaluate's grid


class BenchError(RuntimeError):
    """The benchmark cannot run (missing PyTorch, a failed subprocess...)."""


@dataclass(frozen=True)
class Plan:
    """How much of each measurement to take. Past its share of the time budget a stage keeps
    only its minimum, so that a run on a busy machine still ends in time."""

    budget_s: float  # seconds for the whole run
    warmup: int  # training rounds dropped (compilation, allocator warm-up)
    steps: int  # training rounds timed (the median is reported)...
    min_steps: int  # ...at least this many; also the memory subprocess's minimum
    decode_warmup: int  # batch-1 decoding rounds dropped
    decode_length: int  # tokens per batch-1 decoding run
    decode_repeats: int  # batch-1 runs timed per variant...
    decode_min: int  # ...at least (PyTorch)
    latency_rounds: int  # MLX latency worker pairs (default BLAS, OpenBLAS alone)
    gen_warmup: int  # generation rounds dropped (nothing compiles there: 0 saves a minute)
    gen_molecules: int  # molecules in the generation batch
    gen_repeats: int  # generation batches timed per framework (at least one)
    rss_steps: int  # training steps of the peak-memory subprocess
    reference_steps: int  # training steps on the reference BLAS (slow; at least 2)
    one_thread_steps: int  # training steps with OpenBLAS on one thread (at least 2)
    rank_steps: int  # timed data-parallel steps (2 pinned ranks)
    child_timeout: float  # seconds before a subprocess is killed
    settle: float  # seconds of rest before each timed call (see workload.alternate)
    sgemm_n: int  # size of the sgemm measured


FULL = Plan(
    budget_s=510, warmup=2, steps=7, min_steps=5,
    decode_warmup=1, decode_length=40, decode_repeats=7, decode_min=5, latency_rounds=2,
    gen_warmup=0, gen_molecules=1000, gen_repeats=2,
    rss_steps=20, reference_steps=3, one_thread_steps=5, rank_steps=5,
    child_timeout=300, settle=0.15, sgemm_n=1024,
)  # fmt: skip
QUICK = Plan(
    budget_s=45, warmup=1, steps=2, min_steps=2,
    decode_warmup=0, decode_length=8, decode_repeats=2, decode_min=2, latency_rounds=1,
    gen_warmup=0, gen_molecules=16, gen_repeats=1,
    rss_steps=2, reference_steps=2, one_thread_steps=2, rank_steps=2,
    child_timeout=60, settle=0.0, sgemm_n=256,
)  # fmt: skip
LEVER_MIN_STEPS = 2


class Budget:
    """The run's deadline, shared out as it goes: a stage may use a fraction of what is left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def share(self, fraction: float) -> float:
        """A deadline (perf_counter) ``fraction`` of the remaining time from now."""
        now = time.perf_counter()
        return now + fraction * max(self.end - now, 0.0)

    def seconds(self, fraction: float) -> float:
        """``fraction`` of the remaining time, in seconds."""
        return self.share(fraction) - time.perf_counter()


_START = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"bench [{time.perf_counter() - _START:5.1f} s]: {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mlx": importlib.metadata.version("mlx"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": blas_name(),
        "load_avg_start": round(os.getloadavg()[0], 2),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


def torch_sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """PyTorch's float32 matmul speed for an ``n``-cubed product (as core.blas.sgemm_gflops)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    seconds = time_call(lambda: [a @ b for _ in range(repeats)]) / repeats
    return 2 * n**3 / seconds / 1e9


def measure_training(work: Workload, plan: Plan, deadline: float) -> dict:
    """Tokens/s of the compiled MLX step, PyTorch, and the MLX levers, in alternating rounds."""
    import torch

    from bench import torch_model as tm

    model, mlx_step = mlx_train_step(work)
    _, eager_step = mlx_train_step(work, compiled=False)
    other = "gelu" if work.args.activation == "relu" else "relu"
    _, other_step = mlx_train_step(work, activation=other)
    mirror = tm.Model(work.args)
    tm.load_mlx_weights(mirror, model)  # the same initial weights
    mirror.train()
    params, torch_params = count_parameters(model), tm.count_parameters(mirror)
    if params != torch_params:
        raise BenchError(f"the PyTorch mirror has {torch_params} parameters, MLX {params}")
    torch_step = tm.make_train_step(mirror, work.targs, work.bundle.tokenizer.bos_id)
    ids = torch.from_numpy(work.ids).long()
    valid, props = torch.from_numpy(work.valid), torch.from_numpy(work.props)
    prefix = torch.from_numpy(work.prefix)

    variants = {
        "mlx": mlx_step,
        "torch": lambda: torch_step(ids, valid, props, prefix, work.targs.beta),
        "mlx_eager": eager_step,
        f"mlx_{other}": other_step,
    }
    rounds = f"{plan.warmup} + {plan.min_steps}..{plan.steps}"
    log(f"training: {rounds} rounds of {', '.join(variants)}")
    times = alternate(variants, plan.warmup, plan.steps, plan.settle, plan.min_steps, deadline)
    tok_s = {name: work.n_tokens / statistics.median(t) for name, t in times.items()}
    return {
        "params": params,
        "params_non_embedding": non_embedding_parameters(model),
        "tok_s": tok_s,
        "step_seconds": {name: [round(s, 4) for s in t] for name, t in times.items()},
        "other_activation": other,
    }


def measure_latency(folder: Path, plan: Plan, deadline: float) -> dict:
    """Batch-1 ms/token in MLX, with the KV cache (compiled and not) and with full
    recomputation (compiled), timed in ``bench.workers decode`` processes (what a dashboard
    process holds; PyTorch's thread pools and this run's tables stay out of them). Each round
    runs one process with the default BLAS (OpenBLAS behind the sgemv shim where it was built)
    and one with ``MOLSCOPE_BLAS=openblas``: the shim lever, side by side."""
    argv = ["decode", "--checkpoint", str(folder), "--length", str(plan.decode_length)]
    argv += ["--repeats", str(plan.decode_repeats), "--warmup", str(plan.decode_warmup)]
    argv += ["--settle", str(plan.settle)]
    setups = {"default": {}, "openblas": {"MOLSCOPE_BLAS": "openblas"}}
    seconds: dict[str, dict[str, list[float]]] = {name: {} for name in setups}
    blas: dict[str, str] = {}
    for round_ in range(plan.latency_rounds):
        if round_ > 0 and time.perf_counter() > deadline:
            break
        for name, env in setups.items():
            answer = run_child(argv, plan.child_timeout, env)
            blas[name] = answer["blas"]
            for variant, times in answer["seconds"].items():
                seconds[name].setdefault(variant, []).extend(times)
    ms = {
        name: {v: statistics.median(t) / plan.decode_length * 1e3 for v, t in runs.items()}
        for name, runs in seconds.items()
    }
    return {"ms": ms, "runs": {n: len(r["cache"]) for n, r in seconds.items()}, "blas": blas}


def measure_decoding(work: Workload, plan: Plan, budget: Budget, folder: Path) -> dict:
    """Batch-1 latency (MLX in worker processes, PyTorch here) and batch generation (MLX and
    PyTorch alternating, here)."""
    import torch

    from bench import torch_model as tm

    bundle, tok, length = work.bundle, work.bundle.tokenizer, plan.decode_length
    mirror = tm.Model(work.args)
    tm.load_mlx_weights(mirror, bundle.model)
    mirror.eval()
    special = dict(bos=tok.bos_id, eos=tok.eos_id, pad=tok.pad_id)
    banned = [tok.pad_id, tok.bos_id, tok.unk_id]

    def torch_tokens(n: int, max_tokens: int | None = None, allow_eos: bool = True, seed=0):
        feedback = tm.prefix_reader(bundle, n) if work.args.feedback else None
        return tm.generate_tokens(
            mirror, n, **special, banned=banned, max_tokens=max_tokens,
            allow_eos=allow_eos, seed=seed, feedback=feedback,
        )  # fmt: skip

    rounds = f"{plan.latency_rounds} round(s) of {plan.decode_repeats} runs"
    log(f"decoding: {rounds} of {length} tokens at batch 1 in MLX worker processes")
    latency = measure_latency(folder, plan, budget.share(0.2))
    log(f"decoding: {plan.decode_min}..{plan.decode_repeats} runs at batch 1 in PyTorch")
    torch_times = alternate(
        {"torch": lambda: torch_tokens(1, length, allow_eos=False)},
        plan.decode_warmup,
        plan.decode_repeats,
        plan.settle,
        plan.decode_min,
        budget.share(0.1),
    )
    torch_ms = statistics.median(torch_times["torch"]) / length * 1e3
    ms = {**latency["ms"]["default"], "torch": torch_ms}

    n = plan.gen_molecules
    log(f"generation: 1..{plan.gen_repeats} batches of {n} molecules in MLX and PyTorch")
    steps: dict[str, list[int]] = {"mlx": [], "torch": []}
    seeds = iter(range(1_000_000))

    def mlx_batch() -> None:
        steps["mlx"].append(generate_batch(bundle, n, seed=next(seeds)))

    def torch_batch() -> None:
        with torch.inference_mode():
            steps["torch"].append(torch_tokens(n, seed=next(seeds)).shape[1])

    batches = alternate(
        {"mlx": mlx_batch, "torch": torch_batch},
        plan.gen_warmup,
        plan.gen_repeats,
        plan.settle,
        1,
        budget.share(0.35),
    )
    return {
        "ms_per_token": ms,
        "latency": latency,
        "molecules_per_s": {name: n / statistics.median(t) for name, t in batches.items()},
        "gen_steps": {name: s[plan.gen_warmup :] for name, s in steps.items()},
    }


def measure_closed_loop(work: Workload, plan: Plan, deadline: float) -> dict:
    """Molecules/s of a closed-loop batch at ``CLOSED_LOOP_TARGETS`` (feedback on: after every
    token the properties of each molecule so far, with RDKit) and the share of that time in
    ``ClosedLoop.push``; the same model with feedback off beside it, in turns. An open-loop
    checkpoint is measured through an untrained closed-loop copy of its architecture."""
    bundle, source = closed_loop_bundle(work)
    targets = {p: v for p, v in CLOSED_LOOP_TARGETS.items() if p in bundle.properties}
    n = plan.gen_molecules
    log(f"closed-loop generation: 1..{plan.gen_repeats} batches of {n}, feedback on and off")
    runs: dict[str, list[tuple[int, float]]] = {"on": [], "off": []}
    seeds = iter(range(1_000_000))

    def batch(name: str) -> None:
        runs[name].append(generate_closed_loop(bundle, n, targets, next(seeds), name == "on"))

    times = alternate(
        {
            "on": lambda: batch("on"),
            "off": lambda: batch("off"),
            "pairs": lambda: generate_two_batches(bundle, n, targets, next(seeds)),
        },
        plan.gen_warmup,
        plan.gen_repeats,
        plan.settle,
        1,
        deadline,
    )
    timed = {name: r[plan.gen_warmup :] for name, r in runs.items()}
    rdkit_seconds = sum(s for _, s in timed["on"])
    return {
        "molecules": n,
        "targets": targets,
        "source": source,
        "molecules_per_s": n / statistics.median(times["on"]),
        "rdkit_share": rdkit_seconds / sum(times["on"]),
        "molecules_per_s_feedback_off": n / statistics.median(times["off"]),
        "molecules_per_s_two_batches": n / statistics.median(times["pairs"]),
        "gen_steps": {name: [steps for steps, _ in r] for name, r in timed.items()},
        "note": "one batch at temperature 1 through core.generate.generate_step; rdkit_share: "
        "time in core.closed_loop.ClosedLoop.push (SELFIES decoding and RDKit of every "
        "molecule so far, ring and finishing checks; its SMILES cache lives for the process, as "
        "in a dashboard), of the feedback-on batches; feedback off: the same model reads the "
        "empty molecule throughout (rings and finishing still checked); two batches: the same "
        "n through core.generate.generate as two batches of n/2 at once (core.pairs)",
    }


def run_child(argv: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``python -m bench.workers ARGV`` and return its JSON answer."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.workers", *argv],
            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"bench.workers {argv[0]} took longer than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        raise BenchError(f"bench.workers {argv[0]} failed ({proc.returncode}): {lines[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def measure_ranks(plan: Plan, quick: bool, n: int = 2) -> dict:
    """Tokens/s of the training step split over ``n`` data-parallel ranks on this machine,
    the layout of the training recipe (bench/quality_train.sh): one process per core, each
    pinned with one OpenBLAS thread, gradients averaged by MLX's ring backend over
    localhost. Every rank times the same synchronised steps; the slowest median counts."""
    with tempfile.TemporaryDirectory() as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps([f"127.0.0.1:{port}" for port in free_ports(n)]))
        env = {**os.environ, "MLX_HOSTFILE": str(hostfile), "OPENBLAS_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "bench.workers", "rank", "--steps", str(plan.rank_steps)]
        argv += ["--quick"] if quick else []
        procs = [
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**env, "MLX_RANK": str(r)},
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for r in range(n)
        ]
        try:
            outs = [proc.communicate(timeout=plan.child_timeout) for proc in procs]
        except subprocess.TimeoutExpired as exc:
            for proc in procs:
                proc.kill()
            raise BenchError(f"{n} data-parallel ranks took longer than {exc.timeout} s") from exc
    for proc, (_, err) in zip(procs, outs, strict=True):
        if proc.returncode != 0:
            lines = err.strip().splitlines() or ["no output"]
            raise BenchError(f"bench.workers rank failed ({proc.returncode}): {lines[-1]}")
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    return {
        "tok_s": min(a["tok_s"] for a in answers),
        "ranks": n,
        "steps": answers[0]["steps"],
    }


def measure_processes(
    work: Workload, plan: Plan, quick: bool, budget: Budget, folder: Path
) -> dict:
    """Peak RSS of a training and of a dashboard process; the BLAS levers: each in its own
    subprocess, one after the other."""
    remaining = budget.seconds(1.0)

    def train_argv(steps: int, min_steps: int, fraction: float) -> list[str]:
        argv = ["train", "--steps", str(steps), "--min-steps", str(min_steps)]
        return argv + ["--seconds", f"{fraction * remaining:.1f}"] + (["--quick"] if quick else [])

    jobs = {
        f"peak memory: up to {plan.rss_steps} training steps (OpenBLAS)": (
            train_argv(plan.rss_steps, plan.min_steps, 0.3), {}
        ),
        f"reference BLAS: up to {plan.reference_steps} training steps": (
            train_argv(plan.reference_steps, LEVER_MIN_STEPS, 0.35),
            {"MOLSCOPE_BLAS": "reference"},
        ),
        f"OpenBLAS on one thread: up to {plan.one_thread_steps} training steps": (
            train_argv(plan.one_thread_steps, LEVER_MIN_STEPS, 0.15),
            {"OPENBLAS_NUM_THREADS": "1"},
        ),
        "peak memory: a dashboard process (streamlit, checkpoint, data, generation)": (
            ["app", "--checkpoint", str(folder)], {}
        ),
    }  # fmt: skip
    answers = []
    for title, (argv, env) in jobs.items():
        log(f"subprocess: {title}")
        answers.append(run_child(argv, plan.child_timeout, env))
    fast, reference, one_thread, app = answers
    ranks = None
    if (os.cpu_count() or 1) >= 2:
        log(f"subprocesses: 2 data-parallel ranks, {plan.rank_steps} training steps")
        ranks = measure_ranks(plan, quick)
    return {
        "ranks": ranks,
        "peak_rss_mb_train": fast["peak_rss_mb"],
        "peak_rss_mb_app": app["peak_rss_mb"],
        "blas_lever": {
            "tok_s_openblas": fast["tok_s"],
            "tok_s_reference": reference["tok_s"],
            "speedup": fast["tok_s"] / reference["tok_s"],
            "sgemm_gflops_openblas": fast["sgemm_gflops"],
            "sgemm_gflops_reference": reference["sgemm_gflops"],
            "steps": {"openblas": fast["steps"], "reference": reference["steps"]},
            "note": "separate subprocesses, one after the other (the BLAS is chosen at import)",
        },
        "blas_threads_lever": {
            "tok_s_default_threads": fast["tok_s"],
            "tok_s_one_thread": one_thread["tok_s"],
            "default_over_one": fast["tok_s"] / one_thread["tok_s"],
            "steps": {"default": fast["steps"], "one_thread": one_thread["steps"]},
            "note": "OPENBLAS_NUM_THREADS=1 in a subprocess; OpenBLAS defaults to all cores",
        },
    }


def benchmark(quick: bool, minutes: float | None = None) -> dict:
    """Every measurement, as the JSON document written to bench/results."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    budget = Budget(plan.budget_s if minutes is None else minutes * 60)
    machine = machine_info()
    work = build_workload(quick)
    log(
        f"model from {work.source}; batch {work.ids.shape[0]} x {work.ids.shape[1]} "
        f"({work.n_tokens} real tokens)"
    )
    n = plan.sgemm_n
    log(f"sgemm: MLX and PyTorch, {n}^3")
    sgemm_runs = {"mlx": [sgemm_gflops(n=n)], "torch": [torch_sgemm_gflops(n=n)]}
    train = measure_training(work, plan, budget.share(0.45))
    with tempfile.TemporaryDirectory() as tmp:
        folder = work.bundle.path
        if folder is None:  # an untrained model: save it so the workers load it like the app
            folder = Path(tmp) / "default"
            save_checkpoint(folder, work.bundle, state={"step": 0})
        decode = measure_decoding(work, plan, budget, folder)
        closed_loop = measure_closed_loop(work, plan, budget.share(0.15))
        procs = measure_processes(work, plan, quick, budget, folder)

    log(f"sgemm again: MLX and PyTorch, {n}^3 (the peak is the better of the two runs)")
    sgemm_runs["mlx"].append(sgemm_gflops(n=n))
    sgemm_runs["torch"].append(torch_sgemm_gflops(n=n))
    peak, peak_torch = max(sgemm_runs["mlx"]), max(sgemm_runs["torch"])
    tok_s, params = train["tok_s"], train["params"]
    other = train["other_activation"]
    act_tok_s = {work.args.activation: tok_s["mlx"], other: tok_s[f"mlx_{other}"]}
    ms, gen = decode["ms_per_token"], decode["molecules_per_s"]
    ranks_tok_s = procs["ranks"]["tok_s"] if procs["ranks"] else None
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "budget_s": round(budget.end - started, 1),
        "machine": {**machine, "load_avg_end": round(os.getloadavg()[0], 2)},
        "model": {
            "source": work.source,
            "config": {k: v for k, v in vars(work.args).items()},
            "params": params,
            "params_non_embedding": train["params_non_embedding"],
            "batch": {"molecules": int(work.ids.shape[0]), "width": int(work.ids.shape[1])},
            "batch_tokens": work.n_tokens,
        },
        "train_tok_s_mlx": tok_s["mlx"],
        "train_tok_s_torch": tok_s["torch"],
        "train_ratio": tok_s["mlx"] / tok_s["torch"],
        "train_step_seconds": train["step_seconds"],
        "sgemm_n": n,
        "sgemm_gflops": peak,
        "sgemm_gflops_torch": peak_torch,
        "sgemm_gflops_runs": sgemm_runs,
        "mfu": 6 * params * tok_s["mlx"] / (peak * 1e9),
        "mfu_torch": 6 * params * tok_s["torch"] / (peak * 1e9),
        "mfu_params": "all trainable parameters (embeddings included), MLX's sgemm as the peak",
        "train_tok_s_mlx_2_ranks": ranks_tok_s,
        "mfu_2_ranks": ranks_tok_s and 6 * params * ranks_tok_s / (peak * 1e9),
        "decode_length": plan.decode_length,
        "decode_ms_per_token": ms["cache"],
        "decode_ms_per_token_nocache_compiled": ms["nocache"],
        "decode_ms_per_token_cache_eager": ms["cache_eager"],
        "decode_ms_per_token_torch": ms["torch"],
        "kv_speedup": ms["nocache"] / ms["cache"],  # both compiled: what the cache gives
        "decode_compile_speedup": ms["cache_eager"] / ms["cache"],  # both cached: compilation
        "decode_latency_blas": decode["latency"]["blas"]["default"],
        "decode_latency_runs": decode["latency"]["runs"],
        "decode_latency_note": "MLX batch-1 runs in bench.workers decode processes",
        "gen_molecules": plan.gen_molecules,
        "gen_molecules_per_s": gen["mlx"],
        "gen_molecules_per_s_torch": gen["torch"],
        "gen_steps": decode["gen_steps"],
        "gen_closed_loop": closed_loop,
        "peak_rss_mb_train": procs["peak_rss_mb_train"],
        "peak_rss_mb_app": procs["peak_rss_mb_app"],
        "levers": {
            "compile": {
                "tok_s_compiled": tok_s["mlx"],
                "tok_s_eager": tok_s["mlx_eager"],
                "speedup": tok_s["mlx"] / tok_s["mlx_eager"],
            },
            "blas": procs["blas_lever"],
            "blas_threads": procs["blas_threads_lever"],
            "data_parallel": {
                "tok_s_one_process": tok_s["mlx"],
                "tok_s_2_ranks": ranks_tok_s,
                "speedup": ranks_tok_s and ranks_tok_s / tok_s["mlx"],
                "steps": procs["ranks"] and procs["ranks"]["steps"],
                "note": "the training recipe's layout: 2 processes, each pinned to a core with "
                "one OpenBLAS thread, gradients averaged over MLX's ring backend (localhost); "
                "subprocesses after the A/B rounds",
            },
            "sgemv_shim": {
                "ms_per_token_default": ms["cache"],
                "ms_per_token_openblas_gemm": decode["latency"]["ms"]["openblas"]["cache"],
                "speedup": decode["latency"]["ms"]["openblas"]["cache"] / ms["cache"],
                "default_blas": decode["latency"]["blas"]["default"],
                "note": "batch-1 decoding with the KV cache; worker processes in turns, "
                "MOLSCOPE_BLAS=openblas leaves the shim out",
            },
            "activation": {
                "tok_s_relu": act_tok_s["relu"],
                "tok_s_gelu": act_tok_s["gelu"],
                "relu_over_gelu": act_tok_s["relu"] / act_tok_s["gelu"],
            },
        },
        "targets": TARGETS,
        "seconds": round(time.perf_counter() - started, 1),
    }


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted, or "n/a" where it was not measured (one core)."""
    return "n/a" if value is None else format(value, spec)


def table(r: dict) -> str:
    """The results as a plain-text table."""
    m = r["machine"]
    lev = r["levers"]
    loop = r["gen_closed_loop"]
    rows = [
        ("figure", "MLX (ours)", "PyTorch", "note"),
        ("training tokens/s", f"{r['train_tok_s_mlx']:,.0f}", f"{r['train_tok_s_torch']:,.0f}",
         f"ratio {r['train_ratio']:.2f} (target {TARGETS['train_ratio']})"),
        (f"sgemm {r['sgemm_n']}^3 GFLOP/s", f"{r['sgemm_gflops']:.1f}",
         f"{r['sgemm_gflops_torch']:.1f}", "MLX's is the MFU peak"),
        ("MFU", f"{r['mfu']:.3f}", f"{r['mfu_torch']:.3f}", f"target {TARGETS['mfu']}"),
        ("training tokens/s, 2 pinned ranks", fmt(r["train_tok_s_mlx_2_ranks"], ",.0f"), "",
         f"MFU {fmt(r['mfu_2_ranks'], '.3f')} (the training recipe's layout)"),
        (f"decode ms/token (batch 1, {r['decode_length']} tok)",
         f"{r['decode_ms_per_token']:.2f}", f"{r['decode_ms_per_token_torch']:.2f}",
         f"target {TARGETS['decode_ms_per_token']}"),
        ("decode ms/token, no KV cache (compiled)",
         f"{r['decode_ms_per_token_nocache_compiled']:.2f}", "",
         f"kv_speedup {r['kv_speedup']:.1f} (target {TARGETS['kv_speedup']})"),
        ("decode ms/token, KV cache, not compiled",
         f"{r['decode_ms_per_token_cache_eager']:.2f}", "",
         f"compilation {r['decode_compile_speedup']:.2f}x"),
        (f"molecules/s (batch {r['gen_molecules']}, T=1)", f"{r['gen_molecules_per_s']:,.0f}",
         f"{r['gen_molecules_per_s_torch']:,.0f}", f"target {TARGETS['gen_molecules_per_s']}"),
        ("closed-loop molecules/s (feedback on)", f"{loop['molecules_per_s']:,.0f}", "",
         f"RDKit {loop['rdkit_share']:.0%} of it; "
         f"{loop['molecules_per_s_feedback_off']:,.0f}/s with feedback off"),
        ("closed-loop molecules/s, two batches at once", fmt(loop.get(
            "molecules_per_s_two_batches"), ",.0f"), "", "core.generate.generate, core.pairs"),
        ("peak RSS training MB", f"{r['peak_rss_mb_train']:,.0f}", "", ""),
        ("peak RSS dashboard MB", f"{r['peak_rss_mb_app']:,.0f}", "",
         f"target {TARGETS['peak_rss_mb_app']}"),
        ("lever: mx.compile", f"{lev['compile']['speedup']:.2f}x", "",
         f"{lev['compile']['tok_s_eager']:,.0f} tok/s without"),
        ("lever: OpenBLAS vs reference", f"{lev['blas']['speedup']:.1f}x", "",
         f"{lev['blas']['tok_s_reference']:,.0f} tok/s on the reference BLAS"),
        ("lever: OpenBLAS all cores vs 1 thread",
         f"{lev['blas_threads']['default_over_one']:.2f}x", "",
         f"{lev['blas_threads']['tok_s_one_thread']:,.0f} tok/s on one thread"),
        ("lever: sgemv shim (batch-1 decode)", f"{lev['sgemv_shim']['speedup']:.2f}x", "",
         f"{lev['sgemv_shim']['ms_per_token_openblas_gemm']:.2f} ms/token through gemm"),
        ("lever: relu vs gelu", f"{lev['activation']['relu_over_gelu']:.2f}x", "",
         f"{lev['activation']['tok_s_gelu']:,.0f} tok/s with gelu"),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, {m['blas'].split(' (')[0]}, mlx {m['mlx']}, "
        f"torch {m['torch']} ({m['torch_threads']} threads); load average "
        f"{m['load_avg_start']} -> {m['load_avg_end']}; {r['seconds']:.0f} s"
        + ("; QUICK (tiny model)" if r["quick"] else "")
    ]
    if m["load_avg_start"] > 0.5 * m["cores"]:  # the end's includes this run's own ranks
        lines.append(
            "warning: other processes kept the CPU busy; these numbers are not comparable"
            " (PyTorch's spin-waiting OpenMP threads suffer most: see bench/README.md)"
        )
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:
        raise BenchError(f"PyTorch is not installed (benchmark only): run `{INSTALL_HINT}`")
    if args.checkpoint:  # read by bench.workload here and in the worker processes
        if not Path(args.checkpoint).is_dir():
            raise BenchError(f"--checkpoint {args.checkpoint}: no such folder")
        os.environ[CHECKPOINT_ENV] = str(Path(args.checkpoint).resolve())
    results = benchmark(args.quick, args.minutes)
    out = Path(args.out) if args.out else RESULTS / ("quick.json" if args.quick else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from core.cli import run_cli

    parser = argparse.ArgumentParser(description="Benchmark MolScope (MLX) against PyTorch.")
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps each (seconds)")
    parser.add_argument(
        "--minutes",
        type=float,
        help="time budget (default 8.5, quick 0.75): past it, each measurement keeps its minimum",
    )
    parser.add_argument(
        "--checkpoint", help="benchmark this checkpoint's model (default: checkpoints/default)"
    )
    parser.add_argument(
        "--out", help="JSON file to write (default bench/results/latest.json, or quick.json)"
    )
    run_cli(main, parser)
