"""Generate: molecules aimed at a target LogP and TPSA, decoded one SELFIES symbol at a time
(Play / Pause / Step / Reset) or in a batch scored against the targets."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.chem import DESCRIPTOR_LABELS, canonical_smiles, mol_to_png, png_data_uri
from core.evaluate import HIT, target_metrics
from core.generate import GenerationError, generate_step, make_sampler, score
from core.inspect import partial_properties
from core.pool import iterate_on_pool, on_pool
from pages.common import (
    cached_dataset,
    ensure_app_frame,
    require_bundle,
    require_dataset,
    url_float,
    url_int,
)

ensure_app_frame()

SHORT = {"logp": "LogP", "tpsa": "TPSA"}
UNITS = {"logp": "", "tpsa": " Å²"}
UNIT_LABELS = {"logp": "", "tpsa": " (Å²)"}
STEP = {"logp": 0.1, "tpsa": 1.0}  # slider resolution
TICK_SECONDS = 0.5  # one decoding step per tick while playing
MAX_BATCH = 500
MAX_SEED = 2**31 - 1
GRID_ROWS = 120  # molecules drawn in the batch grid
CHOSEN, OTHER, TARGET = "#d62728", "#7f9fbf", "#2ca02c"

bundle = require_bundle()
data = require_dataset()
tokenizer = bundle.tokenizer
props = [p for p in bundle.properties if p in SHORT]


def wide_range(p: str) -> tuple[float, float]:
    """Bounds of the number input: the data range plus half its width on each side, on the
    0.01 grid (a value rounded to two decimals, as the inputs keep them, stays inside)."""
    lo, hi = bundle.scales[p].lo, bundle.scales[p].hi
    pad = (hi - lo) / 2
    low = max(0.0, lo - pad) if lo >= 0 else lo - pad
    return math.floor(low * 100) / 100, math.ceil((hi + pad) * 100) / 100


def slider_range(p: str) -> tuple[float, float]:
    """The data's range (0.5th–99.5th percentile of the training split), on the slider grid."""
    s = STEP[p]
    lo, hi = math.floor(bundle.scales[p].lo / s) * s, math.ceil(bundle.scales[p].hi / s) * s
    return round(lo, 2), round(hi, 2)


def snap(p: str, value: float) -> float:
    lo, hi = slider_range(p)
    return round(round(min(max(value, lo), hi) / STEP[p]) * STEP[p], 2)


@st.cache_data(show_spinner=False)
def histogram(path_key: str, p: str, lo: float, hi: float, bins: int = 60):
    """Counts of the dataset's training molecules per bin of property ``p`` over [lo, hi]."""
    table = cached_dataset()
    values = table.loc[table.split == "train", p].to_numpy()
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.tolist(), edges.tolist()


@st.cache_resource(show_spinner=False)
def known_smiles(path_key: str) -> frozenset[str]:
    """Canonical SMILES of every dataset molecule (for the novelty check)."""
    return frozenset(cached_dataset().smiles)


@st.cache_data(show_spinner=False)
def dataset_cloud(path_key: str, n: int = 3000) -> pd.DataFrame:
    """A fixed random sample of the dataset's LogP/TPSA pairs (scatter background)."""
    table = cached_dataset()
    return table[["logp", "tpsa"]].sample(min(n, len(table)), random_state=0)


DATA_KEY = str(len(data))  # cache key for the helpers above (one dataset per app)


def init_settings() -> None:
    """Fill each missing widget state once per session, from the URL where it says something."""
    state = st.session_state
    for p in props:
        if f"gen_{p}_num" in state:
            continue
        raw = st.query_params.get(p)
        default = snap(p, bundle.scales[p].mean)
        free = raw == "free"
        value = default if raw is None or free else url_float(p, default, *wide_range(p))
        state[f"gen_use_{p}"] = not free
        state[f"gen_{p}_num"] = round(value, 2)
        state[f"gen_{p}_slider"] = snap(p, value)
    if "gen_temperature" not in state:
        state.gen_temperature = url_float("temperature", 1.0, 0.0, 2.0)
    if "gen_top_k" not in state:
        state.gen_top_k = url_int("top_k", 0, 0, len(tokenizer))
    if "gen_seed" not in state:
        state.gen_seed = url_int("seed", 0, 0, MAX_SEED)


