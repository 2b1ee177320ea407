"""Evaluate: the reference-grid metrics of the selected checkpoint (from its cached
evaluation.json, recomputable here), the MOSES suite beside the published baselines, and a
walk through the latent space."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import streamlit as st

import core.evaluate
from core.chem import DESCRIPTOR_SHORT, describe_smiles, mol_to_png, selfies_to_smiles
from core.inspect import InspectError, interpolate, molecule_ids
from core.latent import free_bits_of, units_above_floor
from core.moses import BASELINES_SOURCE, LOWER_IS_BETTER, METRICS, PUBLISHED_BASELINES
from core.pool import on_pool, submit
from ui.charts import (
    fmt,
    joint_figure,
    kl_figure,
    novelty_label,
    shuffled_figure,
    single_target_figure,
    unit_label,
)
from ui.common import ensure_app_frame, require_bundle, require_dataset
from ui.elements import drawing, molecule_table

ensure_app_frame()

RESULT = "evaluation.json"
SHORT = DESCRIPTOR_SHORT
# the quality bar of the project, MolGPT-level steering: (label, where in the result, goal,
# higher is better)
GOALS = [
    ("Validity", ("overall", "validity"), 0.99, True),
    ("Uniqueness", ("overall", "uniqueness"), 0.99, True),
    ("Novelty", ("overall", "novelty"), 0.90, True),
    ("Internal diversity", ("overall", "internal_diversity"), 0.85, True),
]
MAD_GOALS = {"logp": 0.20, "tpsa": 3.5}  # other properties: none set yet
JOINT_GOAL = 0.75


def goals(result: dict) -> list[tuple[str, tuple[str, str], float | None, bool]]:
    """``GOALS`` plus a MAD row per property of the result and the joint hit rate."""
    properties = result.get("properties") or ["logp", "tpsa"]
    windows = result.get("hit_windows") or core.evaluate.HIT
    novelty = ("overall", "novelty")
    rows = [(novelty_label(result), *g[1:]) if g[1] == novelty else g for g in GOALS]
    for p in properties:
        label = f"{SHORT.get(p, p)} MAD{unit_label(p)}, {SHORT.get(p, p)}-only targets"
        rows.append((label, ("summary", f"{p}_mad"), MAD_GOALS.get(p), False))
    if len(properties) >= 2:
        pair = ", ".join(f"±{windows.get(p, 0):g} {SHORT.get(p, p)}" for p in properties[:2])
        rows.append((f"Joint hit rate ({pair})", ("summary", "joint_hit"), JOINT_GOAL, True))
    return rows


MOSES_MODES = {
    "unconditioned": "This model, unconditioned",
    "conditioned_test_pairs": "This model, at test (LogP, TPSA) pairs",
}

bundle = require_bundle()
data = require_dataset()
result_file = Path(bundle.path) / RESULT


def load_result(path: Path) -> dict | None:
    """The cached evaluation, or None (after a notice) when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        st.warning(f"{path.name} cannot be read ({exc}); recompute it below.")
        return None


def recompute(n: int) -> None:
    """Run ``core.evaluate`` with a progress bar and save the result next to the weights."""
    bar = st.progress(0.0, text="Starting…")
    latest = {"f": 0.0, "text": "Starting…"}  # written by the pool thread, drawn here

    def note(f: float, message: str) -> None:
        latest.update(f=min(f, 1.0), text=message)

    job = submit(core.evaluate.evaluate, bundle, n=n, progress=note)
    while not job.done():
        bar.progress(latest["f"], text=latest["text"])
        time.sleep(0.25)
    result = job.result()
    tmp = result_file.with_name(RESULT + ".partial")
    try:
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(result_file)
    except OSError as exc:
        st.error(f"Could not save {result_file}: {exc.strerror or exc}")
    bar.empty()


def headline_table(result: dict) -> pd.DataFrame:
    rows = []
    for label, (section, key), goal, higher in goals(result):
        value = result.get(section, {}).get(key)
        shuffled = result.get("shuffled", {}).get(key) if section == "summary" else None
        percent = higher
        met = ""
        if value is not None and not math.isnan(value) and goal is not None:
            short = goal - value if higher else value - goal
            met = "✓" if short <= 0 else f"✗ {fmt(short, percent)} {'short' if higher else 'over'}"
        rows.append(
            {
                "Metric": label,
                "Achieved": fmt(value, percent),
                "Goal": "" if goal is None else ("≥ " if higher else "≤ ") + fmt(goal, percent),
                "Met": met,
                "With shuffled targets": fmt(shuffled, percent) if shuffled is not None else "",
            }
        )
    return pd.DataFrame(rows)


