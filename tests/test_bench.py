"""The benchmark harness: the PyTorch mirror computes what core.model computes (open and
closed loop), the workload carries what a closed-loop decoder reads, and
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

from core.config import TrainArgs
from core.generate import generate_step, make_sampler
from core.losses import loss_fn
from core.model import count_parameters

ROOT = Path(__file__).resolve().parent.parent
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is a benchmark-only dependency: pip install -r bench/requirements.txt",
)

KEYS = [
    "train_tok_s_mlx", "train_tok_s_torch", "train_ratio", "sgemm_gflops", "mfu",
    "decode_ms_per_token", "decode_ms_per_token_nocache_compiled",
    "decode_ms_per_token_cache_eager", "kv_speedup", "decode_compile_speedup",
    "gen_molecules_per_s", "gen_molecules_per_s_torch", "peak_rss_mb_train", "peak_rss_mb_app",
]  # fmt: skip


def _batch(vocab: int, batch: int = 6, width: int = 12, seed: int = 0):
    """Random padded token rows ending in [EOS], with properties, noisy targets, flags, the
    properties of every prefix and the VAE's noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, width + 1, batch)
    valid = np.arange(width)[None, :] < lengths[:, None]
    ids = np.where(valid, rng.integers(4, vocab, (batch, width)), 0)
    ids[np.arange(batch), lengths - 1] = 2
    props = rng.normal(size=(batch, 2)).astype(np.float32)
    targets = (props + 0.1 * rng.normal(size=props.shape)).astype(np.float32)
    present = (rng.random((batch, 2)) > 0.3).astype(np.float32)
    prefix = rng.normal(size=(batch, width, 2)).astype(np.float32)
    eps = rng.normal(size=(batch, 4)).astype(np.float32)
    return ids, valid, props, targets, present, prefix, eps


@needs_torch
@pytest.mark.parametrize(
    ("activation", "feedback"), [("relu", False), ("gelu", False), ("relu", True)]
)
def test_torch_mirror_computes_the_same_loss(activation, feedback):
    import torch

    from bench import torch_model as tm

    bundle = tiny_bundle(activation=activation, feedback=feedback)
    mirror = tm.Model(bundle.args)
    tm.load_mlx_weights(mirror, bundle.model)
    assert tm.count_parameters(mirror) == count_parameters(bundle.model)

    batch = _batch(bundle.args.vocab_size)
    targs = TrainArgs()
    ours = loss_fn(bundle.model, *map(mx.array, batch), 0.5, targs, 1)
    theirs = tm.loss_fn(mirror, *map(torch.from_numpy, batch), 0.5, targs, 1)
    for a, b in zip([ours[0], *ours[1]], [theirs[0], *theirs[1]], strict=True):
        assert math.isclose(a.item(), b.item(), rel_tol=1e-4, abs_tol=1e-5)
    if feedback:  # what the positions read changes the loss: the mirror does not ignore it
        ids, valid, props, targets, present, prefix, eps = batch
        moved = tm.loss_fn(
            mirror, *map(torch.from_numpy, (ids, valid, props, targets, present, prefix + 1, eps)),
            0.5, targs, 1,
        )  # fmt: skip
        assert not math.isclose(moved[0].item(), theirs[0].item(), rel_tol=1e-4)


def _with_derivation(bundle):
    """``bundle`` with random derivation tables (zeros would hide a mirror that ignores them)."""
    decoder = bundle.model.decoder
    decoder.derivation.tables = [mx.random.normal(t.shape) for t in decoder.derivation.tables]
    return bundle


@needs_torch
def test_torch_mirror_reads_the_derivation_as_the_model_does():
    import torch

    from bench import torch_model as tm
    from core.derivation import CODE_SIZES

    bundle = _with_derivation(tiny_bundle(feedback=True, derivation=True))
    mirror = tm.Model(bundle.args)
    tm.load_mlx_weights(mirror, bundle.model)
    ids, valid, props, targets, present, prefix, eps = _batch(bundle.args.vocab_size)
    rng = np.random.default_rng(1)
    codes = np.stack([rng.integers(0, n, prefix.shape[:2]) for n in CODE_SIZES], axis=-1)
    reads = np.concatenate([prefix, codes.astype(np.float32)], axis=-1)
    batch = (ids, valid, props, targets, present, reads, eps)
    targs = TrainArgs()
    ours = loss_fn(bundle.model, *map(mx.array, batch), 0.5, targs, 1)[0].item()
    theirs = tm.loss_fn(mirror, *map(torch.from_numpy, batch), 0.5, targs, 1)[0].item()
    assert math.isclose(ours, theirs, rel_tol=1e-4, abs_tol=1e-5)
    other = np.concatenate([prefix, (codes[..., ::-1] % 4).astype(np.float32)], axis=-1)
    moved = loss_fn(bundle.model, *map(mx.array, (*batch[:5], other, eps)), 0.5, targs, 1)
    assert not math.isclose(moved[0].item(), ours, rel_tol=1e-4)