def fit_to_checkpoint() -> None:
    """Bring values kept from another checkpoint into this one's ranges (widgets refuse
    values outside their bounds)."""
    for p in props:
        lo, hi = wide_range(p)
        number = st.session_state[f"gen_{p}_num"]
        if not lo <= number <= hi:
            st.session_state[f"gen_{p}_num"] = round(min(max(number, lo), hi), 2)
        st.session_state[f"gen_{p}_slider"] = snap(p, st.session_state[f"gen_{p}_slider"])
    st.session_state.gen_top_k = min(st.session_state.gen_top_k, len(tokenizer))


def slider_moved(p: str) -> None:
    st.session_state[f"gen_{p}_num"] = float(st.session_state[f"gen_{p}_slider"])


def number_typed(p: str) -> None:
    st.session_state[f"gen_{p}_slider"] = snap(p, st.session_state[f"gen_{p}_num"])


def new_seed() -> None:
    st.session_state.gen_seed = random.randrange(MAX_SEED)


def band(lo: float, hi: float, axis: str = "y") -> dict:
    """A shaded band across the plot (a layout shape: far cheaper than ``add_hrect``)."""
    across = (
        {"x0": 0, "x1": 1, "xref": "paper"} if axis == "y" else {"y0": 0, "y1": 1, "yref": "paper"}
    )
    along = {"y0": lo, "y1": hi} if axis == "y" else {"x0": lo, "x1": hi}
    return dict(
        type="rect", **across, **along, fillcolor=TARGET, opacity=0.12, line_width=0, layer="below"
    )


def line(at: float, axis: str = "y", colour: str = TARGET, dash: str = "dash") -> dict:
    """A line across the plot at ``at`` on ``axis`` (a layout shape)."""
    across = (
        {"x0": 0, "x1": 1, "xref": "paper"} if axis == "y" else {"y0": 0, "y1": 1, "yref": "paper"}
    )
    along = {"y0": at, "y1": at} if axis == "y" else {"x0": at, "x1": at}
    return dict(type="line", **across, **along, line=dict(color=colour, dash=dash, width=2))


def density_figure(p: str, target: float | None) -> go.Figure:
    """The dataset's histogram of ``p`` with its covered range shaded and the target marked."""
    lo, hi = wide_range(p)
    counts, edges = histogram(DATA_KEY, p, lo, hi)
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    scale = bundle.scales[p]
    covered = band(scale.lo, scale.hi, axis="x") | {"fillcolor": "#2ca02c", "opacity": 0.1}
    shapes = [covered] + ([] if target is None else [line(target, "x", CHOSEN, "solid")])
    fig = go.Figure(
        go.Bar(x=centres, y=counts, marker_color="#b0b7c3", hoverinfo="skip"),
        layout=dict(
            height=90,
            margin=dict(l=0, r=0, t=0, b=0),
            bargap=0,
            showlegend=False,
            shapes=shapes,
            xaxis=dict(range=[lo, hi], title=None),
            yaxis=dict(visible=False),
        ),
    )
    return fig


def property_control(p: str) -> float | None:
    """Toggle, slider, exact value and the data's density for one property."""
    use = st.toggle(
        f"Target {DESCRIPTOR_LABELS[p]}",
        key=f"gen_use_{p}",
        persist_state="session",
        help="Off: leave this property unconditioned (the model picks it freely).",
    )
    lo, hi = slider_range(p)
    st.slider(
        DESCRIPTOR_LABELS[p],
        lo,
        hi,
        step=STEP[p],
        key=f"gen_{p}_slider",
        disabled=not use,
        on_change=slider_moved,
        args=(p,),
        persist_state="session",
        label_visibility="collapsed",
    )
    wide_lo, wide_hi = wide_range(p)
    value = st.number_input(
        "Exact value",
        wide_lo,
        wide_hi,
        step=STEP[p],
        key=f"gen_{p}_num",
        disabled=not use,
        on_change=number_typed,
        args=(p,),
        persist_state="session",
        format="%.2f" if p == "logp" else "%.1f",
        help="Type any value, also outside the range the data covers.",
    )
    target = float(value) if use else None
    st.plotly_chart(
        density_figure(p, target), key=f"gen_density_{p}", config={"displayModeBar": False}
    )
    scale = bundle.scales[p]
    if target is not None and not scale.lo <= target <= scale.hi:
        st.warning(
            f"{SHORT[p]} = {target:g}{UNITS[p]} is outside the range the training data covers "
            f"({scale.lo:.2f} – {scale.hi:.2f}{UNITS[p]}); the model has hardly seen such "
            "molecules, so expect it to miss."
        )
    return target