def shuffle_metrics(properties: list[str]) -> list[tuple[str, str, str]]:
    """(key, label, note) of each figure of the shuffled-targets check."""
    rows = [
        (f"{p}_mad", f"{SHORT.get(p, p)} MAD{unit_label(p)}", "lower is better") for p in properties
    ]
    if len(properties) >= 2:
        rows.append(("joint_hit", "Joint hit rate", "higher is better"))
    return rows


def moses_table(section: dict) -> pd.DataFrame:
    """One row per MOSES metric: this model's modes, then the published baselines."""
    columns = {label: section[mode] for mode, label in MOSES_MODES.items() if mode in section}
    columns |= PUBLISHED_BASELINES
    return pd.DataFrame(
        [
            {
                "Metric": f"{metric} ({'↓' if metric in LOWER_IS_BETTER else '↑'})",
                **{label: values.get(metric) for label, values in columns.items()},
            }
            for metric in METRICS
        ]
    )


def moses_view(section: dict) -> None:
    st.subheader("MOSES benchmark")
    st.dataframe(
        moses_table(section),
        hide_index=True,
        column_config={
            label: st.column_config.NumberColumn(format="%.4f")
            for label in [*MOSES_MODES.values(), *PUBLISHED_BASELINES]
        },
    )
    n_ref = section.get("reference", {}).get("n")
    st.caption(
        f"This model against {f'{n_ref:,}' if n_ref else '?'} molecules of the MOSES test set "
        "(FCD/Test needs the optional `fcd_torch`). SNN and Scaf come out lower against a "
        "sample of it, and with fewer molecules generated, than against all 176,074 with the "
        f"30,000 samples MOSES recommends. Baselines: {BASELINES_SOURCE}."
    )
    modes = [m for m in MOSES_MODES if section.get(m, {}).get("filter_failures")]
    st.markdown("**Molecules failing the MOSES filters, by reason**")
    if not modes:
        st.caption("None: every valid molecule passes.")
        return
    mode = st.radio(
        "Samples", modes, format_func=MOSES_MODES.get, horizontal=True, key="eval_moses_mode"
    )
    suite = section[mode]
    for i, (reason, count) in enumerate(suite["filter_failures"].items()):
        examples = suite.get("filter_examples", {}).get(reason, [])
        with st.expander(f"{reason}: {count} of {suite.get('n_valid', '?')} valid molecules"):
            drawn = pd.DataFrame({"structure": [drawing(s) for s in examples], "smiles": examples})
            molecule_table(drawn, f"eval_moses_fail_{mode}_{i}")


@st.cache_data(show_spinner=False)
def interpolation_choices(_data, checkpoint: str, n: int = 30) -> list[str]:
    """SMILES of a fixed sample of test molecules the model can read."""
    test = _data[_data.split == "test"]
    pool = (test if len(test) else _data).sample(min(4 * n, len(_data)), random_state=1)
    out = []
    for smiles, selfies in zip(pool.smiles, pool.selfies, strict=True):
        try:
            molecule_ids(bundle, selfies)
        except InspectError:
            continue
        out.append(smiles)
        if len(out) == n:
            break
    return out


def result_properties(result: dict) -> list[str]:
    """The properties the result scores (older results name none: LogP and TPSA)."""
    return result.get("properties") or [p for p in ("logp", "tpsa") if p in bundle.properties]


def headline_view(result: dict) -> None:
    st.caption(
        f"{result.get('n_per_target', '?')} molecules per target at temperature "
        f"{result.get('temperature', '?')}, computed in {result.get('seconds', '?')} s."
    )
    st.subheader("Headline")
    st.dataframe(
        headline_table(result),
        hide_index=True,
        column_config={"Met": st.column_config.TextColumn("Goal met", help="✗: by how much")},
    )
    if result.get("novelty_note"):
        st.caption(result["novelty_note"])


def targets_view(result: dict) -> None:
    """MAD per property at single targets, then the joint (LogP, TPSA) grid."""
    st.subheader("Target vs achieved")
    rows, properties = result.get("targets", []), result_properties(result)
    windows = {**core.evaluate.HIT, **result.get("hit_windows", {})}
    for start in range(0, len(properties), 2):
        for col, p in zip(st.columns(2), properties[start : start + 2], strict=False):
            col.plotly_chart(
                single_target_figure(rows, p, windows.get(p, 0.0)), key=f"eval_single_{p}"
            )
    shown = ", ".join(f"±{windows[p]:g} {SHORT.get(p, p)}" for p in properties if p in windows)
    st.caption(
        "Bars: mean absolute deviation of the generated molecules' RDKit value from the target, "
        f"with its SD; green dashed line: the hit window ({shown}). LogP and TPSA use the "
        "literature's targets and windows; other properties targets at the training data's "
        "mean and ±1σ, windows of ±0.5σ."
    )
    joint = joint_figure(rows, windows)
    if joint is not None:
        st.plotly_chart(joint, key="eval_joint")


