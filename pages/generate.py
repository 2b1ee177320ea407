"""Generate: molecules aimed at targets for the checkpoint's properties (LogP and TPSA, or
whichever it was trained on), decoded one SELFIES symbol at a time (Play / Pause / Step /
Reset) or in a batch scored against the targets."""

from __future__ import annotations

import math
import random
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.chem import (
    DESCRIPTOR_LABELS,
    DESCRIPTOR_SHORT,
    DESCRIPTOR_STEPS,
    DESCRIPTOR_UNITS,
    DESCRIPTORS,
    canonical_smiles,
    describe_smiles,
    mol_to_png,
    png_data_uri,
)
from core.data import DEFAULT_DATA, DataError
from core.evaluate import hit_windows, target_metrics
from core.feedback import prefix_properties
from core.generate import GenerationError, generate_step, make_sampler, score
from core.inspect import partial_properties
from core.pool import iterate_on_pool, on_pool
from core.rerank import best_of_k, target_miss
from core.targets import csv_properties
from ui.charts import batch_scatter, density_figure, running_figure, top_k_figure
from ui.common import (
    cached_dataset,
    ensure_app_frame,
    require_bundle,
    url_float,
    url_int,
)

ensure_app_frame()

ROOT = Path(__file__).resolve().parent.parent
SHORT = DESCRIPTOR_SHORT
UNITS = {p: f" {DESCRIPTOR_UNITS[p]}" if p in DESCRIPTOR_UNITS else "" for p in DESCRIPTORS}
UNIT_LABELS = {p: f" ({DESCRIPTOR_UNITS[p]})" if p in DESCRIPTOR_UNITS else "" for p in DESCRIPTORS}
STEP = DESCRIPTOR_STEPS  # slider resolution
TICK_SECONDS = 0.5  # one decoding step per tick while playing
MAX_BATCH = 500  # molecules asked for, and decoded per call
MAX_K = 10  # best-of-k: at most 10 × 500 molecules generated
MAX_SEED = 2**31 - 1
GRID_ROWS = 120  # molecules drawn in the batch grid

bundle = require_bundle()
tokenizer = bundle.tokenizer
props = list(bundle.properties)  # one target control per property of the checkpoint
HIT = hit_windows(bundle.scales)  # what counts as on target, per property
STRICT_HIT = hit_windows(bundle.scales, strict=True)
CLOSED_LOOP = bool(bundle.args.feedback)  # every position reads the gap to each target


def data_path() -> str:
    """The table behind the densities, the scatter background and the novelty check: the
    checkpoint's own data when it is a user's dataset that is here, else the MOSES subset
    (a MOSES checkpoint's full table would be a heavy load for a background)."""
    data = bundle.meta.get("data", {}) if isinstance(bundle.meta.get("data"), dict) else {}
    own = Path(str(data.get("path", "")))
    own = own if own.is_absolute() else ROOT / own
    if data.get("kind") == "user" and own.is_file():
        return str(own)
    return str(DEFAULT_DATA)


def number_format(p: str) -> str:
    """One decimal more than the slider step: ``%.2f`` for LogP, ``%.1f`` for TPSA."""
    return f"%.{max(0, -math.floor(math.log10(STEP[p]))) + 1}f"


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
    table = cached_dataset(path_key)
    values = table.loc[table.split == "train", p].to_numpy()
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.tolist(), edges.tolist()


@st.cache_resource(show_spinner=False)
def known_smiles(path_key: str) -> frozenset[str]:
    """Canonical SMILES of every dataset molecule (for the novelty check)."""
    return frozenset(cached_dataset(path_key).smiles)


@st.cache_data(show_spinner=False)
def dataset_cloud(path_key: str, n: int = 3000) -> pd.DataFrame:
    """A fixed random sample of the dataset's LogP/TPSA pairs (scatter background)."""
    table = cached_dataset(path_key)
    return table[["logp", "tpsa"]].sample(min(n, len(table)), random_state=0)


try:
    DATA_KEY = data_path()  # the helpers above read this table
    cached_dataset(DATA_KEY)
except DataError as exc:
    st.error(f"The dataset cannot be loaded: {exc}")
    st.stop()


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
    if "gen_feedback" not in state:
        state.gen_feedback = st.query_params.get("feedback") != "off"


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
        format=number_format(p),
        help="Type any value, also outside the range the data covers.",
    )
    target = float(value) if use else None
    counts, edges = histogram(DATA_KEY, p, wide_lo, wide_hi)
    scale = bundle.scales[p]
    st.plotly_chart(
        density_figure(counts, edges, (scale.lo, scale.hi), target),
        key=f"gen_density_{p}",
        config={"displayModeBar": False},
    )
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


