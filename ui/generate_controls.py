"""The Generate page's controls: per property of the checkpoint a target (a toggle, and a slider
and an exact value kept in step, over the data's density), the sampling settings, the
closed-loop switches (feedback, small rings) and the batch settings.

Each widget's state is filled once per session from the URL (``init_settings``), brought into
the selected checkpoint's ranges (``fit_to_checkpoint``) and written back to the URL
(``sync_url``), so a link reproduces a molecule.
"""

from __future__ import annotations

import math
import random

import numpy as np
import streamlit as st

from core.checkpoint import Bundle, PropertyScale
from core.chem import DESCRIPTOR_LABELS, DESCRIPTOR_SHORT, DESCRIPTOR_STEPS, DESCRIPTOR_UNITS
from core.closed_loop import MAX_RING
from ui.charts import density_figure
from ui.common import cached_dataset, url_float, url_int

STEP = DESCRIPTOR_STEPS  # slider resolution
MAX_SEED = 2**31 - 1
MAX_BATCH = 500  # molecules asked for, and decoded per call
MAX_K = 10  # best-of-k: at most 10 × 500 molecules generated


def number_format(p: str) -> str:
    """One decimal more than the slider step: ``%.2f`` for LogP, ``%.1f`` for TPSA."""
    return f"%.{max(0, -math.floor(math.log10(STEP[p]))) + 1}f"


def wide_range(scale: PropertyScale) -> tuple[float, float]:
    """Bounds of the number input: the data range plus half its width on each side, on the
    0.01 grid (a value rounded to two decimals, as the inputs keep them, stays inside)."""
    lo, hi = scale.lo, scale.hi
    pad = (hi - lo) / 2
    low = max(0.0, lo - pad) if lo >= 0 else lo - pad
    return math.floor(low * 100) / 100, math.ceil((hi + pad) * 100) / 100


def slider_range(p: str, scale: PropertyScale) -> tuple[float, float]:
    """The data's range (0.5th–99.5th percentile of the training split), on the slider grid."""
    s = STEP[p]
    lo, hi = math.floor(scale.lo / s) * s, math.ceil(scale.hi / s) * s
    return round(lo, 2), round(hi, 2)


def snap(p: str, scale: PropertyScale, value: float) -> float:
    """``value`` as the slider can show it: inside its range, on its grid."""
    lo, hi = slider_range(p, scale)
    return round(round(min(max(value, lo), hi) / STEP[p]) * STEP[p], 2)


@st.cache_data(show_spinner=False)
def histogram(path_key: str, p: str, lo: float, hi: float, bins: int = 60):
    """Counts of the dataset's training molecules per bin of property ``p`` over [lo, hi]."""
    table = cached_dataset(path_key)
    values = table.loc[table.split == "train", p].to_numpy()
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.tolist(), edges.tolist()


def init_settings(bundle: Bundle) -> None:
    """Fill each missing widget state once per session, from the URL where it says something."""
    state = st.session_state
    for p in bundle.properties:
        if f"gen_{p}_num" in state:
            continue
        scale = bundle.scales[p]
        raw = st.query_params.get(p)
        default = snap(p, scale, scale.mean)
        free = raw == "free"
        value = default if raw is None or free else url_float(p, default, *wide_range(scale))
        state[f"gen_use_{p}"] = not free
        state[f"gen_{p}_num"] = round(value, 2)
        state[f"gen_{p}_slider"] = snap(p, scale, value)
    if "gen_temperature" not in state:
        state.gen_temperature = url_float("temperature", 1.0, 0.0, 2.0)
    if "gen_top_k" not in state:
        state.gen_top_k = url_int("top_k", 0, 0, len(bundle.tokenizer))
    if "gen_seed" not in state:
        state.gen_seed = url_int("seed", 0, 0, MAX_SEED)
    if "gen_feedback" not in state:
        state.gen_feedback = st.query_params.get("feedback") != "off"
    if "gen_small_rings" not in state:
        state.gen_small_rings = st.query_params.get("rings") != "any"
    if "gen_on_target" not in state:
        state.gen_on_target = st.query_params.get("finish") == "target"


def fit_to_checkpoint(bundle: Bundle) -> None:
    """Bring values kept from another checkpoint into this one's ranges (widgets refuse
    values outside their bounds)."""
    state = st.session_state
    for p in bundle.properties:
        scale = bundle.scales[p]
        lo, hi = wide_range(scale)
        number = state[f"gen_{p}_num"]
        if not lo <= number <= hi:
            state[f"gen_{p}_num"] = round(min(max(number, lo), hi), 2)
        state[f"gen_{p}_slider"] = snap(p, scale, state[f"gen_{p}_slider"])
    state.gen_top_k = min(state.gen_top_k, len(bundle.tokenizer))


