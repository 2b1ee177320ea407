"""Step-by-step decoding (core.stepper) without Streamlit: steps continue exactly like an
uninterrupted ``generate_step`` run with the same seed, open loop, closed loop and with the
feedback off; finishing ends stepping and playing; reset starts again; the model runs on the
pool."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
from tiny import tiny_bundle

import core.stepper
from core.generate import generate_step, make_sampler
from core.pool import on_pool_thread
from core.stepper import Stepper, StepSettings

TARGETS = {"logp": 2.0, "tpsa": 60.0}
SEED_AIMED = 3  # a seed whose run refuses an end off target


def uninterrupted(bundle, settings: StepSettings) -> list:
    """Every ``Step`` of one whole run at ``settings``."""
    sampler = make_sampler(settings.temperature, settings.top_k)
    return list(
        generate_step(
            bundle,
            dict(settings.targets),
            n=1,
            seed=settings.seed,
            sampler=sampler,
            report_top=settings.report_top,
            feedback=settings.feedback,
            finish_window=None if settings.finish_window is None else dict(settings.finish_window),
        )
    )


def step_to_the_end(run: Stepper, bundle) -> None:
    for _ in range(bundle.args.max_len):
        run.step(bundle)
    assert run.done


def forced(bundle, token: int) -> None:
    """Make the decoder of ``bundle`` always write ``token``: its head sees a constant vector."""
    decoder = bundle.model.decoder
    decoder.norm.weight = mx.zeros_like(decoder.norm.weight)
    decoder.norm.bias = mx.ones_like(decoder.norm.bias)
    decoder.head.weight = mx.zeros_like(decoder.head.weight).at[token].add(1.0)
    mx.eval(decoder.parameters())  # here: MLX ties an unevaluated array to its thread


AIM = (("logp", 0.5), ("tpsa", 10.0))  # finishing on target (hit windows)


@pytest.mark.parametrize(
    "closed_loop, feedback, seed, aim",
    [(False, True, 0, None), (False, True, 7, None), (True, True, 3, None),
     (True, False, 3, None), (True, False, 11, None), (True, True, SEED_AIMED, AIM)],
)  # fmt: skip
def test_steps_reproduce_an_uninterrupted_run(closed_loop, feedback, seed, aim):
    bundle = tiny_bundle(seed=1, feedback=closed_loop)
    settings = StepSettings(
        TARGETS | {"tpsa": None}, seed=seed, top_k=5, feedback=feedback, finish_window=aim
    )
    whole = uninterrupted(bundle, settings)
    run = Stepper(settings)
    step_to_the_end(run, bundle)
    if aim is not None:  # the aim refused an end in this run, so the check means something
        assert any(run.refused)
    assert run.chosen == [int(s.tokens[0]) for s in whole]
    assert run.top_ids == [s.top_ids[0].tolist() for s in whole]
    np.testing.assert_allclose(
        np.concatenate(run.top_probs), np.concatenate([s.top_probs[0] for s in whole]), rtol=1e-5
    )
    eos = bundle.tokenizer.eos_id
    assert run.symbols == [bundle.tokenizer.tokens[t] for t in run.chosen if t != eos]
    assert len(run.partial) == len(run.symbols)
    if not closed_loop:
        assert run.reads == []
        return
    # the position choosing symbol k read the molecule of the k symbols before it
    empty = {"logp": 0.0, "tpsa": 0.0}
    after = [dict(zip(empty, s.prefix_props[0].tolist(), strict=True)) for s in whole]
    before = [empty, *after]
    assert run.reads == before[: len(whole)]
    if not feedback:
        assert all(read == empty for read in run.reads)


def test_a_closed_loop_step_reads_the_molecule_so_far():
    bundle = tiny_bundle(seed=1, feedback=True)
    run = Stepper(StepSettings({"logp": None, "tpsa": 60.0}, seed=4))
    step_to_the_end(run, bundle)
    for k, partial in enumerate(run.partial[: len(run.reads) - 1], start=1):
        if partial is not None:
            assert run.reads[k]["tpsa"] == pytest.approx(partial["tpsa"], abs=1e-3)


def test_finishing_with_eos_turns_stepping_and_playing_off():
    bundle = tiny_bundle()
    eos = bundle.tokenizer.eos_id
    forced(bundle, eos)
    run = Stepper(StepSettings(TARGETS))
    run.toggle_play()
    assert run.playing
    run.step(bundle)
    assert run.done and not run.playing
    assert run.chosen == [eos] and run.symbols == [] and run.partial == []
    run.step(bundle)  # a finished molecule takes no more steps
    run.toggle_play()  # nor plays
    assert run.chosen == [eos] and not run.playing


def test_finishing_at_the_length_limit_turns_stepping_off():
    bundle = tiny_bundle()
    carbon = bundle.tokenizer.tokens.index("[C]")
    forced(bundle, carbon)
    run = Stepper(StepSettings(TARGETS))
    for _ in range(bundle.args.max_len - 1):
        run.step(bundle)
    assert not run.done
    run.step(bundle)
    assert run.done and run.at_limit and run.symbols == ["[C]"] * bundle.args.max_len
    run.step(bundle)
    assert len(run.chosen) == bundle.args.max_len
    assert run.partial[-1]["smiles"] == "C" * bundle.args.max_len
    # a model that records its longest training SELFIES stops there, as batch decoding does
    short = replace(bundle, meta={**bundle.meta, "longest_trained": 4})
    run = Stepper(StepSettings(TARGETS))
    for _ in range(6):
        run.step(short)
    assert run.at_limit and len(run.symbols) == short.token_limit == 5
    batch = list(generate_step(short, TARGETS, n=1))
    assert [int(s.tokens[0]) for s in batch] == run.chosen


def test_reset_starts_the_same_run_again():
    bundle = tiny_bundle(seed=2)
    settings = StepSettings(TARGETS, seed=5)
    run = Stepper(settings)
    for _ in range(3):
        run.step(bundle)
    first = list(run.chosen)
    run.toggle_play()
    run.reset()
    assert run.settings == settings
    assert (run.chosen, run.symbols, run.partial, run.reads) == ([], [], [], [])
    assert not run.done and not run.playing
    for _ in range(3):
        run.step(bundle)
    assert run.chosen == first


def test_settings_tell_runs_apart():
    a = StepSettings(TARGETS, seed=1, checkpoint="checkpoints/default")
    assert a == StepSettings(dict(TARGETS), seed=1, checkpoint="checkpoints/default")
    assert a != StepSettings(TARGETS, seed=2, checkpoint="checkpoints/default")
    assert a != StepSettings(TARGETS, seed=1, checkpoint="checkpoints/other")
    assert a != StepSettings(TARGETS | {"tpsa": None}, seed=1, checkpoint="checkpoints/default")
    assert (StepSettings(TARGETS).report_top, StepSettings(TARGETS, top_k=3).report_top) == (10, 3)


def test_the_model_runs_on_a_pool_thread(monkeypatch):
    threads = []

    def watched(*args, **kwargs):
        threads.append(on_pool_thread())
        yield from generate_step(*args, **kwargs)

    monkeypatch.setattr(core.stepper, "generate_step", watched)
    bundle = tiny_bundle()
    run = Stepper(StepSettings(TARGETS))
    run.step(bundle)
    run.step(bundle)
    assert threads == [True, True]