def sampling_controls() -> tuple[float, int, int]:
    """Temperature, top-k and seed."""
    temperature = st.slider(
        "Temperature",
        0.0,
        2.0,
        step=0.05,
        key="gen_temperature",
        persist_state="session",
        help="0 = always the most probable symbol; 1 = the model's own distribution.",
    )
    c_k, c_seed, c_new = st.columns([2, 3, 1], vertical_alignment="bottom")
    top_k = c_k.number_input(
        "Top-k",
        0,
        len(tokenizer),
        step=1,
        key="gen_top_k",
        persist_state="session",
        help="Sample only among the k most probable symbols (0 = all).",
    )
    seed = c_seed.number_input(
        "Seed",
        0,
        MAX_SEED,
        step=1,
        key="gen_seed",
        persist_state="session",
        help="The same settings and seed give the same molecule, here and on the command line.",
    )
    c_new.button(
        "",
        key="gen_new_seed",
        icon=":material/casino:",
        on_click=new_seed,
        help="Pick a random seed",
    )
    return float(temperature), int(top_k), int(seed)


st.title("Generate")
st.write(
    "Set the properties you want, then watch the decoder write a molecule one SELFIES symbol "
    "at a time, or generate a batch and see how close it lands. Every prefix of a SELFIES "
    "string is a valid molecule, so the partial molecule can be drawn and scored as it grows."
)
init_settings()
fit_to_checkpoint()
controls, view = st.columns([1, 2], gap="large")
targets: dict[str, float | None] = {}
with controls:
    for p in props:
        with st.container(border=True):
            targets[p] = property_control(p)
    st.caption(
        "Histograms: training molecules; green band: the range they cover (0.5th–99.5th "
        "percentile); red line: your target."
    )
    with st.container(border=True):
        temperature, top_k, seed = sampling_controls()

query = {p: ("free" if v is None else f"{v:g}") for p, v in targets.items()}
query |= {"seed": str(seed), "temperature": f"{temperature:g}", "top_k": str(top_k)}
st.query_params.update(query)

settings = (tuple(targets.items()), int(seed), float(temperature), int(top_k))
sampler = make_sampler(temperature, top_k)
report_top = min(top_k, 15) if top_k else 10
active = {p: v for p, v in targets.items() if v is not None}


def fresh_run() -> dict:
    """Plain-data state of one step-by-step decoding (safe across reruns and threads)."""
    return {
        "settings": settings,
        "symbols": [],  # SELFIES symbols chosen so far
        "chosen": [],  # token id chosen at each step ([EOS] included)
        "top_ids": [],  # per step: the report_top most probable ids
        "top_probs": [],  # per step: their probabilities
        "partial": [],  # per symbol: partial_properties of the prefix (or None)
        "done": False,
        "playing": False,
    }


if st.session_state.get("gen_run", {}).get("settings") != settings:
    st.session_state.gen_run = fresh_run()


def take_step(run: dict) -> None:
    """Decode one more symbol, continuing exactly as an uninterrupted run with this seed."""
    step = on_pool(
        lambda: next(
            generate_step(
                bundle,
                targets,
                n=1,
                seed=int(seed),
                sampler=sampler,
                prefix="".join(run["symbols"]),
                max_tokens=1,
                report_top=report_top,
            )
        )
    )
    token = int(step.tokens[0])
    run["chosen"].append(token)
    run["top_ids"].append(step.top_ids[0].tolist())
    run["top_probs"].append(step.top_probs[0].tolist())
    if token == tokenizer.eos_id:
        run["done"] = True
        return
    run["symbols"].append(tokenizer.tokens[token])
    run["partial"].append(partial_properties("".join(run["symbols"])))
    run["done"] = len(run["symbols"]) >= bundle.args.max_len