def sync_url(
    targets: dict[str, float | None],
    seed: int,
    temperature: float,
    top_k: int,
    feedback: bool | None,
    small_rings: bool | None,
    on_target: bool | None = None,
) -> None:
    """Write the settings into the URL (``feedback``, ``small_rings``, ``on_target`` None: an
    open-loop checkpoint, which has none of them)."""
    query = {p: ("free" if v is None else f"{v:g}") for p, v in targets.items()}
    query |= {"seed": str(seed), "temperature": f"{temperature:g}", "top_k": str(top_k)}
    closed = {
        "feedback": ("on", "off", feedback),
        "rings": ("small", "any", small_rings),
        "finish": ("target", "any", on_target),
    }
    for name, (on, off, value) in closed.items():
        if value is not None:
            query[name] = on if value else off
        elif name in st.query_params:
            del st.query_params[name]
    st.query_params.update(query)


def _slider_moved(p: str) -> None:
    st.session_state[f"gen_{p}_num"] = float(st.session_state[f"gen_{p}_slider"])


def _number_typed(p: str, scale: PropertyScale) -> None:
    st.session_state[f"gen_{p}_slider"] = snap(p, scale, st.session_state[f"gen_{p}_num"])


def property_control(bundle: Bundle, p: str, data_key: str) -> float | None:
    """Toggle, slider, exact value and the density of the data in ``data_key`` for one
    property; its target, None when it is left free."""
    scale = bundle.scales[p]
    use = st.toggle(
        f"Target {DESCRIPTOR_LABELS[p]}",
        key=f"gen_use_{p}",
        persist_state="session",
        help="Off: leave this property unconditioned (the model picks it freely).",
    )
    synced = dict(step=STEP[p], disabled=not use, persist_state="session")
    st.slider(
        DESCRIPTOR_LABELS[p],
        *slider_range(p, scale),
        key=f"gen_{p}_slider",
        on_change=_slider_moved,
        args=(p,),
        label_visibility="collapsed",
        **synced,
    )
    wide_lo, wide_hi = wide_range(scale)
    value = st.number_input(
        "Exact value",
        wide_lo,
        wide_hi,
        key=f"gen_{p}_num",
        on_change=_number_typed,
        args=(p, scale),
        format=number_format(p),
        help="Type any value, also outside the range the data covers.",
        **synced,
    )
    target = float(value) if use else None
    counts, edges = histogram(data_key, p, wide_lo, wide_hi)
    st.plotly_chart(
        density_figure(counts, edges, (scale.lo, scale.hi), target),
        key=f"gen_density_{p}",
        config={"displayModeBar": False},
    )
    if target is not None and not scale.lo <= target <= scale.hi:
        unit = f" {DESCRIPTOR_UNITS[p]}" if p in DESCRIPTOR_UNITS else ""
        st.warning(
            f"{DESCRIPTOR_SHORT[p]} = {target:g}{unit} is outside the range the training data "
            f"covers ({scale.lo:.2f} – {scale.hi:.2f}{unit}); the model has hardly seen such "
            "molecules, so expect it to miss."
        )
    return target


def _new_seed() -> None:
    st.session_state.gen_seed = random.randrange(MAX_SEED)


def sampling_controls(vocabulary: int) -> tuple[float, int, int]:
    """Temperature, top-k (up to the ``vocabulary`` size) and seed."""
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
        vocabulary,
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
        on_click=_new_seed,
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


def ring_control() -> int | None:
    """The small-rings switch of a feedback checkpoint: the largest ring it may close (None:
    any, the model alone)."""
    on = st.checkbox(
        f"Keep rings ≤ {MAX_RING} atoms (MOSES rule)",
        key="gen_small_rings",
        persist_state="session",
        help=f"On: a sampled symbol that would close a ring of more than {MAX_RING} atoms is "
        "refused and drawn again from the model's own distribution without it (MOSES filters "
        "rings of 8+ atoms as macrocycles; its training molecules have none). Off: the model "
        "alone, which closes rings of 8+ atoms in roughly 1 molecule in 6.",
    )
    return MAX_RING if on else None


def finish_control(hit: dict[str, float]) -> bool:
    """The finish-on-target switch of a feedback checkpoint (``hit``: the ± windows)."""
    windows = ", ".join(f"±{w:g} {DESCRIPTOR_SHORT[p]}" for p, w in hit.items())
    return st.checkbox(
        "Finish only on target (decoding aid)",
        key="gen_on_target",
        persist_state="session",
        help="A symbol that ends the molecule by itself (an [=O] or [F] on the main chain, a "
        "ring closure that uses the last bond) writes an atom and [EOS] in one draw, before "
        "the model has seen where it lands. On: such a symbol that would leave a targeted "
        f"property outside its hit window ({windows}) is refused and drawn again, like a large "
        "ring; the molecule goes on. It uses the targets, so its hit rates are not the model's "
        "own: off by default, and the README reports both.",
    )


def batch_controls(targeted: bool) -> tuple[int, int, bool]:
    """Molecules wanted, best-of-k's k (1: raw, as without a target: ``targeted`` False) and
    whether Generate was pressed."""
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
    if precise and not targeted:
        st.info("Precise mode ranks by the targets: set at least one. This batch is raw.")
    elif precise:
        st.caption(
            f"**Precise** generates {int(k)} × {int(n)} = {int(k) * int(n):,} molecules and "
            f"keeps the {int(n)} closest to the targets: a filter after the fact, not the "
            "model's accuracy. The raw figures of all of them are shown beside."
        )
    return int(n), int(k) if precise and targeted else 1, pressed
