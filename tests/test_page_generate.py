"""Generate page (AppTest on a tiny checkpoint): sliders from the data, step-by-step decoding
that continues like an uninterrupted run, Play / Reset, URL state, batch mode; on a closed-loop
checkpoint the gaps each position read, the feedback and small-rings switches, the symbols the
closed loop refused, a molecule it ended and best-of-k batches."""

import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
from conftest import run_page
from streamlit.testing.v1 import AppTest

import core.generate
from core.checkpoint import load_checkpoint
from core.generate import generate, generate_step, make_sampler
from core.inspect import partial_properties
from core.rerank import best_of_k, target_miss

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "generate.py")


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def running_points(at: AppTest) -> list[int]:
    """Number of points in each running-property chart."""
    return [
        len(fig["data"][0]["y"])
        for fig in figures(at)
        if fig["layout"].get("xaxis", {}).get("title", {}).get("text") == "symbols decoded"
    ]


@pytest.fixture
def app(use_tiny_checkpoints):
    return run_page(PAGE)


def step(at: AppTest, times: int = 1) -> None:
    for _ in range(times):
        at.button(key="gen_step").click().run()
        assert not at.exception


def test_sliders_span_the_data_range(app, use_tiny_checkpoints):
    bundle = load_checkpoint(use_tiny_checkpoints / "default")
    slider = app.slider(key="gen_logp_slider")
    assert slider.min <= bundle.scales["logp"].lo and slider.max >= bundle.scales["logp"].hi
    assert slider.max - bundle.scales["logp"].hi < 0.1
    assert len(figures(app)) == 2  # one density per property
    assert not app.warning
    assert app.query_params["logp"] == f"{slider.value:g}"


def test_step_grows_the_selfies_and_the_charts(app):
    step(app)
    first = app.code[0].value
    assert first.startswith("[") and running_points(app) == [1, 1]
    step(app, 2)
    run = app.session_state.gen_run
    assert len(run.chosen) == 3
    if not run.done:
        assert app.code[0].value.startswith(first) and len(app.code[0].value) > len(first)
        assert running_points(app) == [3, 3]
    assert all(isinstance(p, float) for p in run.top_probs[-1])  # plain data in the state


def test_steps_continue_exactly_like_an_uninterrupted_run(app, use_tiny_checkpoints):
    step(app, 6)
    symbols = "".join(app.session_state.gen_run.symbols)
    bundle = load_checkpoint(use_tiny_checkpoints / "default")
    targets = {p: float(app.number_input(key=f"gen_{p}_num").value) for p in ("logp", "tpsa")}
    whole = generate(bundle, targets, 1, seed=0, temperature=1.0)[0]
    assert whole.startswith(symbols)


def test_reset_and_changed_settings_restart_the_decoding(app):
    step(app, 2)
    app.button(key="gen_reset").click().run()
    assert not app.exception and app.session_state.gen_run.chosen == []
    assert not app.code
    step(app)
    app.slider(key="gen_tpsa_slider").set_value(80.0).run()
    assert app.number_input(key="gen_tpsa_num").value == 80.0
    assert app.session_state.gen_run.chosen == []
    app.number_input(key="gen_seed").set_value(5).run()
    assert app.query_params["seed"] == "5"


def test_play_steps_and_pause_stops(app):
    app.button(key="gen_play").click().run()
    assert not app.exception
    run = app.session_state.gen_run
    assert run.playing and len(run.chosen) == 1
    app.button(key="gen_play").click().run()
    assert not app.session_state.gen_run.playing


def test_unconditioned_property_goes_free_in_the_url(app):
    app.toggle(key="gen_use_logp").set_value(False).run()
    assert not app.exception
    assert app.query_params["logp"] == "free"
    step(app)
    assert any("LogP free" in c.value for c in app.caption)


def test_targets_outside_the_data_range_warn(use_tiny_checkpoints):
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["logp"] = "6"
    at.query_params["tpsa"] = "free"
    at.query_params["temperature"] = "9"  # clamped to 2 with a notice
    at.run()
    assert not at.exception
    assert any("outside the range" in w.value for w in at.warning)
    assert at.number_input(key="gen_logp_num").value == 6.0
    assert at.slider(key="gen_temperature").value == 2.0
    assert at.toggle(key="gen_use_tpsa").value is False
    at.number_input(key="gen_logp_num").set_value(2.0).run()
    assert not at.warning
    assert at.slider(key="gen_logp_slider").value == 2.0