@needs_torch
@pytest.mark.parametrize("feedback", [False, True, "derivation"])
def test_torch_cached_greedy_decoding_matches_generate_step(feedback):
    import torch

    from bench import torch_model as tm

    bundle = tiny_bundle(seed=3, feedback=bool(feedback), derivation=feedback == "derivation")
    if feedback == "derivation":
        _with_derivation(bundle)
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
        feedback=tm.prefix_reader(bundle, 3) if feedback else None,
    )  # fmt: skip
    np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.fixture(scope="module")
def closed_loop_workload(tmp_path_factory):
    """The benchmark's workload on a tiny closed-loop checkpoint."""
    import os

    from conftest import make_tiny_checkpoint

    from bench.workload import CHECKPOINT_ENV, build_workload

    folder = tmp_path_factory.mktemp("bench") / "feedback"
    make_tiny_checkpoint(folder, feedback=True)
    before = os.environ.get(CHECKPOINT_ENV)
    os.environ[CHECKPOINT_ENV] = str(folder)
    try:
        return build_workload()
    finally:
        if before is None:
            del os.environ[CHECKPOINT_ENV]
        else:
            os.environ[CHECKPOINT_ENV] = before


def test_a_closed_loop_workload_carries_what_each_position_reads(closed_loop_workload):
    from core.feedback import prefix_table

    work = closed_loop_workload
    B, W = work.ids.shape
    assert work.args.feedback and work.prefix.shape == (B, W, 2)
    tok, scales = work.bundle.tokenizer, work.bundle.scales
    mean = np.array([scales[p].mean for p in work.bundle.properties])
    std = np.array([scales[p].std for p in work.bundle.properties])
    for row in (0, B - 1):
        selfies = tok.decode(work.ids[row])
        expected = (prefix_table(selfies, work.bundle.properties) - mean) / std
        np.testing.assert_allclose(work.prefix[row, : len(expected)], expected, rtol=1e-5)
    assert np.abs(work.prefix).sum() > 0


def test_the_training_steps_take_the_prefix(closed_loop_workload):
    from bench.workload import mlx_train_step

    model, run = mlx_train_step(closed_loop_workload)
    before = np.array(model.decoder.feedback.net.layers[0].weight)
    run()
    after = np.array(model.decoder.feedback.net.layers[0].weight)
    assert np.isfinite(after).all() and not np.array_equal(before, after)


def test_closed_loop_generation_times_the_prefix_tracker():
    from bench.decode import decode_without_cache, generate_closed_loop
    from bench.workload import Workload, closed_loop_bundle

    bundle = tiny_bundle(feedback=True)
    steps, rdkit = generate_closed_loop(bundle, 8, {"logp": 2.0, "tpsa": 40.0}, seed=1)
    assert 1 <= steps <= bundle.args.max_len and rdkit > 0
    steps_off, rdkit_off = generate_closed_loop(bundle, 8, {"logp": 2.0}, seed=1, feedback=False)
    assert steps_off >= 1 and rdkit_off > 0.0  # open loop still checks rings and finishing
    decode_without_cache(bundle, 5)  # the cache-less reference reads the prefixes too
    open_loop = tiny_bundle()
    work = Workload(open_loop, "tiny", *(np.zeros((1, 1)),) * 4, TrainArgs())
    copy, source = closed_loop_bundle(work)
    assert copy.args.feedback and not open_loop.args.feedback and "copy" in source


@pytest.mark.parametrize("feedback", [False, True])
def test_the_four_decoding_variants_decode_the_same_molecule(feedback):
    """kv_speedup and decode_compile_speedup compare the same work: compiled and eager give
    the same tokens with the cache and without it, and (open loop) the cache changes none."""
    from bench.decode import decode_with_cache, decode_without_cache, recompute_position

    bundle = tiny_bundle(feedback=feedback)
    compiled = recompute_position(bundle, compiled=True)
    cached = decode_with_cache(bundle, 6, seed=3)
    recomputed = decode_without_cache(bundle, 6, seed=3, position=compiled)
    np.testing.assert_array_equal(decode_with_cache(bundle, 6, seed=3, compiled=False), cached)
    np.testing.assert_array_equal(decode_without_cache(bundle, 6, seed=3), recomputed)
    assert len(cached) == len(recomputed) == 6
    if not feedback:
        np.testing.assert_array_equal(recomputed, cached)
    other = decode_without_cache(bundle, 6, seed=4, position=compiled)
    assert not np.array_equal(other, recomputed)  # a reused trace reads this call's z and keys


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
        result["decode_ms_per_token_nocache_compiled"] / result["decode_ms_per_token"]
    )
    assert result["decode_compile_speedup"] == pytest.approx(
        result["decode_ms_per_token_cache_eager"] / result["decode_ms_per_token"]
    )
    loop = result["gen_closed_loop"]
    assert loop["molecules_per_s"] > 0 and loop["molecules_per_s_feedback_off"] > 0
    assert 0 < loop["rdkit_share"] < 1 and loop["molecules"] == result["gen_molecules"]
    assert "closed-loop molecules/s" in proc.stdout
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