def top_k_figure(run: dict) -> go.Figure:
    """The latest step's most probable next symbols, the chosen one in red."""
    ids, probs, chosen = run["top_ids"][-1], run["top_probs"][-1], run["chosen"][-1]
    labels = [tokenizer.tokens[i] for i in ids]
    colours = [CHOSEN if i == chosen else OTHER for i in ids]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            marker_color=colours,
            text=[f"{q:.1%}" for q in probs],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 + 24 * len(ids),
        margin=dict(l=0, r=40, t=10, b=0),
        xaxis=dict(range=[0, max(probs) * 1.15], tickformat=".0%", title="probability"),
        yaxis=dict(autorange="reversed", type="category"),
    )
    return fig


def running_figure(run: dict, p: str) -> go.Figure:
    """Property ``p`` of the partial molecule after each symbol, against the target band."""
    values = [None if q is None else q[p] for q in run["partial"]]
    target = targets[p]
    shapes = [] if target is None else [band(target - HIT[p], target + HIT[p]), line(target)]
    scatter = go.Scatter(
        x=list(range(1, len(values) + 1)),
        y=values,
        mode="lines+markers",
        line_color="#1f77b4",
        hovertemplate="after symbol %{x}: %{y:.2f}<extra></extra>",
    )
    title = DESCRIPTOR_LABELS[p] + ("" if target is None else f" · target {target:g} ± {HIT[p]:g}")
    return go.Figure(
        scatter,
        layout=dict(
            title=dict(text=title, font_size=13),
            shapes=shapes,
            height=240,
            margin=dict(l=0, r=0, t=30, b=0),
            xaxis=dict(title="symbols decoded", tick0=1, dtick=max(1, len(values) // 8)),
        ),
    )


def final_summary(run: dict) -> None:
    """The finished molecule: drawing, RDKit properties against the targets, novelty."""
    last = next((q for q in reversed(run["partial"]) if q is not None), None)
    if last is None:
        st.error("The decoder stopped before writing any atom.")
        return
    smiles = canonical_smiles(last["smiles"])
    novel = smiles not in known_smiles(DATA_KEY)
    rows = []
    for p in props:
        target = targets[p]
        hit = None if target is None else abs(last[p] - target) <= HIT[p]
        rows.append(
            {
                "property": DESCRIPTOR_LABELS[p],
                "target": "free" if target is None else f"{target:g}",
                "achieved (RDKit)": round(last[p], 2),
                "|Δ|": None if target is None else round(abs(last[p] - target), 2),
                "hit": hit,
            }
        )
    st.success(f"Finished after {len(run['symbols'])} symbols: `{smiles}`")
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


@st.fragment(run_every=TICK_SECONDS if st.session_state.gen_run["playing"] else None)
def step_by_step() -> None:
    run = st.session_state.gen_run
    buttons = st.container(horizontal=True, vertical_alignment="center")
    playing = run["playing"]
    play = buttons.button(
        "Pause" if playing else "Play",
        key="gen_play",
        icon=":material/pause:" if playing else ":material/play_arrow:",
        disabled=run["done"],
        type="primary",
    )
    step = buttons.button(
        "Step", key="gen_step", icon=":material/skip_next:", disabled=run["done"] or playing
    )
    reset = buttons.button("Reset", key="gen_reset", icon=":material/restart_alt:")
    if play:
        run["playing"] = not playing
        st.rerun()  # the whole page, so the fragment's timer starts or stops
    if reset:
        st.session_state.gen_run = fresh_run()
        st.rerun()
    if (step or playing) and not run["done"]:
        take_step(run)
        if run["done"] and not playing:
            st.rerun()  # the buttons above were drawn before the end: redraw them off
    if run["done"] and playing:
        run["playing"] = False
        st.rerun()

    n = len(run["symbols"])
    conditions = " ".join(
        f"[{SHORT[p]} {'free' if v is None else f'{v:g}'}]" for p, v in targets.items()
    )
    buttons.caption(
        f"Decoder input: {conditions} [z] [BOS] + the symbols so far · "
        f"{n} symbol{'s' * (n != 1)} decoded" + (" · finished ([EOS])" if run["done"] else "")
    )
    if not run["chosen"]:
        st.info("Press **Step** to decode the first symbol, or **Play** to watch it run.")
        return
    st.code("".join(run["symbols"]) or "(nothing yet)", language=None, wrap_lines=True)
    left, right = st.columns([2, 3])
    with left:
        chosen = tokenizer.tokens[run["chosen"][-1]]
        st.markdown(f"**Step {len(run['chosen'])}: next-symbol probabilities** — chose `{chosen}`")
        st.plotly_chart(top_k_figure(run), key="gen_topk", config={"displayModeBar": False})
        if run["chosen"][-1] not in run["top_ids"][-1]:
            st.caption(f"The chosen symbol is outside the {report_top} most probable.")
    with right:
        last = run["partial"][-1] if run["partial"] else None
        if last is None:
            st.info("No atom yet: the symbols so far only open a branch or ring.")
        else:
            st.markdown(
                f"**Partial molecule** `{canonical_smiles(last['smiles'])}` — newest atom "
                "highlighted · " + " · ".join(f"{SHORT[p]} {last[p]:.2f}" for p in props)
            )
            png = mol_to_png(last["smiles"], size=(420, 260), highlight_atoms=[last["newest_atom"]])
            st.image(png)
    for p, col in zip(props, st.columns(len(props)), strict=True):
        col.plotly_chart(
            running_figure(run, p), key=f"gen_running_{p}", config={"displayModeBar": False}
        )
    if run["done"]:
        final_summary(run)


def run_batch(n: int) -> pd.DataFrame:
    """``n`` molecules at the current settings (the same as ``core.generate`` with this seed)."""
    bar = st.progress(0.0, text="Decoding…")
    rows = []
    steps = iterate_on_pool(
        generate_step, bundle, targets, n=n, seed=int(seed), sampler=sampler, report_top=1
    )
    for step in steps:
        rows.append(step.tokens)
        finished = int(step.done.sum())
        bar.progress(
            min(1.0, (step.index + 1) / bundle.args.max_len),
            text=f"Position {step.index + 1}: {finished} of {n} molecules finished",
        )
    bar.progress(1.0, text="Scoring with RDKit…")
    ids = np.stack(rows, axis=1)
    table = score([tokenizer.decode(r) for r in ids])
    table["novel"] = [s != "" and s not in known_smiles(DATA_KEY) for s in table.smiles]
    bar.empty()
    return table


def batch_scatter(table: pd.DataFrame, used: dict[str, float | None]) -> go.Figure:
    cloud = dataset_cloud(DATA_KEY)
    valid = table[table.smiles != ""]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=cloud.logp,
            y=cloud.tpsa,
            mode="markers",
            name="dataset",
            marker=dict(size=3, color="#c7ccd4"),
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=valid.logp,
            y=valid.tpsa,
            mode="markers",
            name="generated",
            marker=dict(size=7, color="#1f77b4", line=dict(width=0.5, color="white")),
            text=valid.smiles,
            hovertemplate="%{text}<br>LogP %{x:.2f}, TPSA %{y:.1f}<extra></extra>",
        )
    )
    lp, tp = used.get("logp"), used.get("tpsa")
    shapes = []
    if lp is not None and tp is not None:
        box = dict(
            x0=lp - HIT["logp"], x1=lp + HIT["logp"], y0=tp - HIT["tpsa"], y1=tp + HIT["tpsa"]
        )
        shapes.append(dict(type="rect", **box, line_color=TARGET, fillcolor=TARGET, opacity=0.2))
    elif lp is not None:
        shapes.append(band(lp - HIT["logp"], lp + HIT["logp"], axis="x"))
    elif tp is not None:
        shapes.append(band(tp - HIT["tpsa"], tp + HIT["tpsa"]))
    if lp is not None:
        shapes.append(line(lp, "x"))
    if tp is not None:
        shapes.append(line(tp))
    fig.update_layout(
        shapes=shapes,
        height=420,
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis_title=DESCRIPTOR_LABELS["logp"],
        yaxis_title=DESCRIPTOR_LABELS["tpsa"],
        legend=dict(orientation="h", y=1.02, x=0),
    )
    return fig