def heldout_view(result: dict) -> None:
    """Every property conditioned at once, at held-out molecules' values."""
    heldout, properties = result[core.evaluate.HELDOUT], result_properties(result)
    st.markdown("**Every property at once, at the values of held-out molecules**")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "property": SHORT.get(p, p),
                    "MAD": heldout.get(f"mad_{p}"),
                    "MAD / σ of the data": heldout.get(f"mad_sigma_{p}"),
                    "hit rate": heldout.get(f"hit_{p}"),
                }
                for p in properties
            ]
        ),
        hide_index=True,
        key="eval_heldout",
        column_config={
            "MAD": st.column_config.NumberColumn(format="%.3g"),
            "MAD / σ of the data": st.column_config.NumberColumn(format="%.2f"),
            "hit rate": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.caption(
        f"{heldout.get('n', '?')} molecules, each conditioned on all properties of a "
        "molecule drawn from the test split of the checkpoint's data; validity "
        f"{fmt(heldout.get('validity'), True)}, {novelty_label(result).lower()} "
        f"{fmt(heldout.get('novelty'), True)}, every property on target "
        f"{fmt(heldout.get('hit_joint'), True)}."
    )


def shuffled_view(result: dict) -> None:
    """The same molecules against their own and against shuffled targets."""
    st.subheader("Is the condition used?")
    st.write(
        "The same molecules scored against another target of the same kind. A model that "
        "uses its condition lands much closer to its own target than to a shuffled one; "
        "equal bars mean the condition is ignored."
    )
    properties = result_properties(result)
    figures = shuffle_metrics(properties)
    for start in range(0, len(figures), 3):
        for col, (key, label, note) in zip(st.columns(3), figures[start : start + 3], strict=False):
            own, shuffled = result["summary"].get(key), result["shuffled"].get(key)
            col.plotly_chart(
                shuffled_figure(own, shuffled, label, note, key == "joint_hit"),
                key=f"eval_shuffled_{key}",
                config={"displayModeBar": False},
            )
    for p in properties:
        real, fake = result["summary"].get(f"{p}_mad"), result["shuffled"].get(f"{p}_mad")
        if real and fake and not math.isnan(real) and real > 0.8 * fake:
            st.warning(f"{SHORT.get(p, p)}: own targets are hardly closer than shuffled ones.")


def reconstruction_view(result: dict) -> None:
    st.subheader("Reconstruction: teacher-forced vs free-running")
    reco = result.get("reconstruction", {})
    c1, c2, c3 = st.columns(3)
    tf, fr = reco.get("teacher_forced_token_acc"), reco.get("free_running_exact_match")
    c1.metric("Teacher-forced token accuracy", fmt(tf, True))
    c2.metric("Free-running exact molecules", fmt(fr, True))
    c3.metric(
        "z changes the greedy molecule",
        fmt(result.get("latent_sensitivity"), True),
        help="Share of greedy molecules that change when only z is redrawn (0: z is ignored).",
    )
    st.caption(
        "Test molecules encoded to z = mu, then decoded with their own properties: "
        "teacher-forced (each position sees the true previous symbols) vs greedy free-running "
        "(the model feeds itself). A high first number with a near-zero second one and poor "
        "molecules points at a causal mask that leaks the future, or at exposure bias."
    )


def latent_view(reco: dict, free_bits: float) -> None:
    """Active units, units above the free-bits floor and KL per latent dimension; a warning
    at posterior collapse."""
    st.subheader("Latent use")
    kl = reco.get("kl_per_dim", [])
    active, dim = reco.get("active_units"), reco.get("latent_dim", len(kl))
    c1, c2 = st.columns([1, 3])
    c1.metric("Active units", f"{active} of {dim}", help="Dimensions whose mu varies (var > 0.01)")
    c1.metric(
        "Above the free-bits floor",
        f"{units_above_floor(kl, free_bits)} of {dim}" if kl else "—",
        help=f"Dimensions whose mean KL is over {free_bits:g} nats, the KL training does not "
        "charge for: the others may vary but carry no more than the floor.",
    )
    c1.metric("Total KL", f"{sum(kl):.2f} nats")
    if kl:
        c2.plotly_chart(kl_figure(kl, free_bits), key="eval_kl")
    if active == 0 or (kl and sum(kl) < 0.1):
        st.warning(
            "Posterior collapse: the latent code carries (almost) no information, so the "
            "decoder ignores z."
        )


def unconditional_view(uncond: dict) -> None:
    """Property mean ± SD of unconditioned samples beside the training data's."""
    st.subheader("Unconditional samples vs the data")
    table = pd.DataFrame(
        [
            {
                "property": SHORT.get(p, p),
                "generated mean ± SD": f"{uncond[f'{p}_mean']:.2f} ± {uncond[f'{p}_std']:.2f}",
                "training data mean ± SD": (
                    f"{uncond[f'data_{p}_mean']:.2f} ± {uncond[f'data_{p}_std']:.2f}"
                ),
            }
            for p in bundle.properties
            if f"{p}_mean" in uncond
        ]
    )
    st.dataframe(table, hide_index=True)
    st.caption(
        f"{uncond.get('n', '?')} molecules with no condition; validity "
        f"{fmt(uncond.get('validity'), True)}."
    )


def show_result(result: dict) -> None:
    """Every section of a cached evaluation, in reading order; absent sections are skipped."""
    headline_view(result)
    targets_view(result)
    if result.get(core.evaluate.HELDOUT):
        heldout_view(result)
    if "shuffled" in result:
        shuffled_view(result)
    reconstruction_view(result)
    latent_view(result.get("reconstruction", {}), free_bits_of(bundle.path))
    if result.get("unconditional"):
        unconditional_view(result["unconditional"])
    if "moses" in result:
        moses_view(result["moses"])


def interpolation_view() -> None:
    st.subheader("A walk through the latent space")
    st.write(
        "Both molecules are encoded (z = mu, with their own properties); the decoder then "
        "writes the most probable molecule at evenly spaced points on the line between them."
    )
    choices = interpolation_choices(data, str(bundle.path))
    c_a, c_b, c_n = st.columns([2, 2, 1])
    a = c_a.selectbox("From", choices, index=0, key="eval_from")
    b = c_b.selectbox("To", choices, index=min(1, len(choices) - 1), key="eval_to")
    steps = c_n.slider("Points", 3, 9, 7, key="eval_steps")
    try:
        path = on_pool(interpolate, bundle, a, b, steps)
    except InspectError as exc:
        st.error(str(exc))
        return
    per_row = math.ceil(steps / math.ceil(steps / 5))  # at most 5 a row, rows evenly filled
    cols = [c for start in range(0, steps, per_row) for c in st.columns(per_row)][:steps]
    for i, (col, selfies) in enumerate(zip(cols, path, strict=True)):
        smiles = selfies_to_smiles(selfies)
        props = describe_smiles(smiles, ["logp", "tpsa"]) if smiles else None
        label = "A" if i == 0 else ("B" if i == steps - 1 else f"{i / (steps - 1):.2f}")
        col.image(mol_to_png(smiles or None, size=(260, 200)))
        col.caption(
            f"**{label}** · "
            + (f"LogP {props['logp']:.1f} · TPSA {props['tpsa']:.0f}" if props else "invalid")
        )
    st.caption(
        "A and B are the model's own reconstructions of the two molecules; when they differ "
        "from the originals, the latent code does not pin the molecule down."
    )


st.title("Evaluate")
grid_text = "; ".join(
    f"{SHORT.get(p, p)} ∈ {{{', '.join(f'{v:g}' for v in core.evaluate.grid_values(p, s))}}}"
    for p, s in bundle.scales.items()
)
st.write(
    f"How well the selected checkpoint does on the reference grid: each property alone "
    f"({grid_text}), every pair of targets of the first two, and every property at once at "
    "held-out molecules' values, each scored with RDKit."
)
result = load_result(result_file)
with st.expander("Recompute the evaluation", expanded=result is None):
    if result is None:
        st.info(
            f"No {RESULT} for this checkpoint yet. Compute it here with a small number of "
            "molecules per target, or in a terminal with "
            f"`python -m core.evaluate --checkpoint {bundle.path}` (1,000 per target)."
        )
    c_n, c_go = st.columns([2, 1], vertical_alignment="bottom")
    n = c_n.number_input("Molecules per target", 2, 1000, value=100, step=50, key="eval_n")
    if c_go.button("Compute and save", key="eval_go", type="primary", width="stretch"):
        recompute(int(n))
        result = load_result(result_file)
if result is not None:
    show_result(result)
interpolation_view()