def test_the_ablation_table_has_a_row_per_arm_in_the_lever_order(tmp_path):
    from bench.ablation_table import ARMS, table

    def result(mad: float) -> dict:
        return {
            "summary": {"logp_mad": mad, "tpsa_mad": 10 * mad, "joint_hit": 1 - mad},
            "heldout": {"mad_logp": mad, "mad_tpsa": 5.0, "hit_joint": 0.5},
            "overall": {"uniqueness": 1.0},
            "moses": {"conditioned_test_pairs": {"Filters": 0.8}},
        }

    for arm, mad in (("no_feedback", 0.6), ("full", 0.4), ("mine", 0.3)):
        (tmp_path / f"{arm}.json").write_text(json.dumps(result(mad)))
    lines = table(tmp_path).splitlines()
    assert len(lines) == 5  # header, rule, three arms
    assert lines[2].startswith(f"| {ARMS['full']} | 0.400 | 4.00 | 0.600 |")
    assert ARMS["no_feedback"] in lines[3] and lines[4].startswith("| mine | 0.300")


def test_longest_trained_is_the_longest_selfies_prepare_writes():
    """bench.longest_trained: the most symbols of a MOSES slice as ``core.data`` writes it,
    open-ended or canonical, recorded where ``Bundle.token_limit`` reads it."""
    import selfies as sf

    from bench.longest_trained import _longest, longest
    from core.data import _row, read_moses

    smiles = read_moses("train")[:60]
    for open_end in (False, True):
        rows = [_row(s, names=(), open_end=open_end) for s in smiles]
        expected = max(sf.len_selfies(row[1]) for row in rows if not isinstance(row, str))
        assert _longest((smiles, open_end)) == expected
    assert longest(["0:30", "30:60:open"], workers=1) == max(
        _longest((smiles[:30], False)), _longest((smiles[30:], True))
    )


def test_a_soup_averages_the_weights_of_one_model_read_in_one_normalisation(tmp_path):
    """bench.soup: every tensor is the weighted mean; a checkpoint that normalises a property
    otherwise (an older leg renormalised to its slice) is refused with a one-line error."""
    from dataclasses import replace

    from mlx.utils import tree_flatten

    from bench.soup import soup
    from core.checkpoint import load_checkpoint, save_checkpoint

    a, b = tiny_bundle(0), tiny_bundle(1)
    mixed = soup([a, b], [0.25, 0.75])
    x, y, m = (dict(tree_flatten(c.model.parameters())) for c in (a, b, mixed))
    head = "decoder.head.weight"
    assert len(m) > 10 and not mx.allclose(x[head], y[head]).item()
    assert all(mx.allclose(m[k], 0.25 * x[k] + 0.75 * y[k]).item() for k in m)
    save_checkpoint(tmp_path / "soup", mixed)
    again = load_checkpoint(tmp_path / "soup")
    assert [w["weight"] for w in again.meta["soup_of"]] == [0.25, 0.75]
    other = replace(b, scales={**b.scales, "tpsa": replace(b.scales["tpsa"], mean=61.0)})
    save_checkpoint(tmp_path / "a", a)
    save_checkpoint(tmp_path / "other", other)
    result = subprocess.run(
        [sys.executable, "-m", "bench.soup", str(tmp_path / "a"), str(tmp_path / "other"),
         "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and not (tmp_path / "bad").exists()
    assert result.stderr.strip() == (
        "error: checkpoint 2 normalises tpsa otherwise (mean 61, σ 20; checkpoint 1: 60, 20)"
    )


def test_own_rollouts_keep_only_molecules_on_target_and_through_the_filters(
    tiny_feedback_checkpoints, tmp_path
):
    """bench.own_rollouts: no more kept than hit their targets or passed the filters, every
    kept molecule parses and passes MOSES's filters (the hit test itself: ``keep_own``'s
    doctest); the list ends with the MOSES molecules aimed at; a wrong checkpoint is a
    one-line error."""
    from bench.own_rollouts import PROPERTIES, targets_of
    from core.chem import describe_smiles
    from core.data import read_moses
    from core.moses import passes_filters

    out = tmp_path / "own.smi"
    command = [sys.executable, "-m", "bench.own_rollouts", "--n", "40", "--skip", "7",
               "--with-moses", "--batch-size", "16", "--out", str(out), "--checkpoint",
               str(tiny_feedback_checkpoints / "default")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    moses, targets = targets_of(read_moses("train")[7:47])
    lines = out.read_text().splitlines()
    assert summary["n"] == len(moses) == 40 and lines[summary["kept"] :] == moses
    assert summary["kept"] <= min(summary["on_target"], summary["filters"])
    for own in lines[: summary["kept"]]:
        values = describe_smiles(own, PROPERTIES)
        assert passes_filters(own) and values is not None
    bad = subprocess.run(
        [*command[:-1], str(tmp_path / "nothing")], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "error:" in bad.stderr