def feedback_control() -> bool:
    """The closed-loop switch of a feedback checkpoint: off reruns it open loop."""
    on = st.toggle(
        "Feedback",
        key="gen_feedback",
        persist_state="session",
        help="What the decoder reads at every position besides its tokens: the gap between "
        "each target and the molecule written so far.",
    )
    if on:
        st.caption(
            "**On (closed loop):** after every symbol RDKit computes the properties of the "
            "molecule so far, and the next position reads the gap to each target."
        )
    else:
        st.caption(
            "**Off (open-loop experiment):** every position reads the gap to the *empty* "
            "molecule, as if nothing had been written, so the model cannot see its progress. "
            "Same seed, same z: switch back and forth to compare."
        )
    return bool(on)


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
        feedback = feedback_control() if CLOSED_LOOP else True

query = {p: ("free" if v is None else f"{v:g}") for p, v in targets.items()}
query |= {"seed": str(seed), "temperature": f"{temperature:g}", "top_k": str(top_k)}
if CLOSED_LOOP:
    query["feedback"] = "on" if feedback else "off"
elif "feedback" in st.query_params:
    del st.query_params["feedback"]
st.query_params.update(query)

settings = (tuple(targets.items()), int(seed), float(temperature), int(top_k), feedback)
sampler = make_sampler(temperature, top_k)
report_top = min(top_k, 15) if top_k else 10
active = {p: v for p, v in targets.items() if v is not None}


def fresh_run() -> dict:
    """Plain-data state of one step-by-step decoding (safe across reruns and threads)."""
    empty = dict(zip(bundle.properties, prefix_properties("", bundle.properties)[1], strict=True))
    return {
        "settings": settings,
        "symbols": [],  # SELFIES symbols chosen so far
        "chosen": [],  # token id chosen at each step ([EOS] included)
        "top_ids": [],  # per step: the report_top most probable ids
        "top_probs": [],  # per step: their probabilities
        "partial": [],  # per symbol: partial_properties of the prefix (or None)
        "reads": [],  # closed loop, per step: the properties the choosing position read
        "next_read": empty if CLOSED_LOOP else None,  # what the next position reads
        "done": False,
        "playing": False,
    }


if st.session_state.get("gen_run", {}).get("settings") != settings:
    st.session_state.gen_run = fresh_run()


def next_step(run: dict):
    """The ``Step`` that decodes one more symbol, continuing exactly as an uninterrupted run
    with this seed.

    Decoding from the symbols so far as a prefix gives that run's next step, what a closed
    loop reads included. Open loop on a closed-loop model is the exception:
    ``generate_step`` freezes the reads at its prefix's molecule, and this run's were frozen
    at the empty one, so the run is decoded again from the start (tens of steps, n = 1).
    """
    common = dict(n=1, seed=int(seed), sampler=sampler, report_top=report_top)
    if feedback or not CLOSED_LOOP:
        prefix = "".join(run["symbols"])
        return next(generate_step(bundle, targets, prefix=prefix, max_tokens=1, **common))
    steps = generate_step(
        bundle, targets, max_tokens=len(run["chosen"]) + 1, feedback=False, **common
    )
    return deque(steps, maxlen=1)[0]


def take_step(run: dict) -> None:
    """Decode one more symbol and record it with what the model read to choose it."""
    step = on_pool(next_step, run)
    token = int(step.tokens[0])
    run["chosen"].append(token)
    run["top_ids"].append(step.top_ids[0].tolist())
    run["top_probs"].append(step.top_probs[0].tolist())
    if step.prefix_props is not None:
        run["reads"].append(run["next_read"])
        values = step.prefix_props[0].tolist()
        run["next_read"] = dict(zip(bundle.properties, values, strict=True))
    if token == tokenizer.eos_id:
        run["done"] = True
        return
    run["symbols"].append(tokenizer.tokens[token])
    run["partial"].append(partial_of("".join(run["symbols"])))
    run["done"] = len(run["symbols"]) >= bundle.args.max_len


def partial_of(selfies_prefix: str) -> dict | None:
    """``partial_properties`` of a prefix, with every property of the checkpoint."""
    found = partial_properties(selfies_prefix)
    missing = [p for p in props if found is not None and p not in found]
    if missing:
        found |= describe_smiles(found["smiles"], missing) or dict.fromkeys(missing, math.nan)
    return found