def test_batch_scores_and_offers_a_csv(app):
    app.number_input(key="gen_batch_n").set_value(6).run()
    app.button(key="gen_batch_go").click().run()
    assert not app.exception
    table = app.session_state.gen_batch["table"]
    assert len(table) == 6 and {"selfies", "smiles", "logp", "tpsa", "novel"} <= set(table)
    labels = [m.label for m in app.metric]
    assert "Valid" in labels and "Both within" in labels
    assert any(fig["layout"].get("yaxis", {}).get("title", {}).get("text") for fig in figures(app))
    assert app.get("download_button")


def test_switching_to_a_checkpoint_with_other_ranges_keeps_the_page_working(
    tiny_checkpoints, tmp_path, monkeypatch
):
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    shutil.copytree(root / "default", root / "shifted")
    config = json.loads((root / "shifted" / "config.json").read_text())
    config["properties"]["logp"] = {"mean": 7.5, "std": 1.0, "lo": 5.0, "hi": 10.0}
    (root / "shifted" / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("MOLSCOPE_CHECKPOINTS", str(root))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.number_input(key="gen_logp_num").set_value(0.5).run()
    at.session_state["checkpoint"] = "shifted"  # what the sidebar picker sets
    at.run()
    assert not at.exception
    slider = at.slider(key="gen_logp_slider")
    assert (slider.min, slider.max) == (5.0, 10.0) and slider.value == 5.0
    assert at.number_input(key="gen_logp_num").value == 2.5  # the new lower bound
    assert any("outside the range" in w.value for w in at.warning)


def test_a_finished_molecule_is_scored_against_the_targets(app, use_tiny_checkpoints):
    run = app.session_state.gen_run
    tok = load_checkpoint(use_tiny_checkpoints / "default").tokenizer
    symbols = ["[C]", "[C]", "[O]"]
    ids = [tok.tokens.index(s) for s in symbols] + [tok.eos_id]
    run.symbols, run.chosen, run.done = symbols, ids, True
    run.top_ids, run.top_probs = [[i] for i in ids], [[1.0]] * len(ids)
    run.refused = [[] for _ in ids]
    run.partial = [partial_properties("".join(symbols[: i + 1])) for i in range(3)]
    app.session_state["gen_run"] = run
    app.run()
    assert not app.exception
    assert any("Finished after 3 symbols" in s.value and "CCO" in s.value for s in app.success)
    assert any(m.value.startswith("**Novel**") for m in app.markdown)  # ethanol is not in MOSES
    table = app.dataframe[0].value
    assert list(table.property) == ["LogP (Crippen)", "TPSA (Å²)"] and table.hit.dtype == bool
    assert app.button(key="gen_step").disabled and app.button(key="gen_play").disabled


@pytest.fixture
def closed_loop(use_tiny_feedback_checkpoints):
    """The page on a tiny closed-loop checkpoint."""
    return run_page(PAGE)


def gap_traces(at: AppTest) -> list[dict]:
    """The "gap read" trace of each running-property chart."""
    return [t for fig in figures(at) for t in fig["data"] if t.get("name") == "gap read"]


def test_feedback_toggle_is_shown_only_for_a_closed_loop_checkpoint(app, closed_loop):
    assert "gen_feedback" not in [t.key for t in app.toggle]
    assert "feedback" not in app.query_params
    assert closed_loop.toggle(key="gen_feedback").value is True
    assert closed_loop.query_params["feedback"] == "on"
    assert any("closed loop" in c.value for c in closed_loop.caption)


def test_closed_loop_steps_show_the_gap_each_position_read(closed_loop):
    step(closed_loop, 4)
    run = closed_loop.session_state.gen_run
    targets = {
        p: float(closed_loop.number_input(key=f"gen_{p}_num").value) for p in ("logp", "tpsa")
    }
    assert run.reads[0] == {"logp": 0.0, "tpsa": 0.0}  # the empty molecule
    for k, partial in enumerate(run.partial[: len(run.reads) - 1], start=1):
        if partial is not None:  # position k read the molecule of the first k symbols
            assert run.reads[k]["tpsa"] == pytest.approx(partial["tpsa"], abs=1e-3)
    assert any("gap (target − property so far)" in c.value for c in closed_loop.caption)
    assert any(m.value == "**What the model reads: gap = target − property so far**"
               for m in closed_loop.markdown)  # fmt: skip
    read = run.reads[-1]
    shown = f"TPSA {targets['tpsa'] - read['tpsa']:+.2f} Å²"
    assert any(
        "Gap read at this step" in m.value and shown in m.value for m in closed_loop.markdown
    )
    traces = gap_traces(closed_loop)
    assert len(traces) == 2 and all(len(t["y"]) == len(run.reads) for t in traces)


def test_closed_loop_steps_continue_exactly_like_an_uninterrupted_run(
    closed_loop, use_tiny_feedback_checkpoints
):
    step(closed_loop, 6)
    symbols = "".join(closed_loop.session_state.gen_run.symbols)
    bundle = load_checkpoint(use_tiny_feedback_checkpoints / "default")
    targets = {
        p: float(closed_loop.number_input(key=f"gen_{p}_num").value) for p in ("logp", "tpsa")
    }
    assert generate(bundle, targets, 1, seed=0, temperature=1.0)[0].startswith(symbols)


def test_feedback_off_reads_the_empty_molecule_like_an_open_loop_run(
    closed_loop, use_tiny_feedback_checkpoints
):
    step(closed_loop)
    closed_loop.toggle(key="gen_feedback").set_value(False).run()
    assert not closed_loop.exception
    assert closed_loop.session_state.gen_run.chosen == []  # a new run
    assert closed_loop.query_params["feedback"] == "off"
    assert any("open-loop experiment" in c.value for c in closed_loop.caption)
    step(closed_loop, 5)
    run = closed_loop.session_state.gen_run
    assert all(r == {"logp": 0.0, "tpsa": 0.0} for r in run.reads)
    bundle = load_checkpoint(use_tiny_feedback_checkpoints / "default")
    targets = {
        p: float(closed_loop.number_input(key=f"gen_{p}_num").value) for p in ("logp", "tpsa")
    }
    whole = generate_step(
        bundle, targets, n=1, seed=0, sampler=make_sampler(1.0), max_tokens=5, feedback=False
    )
    assert run.chosen == [int(s.tokens[0]) for s in whole][: len(run.chosen)]
    assert any("frozen at the empty molecule" in m.value for m in closed_loop.markdown)


def test_precise_batch_keeps_the_closest_and_shows_the_raw_figures(closed_loop):
    closed_loop.toggle(key="gen_precise").set_value(True).run()
    closed_loop.number_input(key="gen_batch_n").set_value(4).run()
    closed_loop.number_input(key="gen_best_k").set_value(3).run()
    assert any("3 × 4 = 12 molecules" in c.value for c in closed_loop.caption)
    closed_loop.button(key="gen_batch_go").click().run()
    assert not closed_loop.exception
    batch = closed_loop.session_state.gen_batch
    table, kept = batch["table"], batch["kept"]
    assert len(table) == 12 and kept.sum() == 4
    targets = dict(batch["settings"][0])
    best = best_of_k(table, targets, 4)
    assert set(best.index) == set(table.index[kept])
    miss = target_miss(table, targets)
    assert miss[kept].max() <= miss[~kept].min()
    metrics = {m.label: m for m in closed_loop.metric}
    assert metrics["Molecules"].value == "4" and metrics["Molecules"].delta == "12"
    assert metrics["Both within"].delta.endswith("%")  # the raw figure beside the precise one
    assert any("Precise (best-of-3)" in m.value for m in closed_loop.markdown)


def test_precise_without_a_target_says_so_and_stays_raw(closed_loop):
    for p in ("logp", "tpsa"):
        closed_loop.toggle(key=f"gen_use_{p}").set_value(False).run()
    closed_loop.toggle(key="gen_precise").set_value(True).run()
    closed_loop.number_input(key="gen_batch_n").set_value(3).run()
    closed_loop.button(key="gen_batch_go").click().run()
    assert not closed_loop.exception
    assert any("set at least one" in i.value for i in closed_loop.info)
    batch = closed_loop.session_state.gen_batch
    assert len(batch["table"]) == 3 and batch["kept"] is None


def test_ring_control_is_shown_only_for_a_closed_loop_checkpoint(app, closed_loop):
    assert "gen_small_rings" not in [c.key for c in app.checkbox]
    assert "rings" not in app.query_params
    box = closed_loop.checkbox(key="gen_small_rings")
    assert box.value is True and "≤ 7 atoms" in box.label
    assert "drawn again from the model's own distribution" in box.help
    assert closed_loop.query_params["rings"] == "small"
    assert closed_loop.session_state.gen_run.settings.max_ring == 7


def test_rings_of_any_size_reach_the_stepper_and_the_batch(closed_loop, monkeypatch):
    seen = []
    real = core.generate.generate_step

    def spy(*args, **kwargs):
        seen.append(kwargs["max_ring"])
        return real(*args, **kwargs)

    monkeypatch.setattr(core.generate, "generate_step", spy)  # what the page imports for batches
    step(closed_loop)
    closed_loop.checkbox(key="gen_small_rings").uncheck().run()
    assert not closed_loop.exception
    run = closed_loop.session_state.gen_run
    assert run.chosen == [] and run.settings.max_ring is None  # a new run, any ring size
    assert closed_loop.query_params["rings"] == "any"
    step(closed_loop)
    closed_loop.number_input(key="gen_batch_n").set_value(2).run()
    closed_loop.button(key="gen_batch_go").click().run()
    assert not closed_loop.exception and seen == [None]
    closed_loop.checkbox(key="gen_small_rings").check().run()
    assert any("settings changed" in i.value for i in closed_loop.info)
    closed_loop.button(key="gen_batch_go").click().run()
    assert seen == [None, 7]


def test_finishing_on_target_is_off_by_default_and_reaches_the_stepper_and_the_batch(
    app, closed_loop, monkeypatch
):
    """The decoding aid: absent on an open-loop checkpoint, off by default (the model's own
    figures), and once checked its hit windows reach the step-by-step run and the batch, whose
    figures then say the aid was on."""
    assert "gen_on_target" not in [c.key for c in app.checkbox]
    box = closed_loop.checkbox(key="gen_on_target")
    assert box.value is False and "±0.5 LogP" in box.help and "±10 TPSA" in box.help
    assert closed_loop.query_params["finish"] == "any"
    assert closed_loop.session_state.gen_run.settings.finish_window is None
    seen = []
    real = core.generate.generate_step

    def spy(*args, **kwargs):
        seen.append(kwargs["finish_window"])
        return real(*args, **kwargs)

    monkeypatch.setattr(core.generate, "generate_step", spy)
    box.check().run()
    assert not closed_loop.exception and closed_loop.query_params["finish"] == "target"
    window = {"logp": 0.5, "tpsa": 10.0}
    assert dict(closed_loop.session_state.gen_run.settings.finish_window) == window
    step(closed_loop)
    closed_loop.number_input(key="gen_batch_n").set_value(2).run()
    closed_loop.button(key="gen_batch_go").click().run()
    assert not closed_loop.exception and seen == [window]
    assert any("Finish only on target" in c.value for c in closed_loop.caption)


def forced_run(at: AppTest, symbols: list[str], last: str, refused: list[str]):
    """The page's run set to have written ``symbols``, then ``last`` after drawing and
    refusing ``refused`` (its candidates: all of them, best first)."""
    run = at.session_state.gen_run
    tokens = load_checkpoint(run.settings.checkpoint).tokenizer.tokens
    ids = [tokens.index(s) for s in [*symbols, last]]
    written = symbols + ([] if last == "[EOS]" else [last])
    candidates = [tokens.index(s) for s in [*refused, last]]
    run.symbols, run.chosen = written, ids
    run.top_ids = [[i] for i in ids[:-1]] + [candidates]
    run.top_probs = [[1.0]] * (len(ids) - 1) + [[0.5] * len(candidates)]
    run.refused = [[] for _ in symbols] + [[tokens.index(s) for s in refused]]
    run.partial = [partial_properties("".join(written[: i + 1])) for i in range(len(written))]
    return run


def test_refused_symbols_are_shown_with_the_ring_they_would_close(closed_loop):
    ring = ["[C]"] * 9 + ["[Ring1]"]  # the next symbol says how far back the ring closes
    forced_run(closed_loop, ring, "[Branch1]", ["[=Branch2]"])  # a 5-ring instead of a 9-ring
    closed_loop.run()
    assert not closed_loop.exception
    note = "drew `[=Branch2]` → would close a 9-atom ring; refused"
    shown = [c.value for c in closed_loop.caption if note in c.value]
    assert len(shown) == 1 and "then drew `[Branch1]`" in shown[0]
    assert closed_loop.expander[0].label.startswith("1 symbol refused so far")
    assert any(f"step 11: {note}" in m.value for m in closed_loop.markdown)
    bars = next(f["data"][0] for f in figures(closed_loop) if f["data"][0].get("orientation"))
    assert bars["text"] == ["50.0% refused", "50.0%"]


def test_a_molecule_the_closed_loop_ended_says_why(closed_loop):
    run = forced_run(closed_loop, ["[C]", "[C]", "[O]"], "[EOS]", [])
    run.done = run.completed = True
    closed_loop.run()
    assert not closed_loop.exception
    ended = "ended: no further symbol could change the molecule"
    assert any(f"Step 4: next-symbol probabilities** — {ended}" in m.value
               for m in closed_loop.markdown)  # fmt: skip
    assert not any("chose `[EOS]`" in m.value for m in closed_loop.markdown)
    assert any(ended in c.value and "finished ([EOS])" not in c.value for c in closed_loop.caption)
    assert not closed_loop.expander  # nothing refused
    assert any("Finished after 3 symbols" in s.value for s in closed_loop.success)