def batch_view() -> None:
    c_n, c_go = st.columns([2, 1], vertical_alignment="bottom")
    n = c_n.number_input("Molecules", 1, MAX_BATCH, value=100, step=10, key="gen_batch_n")
    if c_go.button("Generate batch", key="gen_batch_go", type="primary", width="stretch"):
        st.session_state.gen_batch = {"settings": settings, "table": run_batch(int(n))}
    batch = st.session_state.get("gen_batch")
    if batch is None:
        st.info(f"Generate up to {MAX_BATCH} molecules at the settings above.")
        return
    table, used = batch["table"], dict(batch["settings"][0])
    if batch["settings"] != settings:
        st.info("The settings changed since this batch was made; press **Generate batch**.")
    used_active = {p: v for p, v in used.items() if v is not None}
    m = target_metrics(table, used_active)
    valid = table[table.smiles != ""]
    cols = st.columns(4)
    cols[0].metric("Molecules", len(table))
    cols[1].metric("Valid", f"{m['validity']:.0%}")
    cols[2].metric("Unique (of valid)", f"{m['uniqueness']:.0%}")
    cols[3].metric("Novel (of valid)", f"{valid.novel.mean() if len(valid) else 0:.0%}")
    hits = [(f"{SHORT[p]} MAD{UNIT_LABELS[p]}", f"{m[f'mad_{p}']:.2f}") for p in used_active]
    hits += [(f"{SHORT[p]} within ±{HIT[p]:g}", f"{m[f'hit_{p}']:.0%}") for p in used_active]
    if len(used_active) > 1:
        hits.append(("Both within", f"{m['hit_joint']:.0%}"))
    for col, (label, value) in zip(st.columns(max(len(hits), 1)), hits, strict=False):
        col.metric(label, value)
    st.plotly_chart(batch_scatter(table, used), key="gen_batch_scatter")
    shown = valid.copy()
    if used_active:  # best first: deviations in units of the hit window, summed
        shown["miss"] = sum((shown[p] - v).abs() / HIT[p] for p, v in used_active.items())
        shown = shown.sort_values("miss")
    shown = shown.head(GRID_ROWS)
    shown["molecule"] = [png_data_uri(mol_to_png(s, size=(200, 140))) for s in shown.smiles]
    columns = {"molecule": st.column_config.ImageColumn("Molecule", width="medium")}
    columns |= {
        p: st.column_config.NumberColumn(DESCRIPTOR_LABELS[p], format="%.2f") for p in props
    }
    for p, v in used_active.items():
        shown[f"miss_{p}"] = (shown[p] - v).abs()
        columns[f"miss_{p}"] = st.column_config.NumberColumn(f"|Δ{SHORT[p]}|", format="%.2f")
    columns |= {"novel": st.column_config.CheckboxColumn("Novel"), "smiles": "SMILES"}
    st.dataframe(
        shown,
        hide_index=True,
        row_height=110,
        column_order=list(columns),
        column_config=columns,
        key="gen_batch_grid",
    )
    order = "closest to the target first" if used_active else "in generation order"
    st.caption(f"{min(len(valid), GRID_ROWS)} of {len(valid)} valid molecules, {order}.")
    st.download_button(
        "Download CSV",
        table.to_csv(index=False),
        file_name="molscope_batch.csv",
        mime="text/csv",
        key="gen_batch_csv",
    )


with view:
    tab_step, tab_batch = st.tabs(["Step by step", "Batch"])
    with tab_step:
        step_by_step()
    with tab_batch:
        try:
            batch_view()
        except GenerationError as exc:
            st.error(str(exc))