def gap_text(read: dict) -> str:
    """The gaps one position read, e.g. ``LogP +1.20 · TPSA +35.4 Å²``."""
    return " · ".join(f"{SHORT[p]} {targets[p] - read[p]:+.2f}{UNITS[p]}" for p in active)


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
    reads = ""
    if CLOSED_LOOP:
        reads = "; each [BOS]/symbol position also reads per target the gap (target − property "
        reads += "so far)" if feedback else "so far), frozen at the empty molecule: feedback off"
    buttons.caption(
        f"Decoder input: {conditions} [z] [BOS] + the symbols so far{reads} · "
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
        labels = [tokenizer.tokens[i] for i in run["top_ids"][-1]]
        st.plotly_chart(
            top_k_figure(labels, run["top_probs"][-1], chosen),
            key="gen_topk",
            config={"displayModeBar": False},
        )
        if run["chosen"][-1] not in run["top_ids"][-1]:
            st.caption(f"The chosen symbol is outside the {report_top} most probable.")
        if run["reads"] and active:
            frozen = "" if feedback else " — frozen at the empty molecule (feedback off)"
            st.markdown(
                f"**Gap read at this step** (target − property so far): "
                f"{gap_text(run['reads'][-1])}{frozen}"
            )
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
    running_charts(run)
    if run["done"]:
        final_summary(run)


def running_charts(run: dict) -> None:
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
        values = [None if q is None else q[p] for q in run["partial"]]
        reads = [r[p] for r in run["reads"]] if run["reads"] else None
        col.plotly_chart(
            running_figure(values, DESCRIPTOR_LABELS[p], targets[p], HIT[p], reads),
            key=f"gen_running_{p}",
            config={"displayModeBar": False},
        )


def run_batch(total: int) -> pd.DataFrame:
    """``total`` molecules at the current settings, decoded ``MAX_BATCH`` at a time and seeded
    as ``core.generate.generate`` seeds its batches (the same molecules as with this seed)."""
    bar = st.progress(0.0, text="Decoding…")
    selfies = []
    for start in range(0, total, MAX_BATCH):
        size = min(MAX_BATCH, total - start)
        steps = iterate_on_pool(
            generate_step, bundle, targets, n=size, seed=int(seed) + start, sampler=sampler,
            report_top=1, feedback=feedback,
        )  # fmt: skip
        rows = []
        for step in steps:
            rows.append(step.tokens)
            position = min(1.0, (step.index + 1) / bundle.args.max_len)
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
    hits = {f"{SHORT[p]} MAD{UNIT_LABELS[p]}": f"{m[f'mad_{p}']:.2f}" for p in used}
    hits |= {f"{SHORT[p]} within ±{HIT[p]:g}": f"{m[f'hit_{p}']:.0%}" for p in used}
    if len(used) > 1:
        hits["Both within"] = f"{m['hit_joint']:.0%}"
    return [general, hits]


def batch_controls() -> tuple[int, int, bool]:
    """Molecules wanted, best-of-k's k (1: raw) and whether Generate was pressed."""
    precise = st.toggle(
        "Precise (best-of-k)",
        key="gen_precise",
        help="Generate k × n molecules and keep the n whose RDKit properties are closest to "
        "the targets (sum of |Δ| / hit window over the targeted properties).",
    )
    c_n, c_k, c_go = st.columns([2, 1, 2], vertical_alignment="bottom")
    n = c_n.number_input("Molecules", 1, MAX_BATCH, value=100, step=10, key="gen_batch_n")
    k = c_k.number_input(
        "k",
        2,
        MAX_K,
        value=4,
        step=1,
        key="gen_best_k",
        disabled=not precise,
        help="Molecules generated per molecule kept.",
    )
    pressed = c_go.button("Generate batch", key="gen_batch_go", type="primary", width="stretch")
    if precise and not active:
        st.info("Precise mode ranks by the targets: set at least one. This batch is raw.")
    elif precise:
        st.caption(
            f"**Precise** generates {int(k)} × {int(n)} = {int(k) * int(n):,} molecules and "
            f"keeps the {int(n)} closest to the targets: a filter after the fact, not the "
            "model's accuracy. The raw figures of all of them are shown beside."
        )
    return int(n), int(k) if precise and active else 1, pressed


def batch_view() -> None:
    n, k, pressed = batch_controls()
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
    shown["molecule"] = [png_data_uri(mol_to_png(s, size=(200, 140))) for s in shown.smiles]
    columns = {"molecule": st.column_config.ImageColumn("Molecule", width="medium")}
    columns |= {
        p: st.column_config.NumberColumn(DESCRIPTOR_LABELS[p], format="%.2f") for p in props
    }
    for p, v in used.items():
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
