"""Generate: molecules aimed at targets for the checkpoint's properties (LogP and TPSA, or
whichever it was trained on), decoded one SELFIES symbol at a time (Play / Pause / Step /
Reset) or in a batch scored against the targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.chem import (
    DESCRIPTOR_LABELS,
    DESCRIPTOR_SHORT,
    DESCRIPTOR_UNITS,
    DESCRIPTORS,
    canonical_smiles,
    mol_to_png,
)
from core.closed_loop import MAX_RING
from core.evaluate import hit_windows, target_metrics
from core.generate import GenerationError, generate_step, make_sampler, score
from core.pool import iterate_on_pool
from core.rerank import best_of_k, target_miss
from core.stepper import Stepper, StepSettings
from core.targets import csv_properties
from ui.charts import batch_scatter, running_figure, top_k_figure, unit_label
from ui.common import (
    checkpoint_data,
    dataset_cloud,
    ensure_app_frame,
    known_smiles,
    require_bundle,
    require_dataset,
)
from ui.elements import drawing, molecule_table
from ui.generate_controls import (
    MAX_BATCH,
    batch_controls,
    feedback_control,
    finish_control,
    fit_to_checkpoint,
    init_settings,
    property_control,
    ring_control,
    sampling_controls,
    sync_url,
)
from ui.refusals import refusals_by_step

ensure_app_frame()

SHORT = DESCRIPTOR_SHORT
UNITS = {p: f" {DESCRIPTOR_UNITS[p]}" if p in DESCRIPTOR_UNITS else "" for p in DESCRIPTORS}
ENDED = "ended: no further symbol could change the molecule"  # a closed loop's own [EOS]
AT_LIMIT = "ended at the length limit: the longest SELFIES the model was trained on"
TICK_SECONDS = 0.5  # one decoding step per tick while playing
GRID_ROWS = 120  # molecules drawn in the batch grid

bundle = require_bundle()
tokenizer = bundle.tokenizer
props = list(bundle.properties)  # one target control per property of the checkpoint
HIT = hit_windows(bundle.scales)  # what counts as on target, per property
STRICT_HIT = hit_windows(bundle.scales, strict=True)
CLOSED_LOOP = bool(bundle.args.feedback)  # every position reads the gap to each target
DATA_KEY = checkpoint_data(bundle)  # the densities, the scatter background, the novelty check
require_dataset(DATA_KEY)

st.title("Generate")
st.write(
    "Set the properties you want, then watch the decoder write a molecule one SELFIES symbol "
    "at a time, or generate a batch and see how close it lands. Every prefix of a SELFIES "
    "string is a valid molecule, so the partial molecule can be drawn and scored as it grows."
)
init_settings(bundle)
fit_to_checkpoint(bundle)
controls, view = st.columns([1, 2], gap="large")
targets: dict[str, float | None] = {}
with controls:
    for p in props:
        with st.container(border=True):
            targets[p] = property_control(bundle, p, DATA_KEY)
    st.caption(
        "Histograms: training molecules; green band: the range they cover (0.5th–99.5th "
        "percentile); red line: your target."
    )
    with st.container(border=True):
        temperature, top_k, seed = sampling_controls(len(tokenizer))
        feedback = feedback_control() if CLOSED_LOOP else True
        max_ring = ring_control() if CLOSED_LOOP else MAX_RING  # an open loop has no ring check
        on_target = finish_control(HIT) if CLOSED_LOOP else False
closed = (feedback, max_ring is not None, on_target) if CLOSED_LOOP else (None, None, None)
sync_url(targets, seed, temperature, top_k, *closed)
FINISH = HIT if on_target else None  # finish_window of generate_step

settings = (
    tuple(targets.items()), int(seed), float(temperature), int(top_k), feedback, max_ring,
    on_target,
)  # fmt: skip
stepping = StepSettings(
    targets, seed, temperature, top_k, feedback=feedback, max_ring=max_ring,
    checkpoint=str(bundle.path), finish_window=None if FINISH is None else tuple(FINISH.items()),
)  # fmt: skip
if getattr(st.session_state.get("gen_run"), "settings", None) != stepping:
    st.session_state.gen_run = Stepper(stepping)
active = {p: v for p, v in targets.items() if v is not None}


def gap_text(read: dict) -> str:
    """The gaps one position read, e.g. ``LogP +1.20 · TPSA +35.4 Å²``."""
    return " · ".join(f"{SHORT[p]} {targets[p] - read[p]:+.2f}{UNITS[p]}" for p in active)


def final_summary(run: Stepper) -> None:
    """The finished molecule: drawing, RDKit properties against the targets, novelty."""
    last = next((q for q in reversed(run.partial) if q is not None), None)
    if last is None:
        st.error("The decoder stopped before writing any atom.")
        return
    smiles = canonical_smiles(last["smiles"])
    novel = smiles not in known_smiles(DATA_KEY)
    rows = [
        {
            "property": DESCRIPTOR_LABELS[p],
            "target": "free" if target is None else f"{target:g}",
            "achieved (RDKit)": round(last[p], 2),
            "|Δ|": None if target is None else round(abs(last[p] - target), 2),
            "hit": None if target is None else abs(last[p] - target) <= HIT[p],
        }
        for p, target in targets.items()
    ]
    st.success(f"Finished after {len(run.symbols)} symbols: `{smiles}`")
    left, right = st.columns([1, 2])
    left.image(mol_to_png(smiles, size=(320, 240)))
    window = " / ".join(f"±{HIT[p]:g}{UNITS[p]} {SHORT[p]}" for p in props)
    right.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        column_config={"hit": st.column_config.CheckboxColumn("Hit", help=f"Within {window}")},
    )
    right.markdown(
        "**Novel**: not in the dataset." if novel else "**Not novel**: it is in the dataset."
    )


@st.fragment(run_every=TICK_SECONDS if st.session_state.gen_run.playing else None)
def step_by_step() -> None:
    run: Stepper = st.session_state.gen_run
    buttons = st.container(horizontal=True, vertical_alignment="center")
    play = buttons.button(
        "Pause" if run.playing else "Play",
        key="gen_play",
        icon=":material/pause:" if run.playing else ":material/play_arrow:",
        disabled=run.done,
        type="primary",
    )
    step = buttons.button(
        "Step", key="gen_step", icon=":material/skip_next:", disabled=run.done or run.playing
    )
    reset = buttons.button("Reset", key="gen_reset", icon=":material/restart_alt:")
    if play:
        run.toggle_play()
        st.rerun()  # the whole page, so the fragment's timer starts or stops
    if reset:
        run.reset()
        st.rerun()
    if (step or run.playing) and not run.done:
        run.step(bundle)
        if run.done:  # the buttons above were drawn before the end, the timer may run
            st.rerun()

    n = len(run.symbols)
    conditions = " ".join(
        f"[{SHORT[p]} {'free' if v is None else f'{v:g}'}]" for p, v in targets.items()
    )
    reads = ""
    if CLOSED_LOOP:
        reads = "; each [BOS]/symbol position also reads per target the gap (target − property "
        reads += "so far)" if feedback else "so far), frozen at the empty molecule: feedback off"
    ending = ENDED if run.completed else AT_LIMIT if run.at_limit else ""
    ending = ending or ("finished ([EOS])" if run.done else "")
    buttons.caption(
        f"Decoder input: {conditions} [z] [BOS] + the symbols so far{reads} · "
        f"{n} symbol{'s' * (n != 1)} decoded" + (f" · {ending}" if ending else "")
    )
    if not run.chosen:
        st.info("Press **Step** to decode the first symbol, or **Play** to watch it run.")
        return
    st.code("".join(run.symbols) or "(nothing yet)", language=None, wrap_lines=True)
    refusals = refusals_by_step(run.symbols, run.refused, tokenizer.tokens, props)
    if refusals:
        n_refused = sum(len(notes) for notes in refusals.values())
        with st.expander(f"{n_refused} symbol{'s' * (n_refused != 1)} refused so far: "
                         f"{refusal_rule()}", icon=":material/block:"):  # fmt: skip
            st.markdown("\n".join(f"- step {k}: " + " · ".join(v) for k, v in refusals.items()))
    left, right = st.columns([2, 3])
    with left:
        next_symbol(run, refusals.get(len(run.chosen), []))
        if run.reads and active:
            frozen = "" if feedback else " — frozen at the empty molecule (feedback off)"
            st.markdown(
                f"**Gap read at this step** (target − property so far): "
                f"{gap_text(run.reads[-1])}{frozen}"
            )
    with right:
        last = run.partial[-1] if run.partial else None
        if last is None:
            st.info("No atom yet: the symbols so far only open a branch or ring.")
        else:
            st.markdown(
                f"**Partial molecule** `{canonical_smiles(last['smiles'])}` — newest atom "
                "highlighted · " + " · ".join(f"{SHORT[p]} {last[p]:.2f}" for p in props)
            )
            png = mol_to_png(last["smiles"], size=(420, 260), highlight_atoms=[last["newest_atom"]])
            st.image(png)
    running_charts(run)
    if run.done:
        final_summary(run)


def next_symbol(run: Stepper, refusals: list[str]) -> None:
    """The last step: its candidates, the symbol chosen (or why the molecule ended) and the
    symbols a closed loop drew and refused first (``refusals``: their notes)."""
    chosen = tokenizer.tokens[run.chosen[-1]]
    outcome = ENDED if run.completed else f"chose `{chosen}`"
    st.markdown(f"**Step {len(run.chosen)}: next-symbol probabilities** — {outcome}")
    labels = [tokenizer.tokens[i] for i in run.top_ids[-1]]
    refused = [tokenizer.tokens[i] for i in run.refused[-1]]
    shown = "" if run.completed else chosen  # the model did not draw this [EOS]
    st.plotly_chart(
        top_k_figure(labels, run.top_probs[-1], shown, refused),
        key="gen_topk",
        config={"displayModeBar": False},
    )
    if run.completed:
        st.caption(
            "The token is still [EOS]: the closed loop ended the molecule because the symbol "
            "drawn, and any after it, would leave it as it is."
        )
    elif run.chosen[-1] not in run.top_ids[-1]:
        st.caption(f"The chosen symbol is outside the {run.settings.report_top} most probable.")
    if refusals:
        redrawn = f"then drew `{chosen}`"
        if run.completed:
            redrawn = "then drew one that changed nothing"
        elif run.chosen[-1] == tokenizer.eos_id:
            redrawn = "then ended the molecule"
        st.caption(
            ":material/block: " + " · ".join(refusals) + f" · {redrawn} ({refusal_rule()}: a "
            "refused symbol is drawn again from the same distribution without it)"
        )


def refusal_rule() -> str:
    """What the closed loop refuses at these settings, in a few words."""
    rules = [] if max_ring is None else [f"rings > {max_ring} atoms"]
    if on_target:
        rules.append("an end outside the hit window")
    return " or ".join(rules)


def running_charts(run: Stepper) -> None:
    """Each property of the partial molecule after every symbol, and for a closed-loop model
    the gap to the target it read before choosing each symbol."""
    if CLOSED_LOOP:
        st.markdown("**What the model reads: gap = target − property so far**")
        note = (
            "Blue: the partial molecule's property after each symbol (RDKit). Orange: what the "
            "position that chose each symbol read: the property of the molecule before it "
            "(diamond) and its gap to the target (bar). A free property reads nothing."
        )
        if not feedback:
            note += (
                " Feedback is off: every position read the empty molecule, so the bars stay at "
                "the whole target however the molecule grows."
            )
        st.caption(note)
    else:
        st.caption(
            "The partial molecule's properties after each symbol (RDKit). This checkpoint is "
            "open loop: the model never reads them, only the targets at the start."
        )
    for p, col in zip(props, st.columns(len(props)), strict=True):
        values = [None if q is None else q[p] for q in run.partial]
        reads = [r[p] for r in run.reads] if run.reads else None
        col.plotly_chart(
            running_figure(values, DESCRIPTOR_LABELS[p], targets[p], HIT[p], reads),
            key=f"gen_running_{p}",
            config={"displayModeBar": False},
        )


def run_batch(total: int) -> pd.DataFrame:
    """``total`` molecules at the current settings, decoded ``MAX_BATCH`` at a time and seeded
    as ``core.generate.generate`` seeds its batches (the same molecules as with this seed)."""
    bar = st.progress(0.0, text="Decoding…")
    sampler = make_sampler(temperature, top_k)
    selfies = []
    for start in range(0, total, MAX_BATCH):
        size = min(MAX_BATCH, total - start)
        steps = iterate_on_pool(
            generate_step, bundle, targets, n=size, seed=int(seed) + start, sampler=sampler,
            report_top=1, feedback=feedback, max_ring=max_ring, finish_window=FINISH,
        )  # fmt: skip
        rows = []
        for step in steps:
            rows.append(step.tokens)
            position = min(1.0, (step.index + 1) / bundle.token_limit)
            bar.progress(
                (start + position * size) / total,
                text=f"Molecules {start + 1}–{start + size} of {total}, position "
                f"{step.index + 1}: {int(step.done.sum())} of {size} finished",
            )
        selfies += [tokenizer.decode(r) for r in np.stack(rows, axis=1)]
    bar.progress(1.0, text="Scoring with RDKit…")
    table = score(selfies, csv_properties(bundle.properties))
    table["novel"] = [s != "" and s not in known_smiles(DATA_KEY) for s in table.smiles]
    bar.empty()
    return table


def batch_figures(table: pd.DataFrame, used: dict[str, float]) -> list[dict[str, str]]:
    """The figures of a batch as two rows of label -> value: the molecules, then the
    distance to each target."""
    m = target_metrics(table, used, HIT, STRICT_HIT)
    valid = table[table.smiles != ""]
    general = {
        "Molecules": f"{len(table):,}",
        "Valid": f"{m['validity']:.0%}",
        "Unique (of valid)": f"{m['uniqueness']:.0%}",
        "Novel (of valid)": f"{valid.novel.mean() if len(valid) else 0:.0%}",
    }
    hits = {f"{SHORT[p]} MAD{unit_label(p)}": f"{m[f'mad_{p}']:.2f}" for p in used}
    hits |= {f"{SHORT[p]} within ±{HIT[p]:g}": f"{m[f'hit_{p}']:.0%}" for p in used}
    if len(used) > 1:
        hits["Both within"] = f"{m['hit_joint']:.0%}"
    return [general, hits]


def batch_view() -> None:
    n, k, pressed = batch_controls(bool(active))
    if pressed:
        table = run_batch(n * k)
        kept = None if k == 1 else table.index.isin(best_of_k(table, active, n, HIT).index)
        st.session_state.gen_batch = {"settings": settings, "table": table, "kept": kept, "k": k}
    batch = st.session_state.get("gen_batch")
    if batch is None:
        st.info(f"Generate up to {MAX_BATCH} molecules at the settings above.")
        return
    table, kept, used = batch["table"], batch.get("kept"), dict(batch["settings"][0])
    if batch["settings"] != settings:
        st.info("The settings changed since this batch was made; press **Generate batch**.")
    used_active = {p: v for p, v in used.items() if v is not None}
    chosen = table if kept is None else table[kept]
    rows = batch_figures(chosen, used_active)
    if batch["settings"][-1] and used_active:
        st.caption(
            ":material/flag: **Finish only on target** was on: symbols that would have ended a "
            "molecule outside the hit window were drawn again, so these hit rates are the "
            "model's with a decoding aid that knows the targets; turn it off for the model's own."
        )
    if kept is not None:
        raw_rows = batch_figures(table, used_active)
        st.markdown(
            f"**Precise (best-of-{batch['k']}):** the {len(chosen)} molecules "
            f"closest to the targets of {len(table):,} generated. Under each figure, in grey: "
            f"the **raw** figure of all {len(table):,}, unfiltered."
        )
    for i, row in enumerate(rows):
        for col, (label, value) in zip(st.columns(max(len(row), 1)), row.items(), strict=False):
            raw = {}
            if kept is not None:
                raw = dict(delta=raw_rows[i][label], delta_arrow="off", delta_description="raw")
            col.metric(label, value, delta_color="off", **raw)
    cloud = dataset_cloud(DATA_KEY)
    st.plotly_chart(batch_scatter(table, cloud, used, HIT, kept), key="gen_batch_scatter")
    batch_grid(chosen, used_active, kept is not None)
    export = table if kept is None else table.assign(kept=kept)
    st.download_button(
        "Download CSV",
        export.to_csv(index=False),
        file_name="molscope_batch.csv",
        mime="text/csv",
        key="gen_batch_csv",
    )


def batch_grid(table: pd.DataFrame, used: dict[str, float], precise: bool) -> None:
    """The valid molecules drawn with their properties, closest to the targets first."""
    shown = table[table.smiles != ""].copy()
    n_valid = len(shown)
    if used:
        shown = shown.iloc[np.argsort(target_miss(shown, used, HIT), kind="stable")]
    shown = shown.head(GRID_ROWS)
    shown["structure"] = [drawing(s, size=(200, 140)) for s in shown.smiles]
    columns = {p: st.column_config.NumberColumn(DESCRIPTOR_LABELS[p], format="%.2f") for p in props}
    for p, v in used.items():
        shown[f"miss_{p}"] = (shown[p] - v).abs()
        columns[f"miss_{p}"] = st.column_config.NumberColumn(f"|Δ{SHORT[p]}|", format="%.2f")
    columns |= {"novel": st.column_config.CheckboxColumn("Novel"), "smiles": "SMILES"}
    molecule_table(
        shown, "gen_batch_grid", columns, label="Molecule", column_order=["structure", *columns]
    )
    order = "closest to the target first" if used else "in generation order"
    which = " kept" if precise else ""
    st.caption(f"{len(shown)} of {n_valid} valid{which} molecules, {order}.")


with view:
    tab_step, tab_batch = st.tabs(["Step by step", "Batch"])
    with tab_step:
        step_by_step()
    with tab_batch:
        try:
            batch_view()
        except GenerationError as exc:
            st.error(str(exc))
