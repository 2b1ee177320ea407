"""The benchmark harness: the PyTorch mirror computes what core.model computes, and
``python -m bench.run --quick`` runs end to end and writes every figure."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from tiny import tiny_bundle

from core.generate import generate_step, make_sampler
from core.model import count_parameters
from core.train import TrainArgs, loss_fn

ROOT = Path(__file__).resolve().parent.parent
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is a benchmark-only dependency: pip install -r bench/requirements.txt",
)

KEYS = [
    "train_tok_s_mlx", "train_tok_s_torch", "train_ratio", "sgemm_gflops", "mfu",
    "decode_ms_per_token", "decode_ms_per_token_nocache", "kv_speedup", "gen_molecules_per_s",
    "gen_molecules_per_s_torch", "peak_rss_mb_train", "peak_rss_mb_app",
]  # fmt: skip


def _batch(vocab: int, batch: int = 6, width: int = 12, seed: int = 0):
    """Random padded token rows ending in [EOS], with properties, flags and noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, width + 1, batch)
    valid = np.arange(width)[None, :] < lengths[:, None]
    ids = np.where(valid, rng.integers(4, vocab, (batch, width)), 0)
    ids[np.arange(batch), lengths - 1] = 2
    props = rng.normal(size=(batch, 2)).astype(np.float32)
    present = (rng.random((batch, 2)) > 0.3).astype(np.float32)
    return ids, valid, props, present


@needs_torch
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_torch_mirror_computes_the_same_loss(activation):
    import torch

    from bench import torch_model as tm

    bundle = tiny_bundle(activation=activation)
    mirror = tm.Model(bundle.args)
    tm.load_mlx_weights(mirror, bundle.model)
    assert tm.count_parameters(mirror) == count_parameters(bundle.model)

    ids, valid, props, present = _batch(bundle.args.vocab_size)
    eps = np.random.default_rng(1).normal(size=(len(ids), bundle.args.latent_dim))
    eps = eps.astype(np.float32)
    targs = TrainArgs()
    ours = loss_fn(bundle.model, *map(mx.array, (ids, valid, props, present, eps)), 0.5, targs, 1)
    theirs = tm.loss_fn(
        mirror, *map(torch.from_numpy, (ids, valid, props, present, eps)), 0.5, targs, 1
    )
    for a, b in zip([ours[0], *ours[1]], [theirs[0], *theirs[1]], strict=True):
        assert math.isclose(a.item(), b.item(), rel_tol=1e-4, abs_tol=1e-5)


@needs_torch
def test_torch_cached_greedy_decoding_matches_generate_step():
    import torch

    from bench import torch_model as tm

    bundle = tiny_bundle(seed=3)
    mirror = tm.Model(bundle.args)
    tm.load_mlx_weights(mirror, bundle.model)
    mirror.eval()
    z = mx.random.normal((3, bundle.args.latent_dim), key=mx.random.key(7))
    steps = list(generate_step(bundle, {}, n=3, z=z, sampler=make_sampler(0.0), max_tokens=10))
    ours = np.stack([s.tokens for s in steps], axis=1)
    tok = bundle.tokenizer
    theirs = tm.generate_tokens(
        mirror, 3, bos=tok.bos_id, eos=tok.eos_id, pad=tok.pad_id,
        banned=[tok.pad_id, tok.bos_id, tok.unk_id], temperature=0, max_tokens=10,
        z=torch.from_numpy(np.array(z)),
    )  # fmt: skip
    np.testing.assert_array_equal(ours, theirs.numpy())


def test_missing_torch_is_one_clear_error(monkeypatch):
    from bench import run

    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(run.BenchError, match="pip install -r bench/requirements.txt"):
        run.main(run.argparse.Namespace(quick=True, out=None, minutes=None))


@needs_torch
def test_quick_run_writes_every_figure(tmp_path):
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in KEYS:
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["train_ratio"] == pytest.approx(
        result["train_tok_s_mlx"] / result["train_tok_s_torch"]
    )
    assert result["kv_speedup"] == pytest.approx(
        result["decode_ms_per_token_nocache"] / result["decode_ms_per_token"]
    )
    levers = {"compile", "blas", "blas_threads", "activation", "sgemv_shim", "data_parallel"}
    assert set(result["levers"]) == levers
    assert result["decode_latency_runs"] == {"default": 2, "openblas": 2}
    if result["machine"]["cores"] >= 2:  # two pinned ranks over MLX's ring backend
        assert result["train_tok_s_mlx_2_ranks"] > 0 and result["mfu_2_ranks"] > 0
        assert "2 pinned ranks" in proc.stdout
    assert result["machine"]["cores"] >= 1 and result["machine"]["blas"]
    assert "training tokens/s" in proc.stdout


def test_alternate_runs_variants_in_turns_and_drops_warmup():
    from bench.workload import alternate

    calls = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 1, 3, 0)
    assert calls == ["a", "b"] * 4
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3}
