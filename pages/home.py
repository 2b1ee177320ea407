"""Home: what the model is, the selected checkpoint's headline numbers, what each page is for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import streamlit as st

from core.checkpoint import CheckpointError, read_config, read_metrics
from core.chem import DESCRIPTOR_SHORT, DESCRIPTOR_STEPS, DESCRIPTOR_UNITS
from core.evaluate import HELDOUT
from core.latent import free_bits_of, units_above_floor
from core.runs import checkpoint_step
from ui.charts import novelty_label
from ui.common import checkpoints_root, ensure_app_frame, selected_checkpoint
from ui.elements import metric_row

ensure_app_frame()

ROOT = Path(__file__).resolve().parent.parent
EVALUATION = "evaluation.json"

# (file, title, icon, what it is for, the failure it makes visible)
GUIDE = [
    (
        "pages/dataset.py",
        "Dataset",
        ":material/table_chart:",
        "The molecules a model learns from (the ~44k MOSES drug-like ones, or your own "
        "prepared file): descriptor histograms, LogP × TPSA coverage, range filters, "
        "substructure (SMARTS) search; upload your molecules to compare them or to prepare "
        "them as a dataset.",
        "targets outside the range the data covers",
    ),
    (
        "pages/training.py",
        "Training",
        ":material/monitoring:",
        "Loss, reconstruction, KL, β, learning rate and validation curves, several runs "
        "overlaid; start, resume or stop a training run in the background on any prepared "
        "dataset and properties, from scratch or fine-tuning a checkpoint.",
        "posterior collapse (KL → 0, no active latent units), divergence",
    ),
    (
        "pages/attention.py",
        "Attention",
        ":material/grid_on:",
        "Decoder and encoder attention per layer and head, the condition prefix "
        "(LogP, TPSA, z) labelled and the causal mask drawn; a live leak check.",
        "a causal mask that leaks the future or is applied after the softmax",
    ),
    (
        "pages/generate.py",
        "Generate",
        ":material/science:",
        "Set a target for each property of the checkpoint (LogP, TPSA, ...), watch the "
        "molecule being written one SELFIES symbol at a time with the next-symbol "
        "probabilities; batches scored against the targets.",
        "a decoder that ignores its condition or its latent code",
    ),
    (
        "pages/evaluate.py",
        "Evaluate",
        ":material/fact_check:",
        "Validity, uniqueness, novelty, property error (MAD) and hit rates on a grid of "
        "targets, teacher-forced vs free-running reconstruction, latent use.",
        "condition ignored (MAD as bad as for shuffled targets), exposure bias or mask leak "
        "(teacher-forced ≫ free-running), posterior collapse",
    ),
]


@st.cache_data(show_spinner=False)
def read_evaluation(file: str, mtime: float) -> dict | None:
    """The evaluation report of a checkpoint; None when it is not valid JSON."""
    try:
        report = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


@st.cache_data(show_spinner=False)
def training_rows(folder: str, mtime: float) -> tuple[list[dict], list[dict]]:
    """Train and validation rows of ``metrics.jsonl``."""
    rows = read_metrics(folder)
    return [r for r in rows if r.get("split") == "train"], [
        r for r in rows if r.get("split") == "val"
    ]


def _num(value, fmt: str) -> str:
    """A number formatted with ``fmt``; an em dash when missing or not finite."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return format(value, fmt)


def mad_format(p: str) -> str:
    """One decimal more than the property's resolution: ``.2f`` for LogP, ``.1f`` for TPSA."""
    return f".{max(0, -math.floor(math.log10(DESCRIPTOR_STEPS.get(p, 0.01)))) + 1}f"


def mad_label(p: str) -> str:
    """``LogP MAD``, ``TPSA MAD (Å²)``, ``QED MAD``..."""
    unit = DESCRIPTOR_UNITS.get(p)
    return f"{DESCRIPTOR_SHORT.get(p, p)} MAD" + (f" ({unit})" if unit else "")


def show_data(folder: Path) -> None:
    """What the checkpoint was trained on and conditions on, from its config.json."""
    try:
        config = read_config(folder)
    except CheckpointError:
        return
    meta = config.get("meta") or {}
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    properties = (config.get("model") or {}).get("properties") or []
    name = data.get("name") or Path(str(data.get("path", ""))).stem or "unknown data"
    size = []
    if data.get("n_molecules"):
        size.append(f"{data['n_molecules']:,} molecules")
    if data.get("n_train"):
        size.append(f"{data['n_train']:,} used for training")
    lines = [f"**Data:** {name}" + (f" ({', '.join(size)})" if size else "")]
    if data.get("open_end"):
        lines.append(
            "**SELFIES written open-ended:** each from a root atom that leaves the molecule "
            "open after its last symbol, so the model ends molecules with [EOS]"
        )
    if properties:
        shown = ", ".join(DESCRIPTOR_SHORT.get(p, p) for p in properties)
        lines.append(f"**Conditioned on:** {shown}")
    base = meta.get("init_from")
    if isinstance(base, dict) and base.get("path"):
        step = f" at step {base['step']:,}" if isinstance(base.get("step"), int) else ""
        lines.append(f"**Fine-tuned from** `{base['path']}`{step}")
    if isinstance(meta.get("trained_on"), str):
        lines.append(f"**Trained on:** {meta['trained_on']}")
    st.markdown("  \n".join(lines))


def reconstruction_note(recon: dict, free_bits: float) -> str:
    """Reconstruction accuracy and latent use of an evaluation, as one sentence."""
    kl = recon.get("kl_per_dim", [])
    floor = f", {units_above_floor(kl, free_bits)} above the free-bits floor ({free_bits:g} nats)"
    return (
        f"Reconstruction: {_num(recon.get('teacher_forced_token_acc'), '.1%')} of tokens "
        f"right when teacher-forced vs {_num(recon.get('free_running_exact_match'), '.1%')} "
        f"of molecules rebuilt exactly when decoding freely; "
        f"{recon.get('active_units', '—')} of {recon.get('latent_dim', '—')} latent units "
        f"active{floor if kl else ''}."
    )


def show_evaluation(name: str, folder: Path) -> None:
    """Headline generation metrics from ``evaluation.json``, or how to get them."""
    file = folder / EVALUATION
    report = read_evaluation(str(file), file.stat().st_mtime) if file.exists() else None
    if report is None:
        st.info(
            ("The evaluation file of this checkpoint cannot be read. " if file.exists() else "")
            + "No generation metrics yet: compute them on the **Evaluate** page (a few minutes) "
            f"or run `python -m core.evaluate --checkpoint checkpoints/{name}`."
        )
        return
    st.markdown("**Generation** (reference grid of targets, from evaluation.json)")
    overall, summary = report.get("overall", {}), report.get("summary", {})
    shuffled = report.get("shuffled", {})
    metric_row(
        [
            ("Validity", _num(overall.get("validity"), ".1%"),
             "Share of generated SELFIES that decode to a molecule RDKit accepts."),
            ("Uniqueness", _num(overall.get("uniqueness"), ".1%"),
             "Distinct molecules among the valid ones, per target."),
            (novelty_label(report), _num(overall.get("novelty"), ".1%"),
             report.get("novelty_note") or "Valid unique molecules not in the training set."),
        ],
        border=True,
    )  # fmt: skip
    properties = report.get("properties") or ["logp", "tpsa"]
    grid = report.get("grid", {})
    mad_metrics = [
        (
            mad_label(p),
            _num(summary.get(f"{p}_mad"), mad_format(p)),
            "Mean |target − RDKit value| of molecules generated for "
            + (", ".join(f"{v:g}" for v in grid.get(p, [])) or "its reference grid")
            + ".",
        )
        for p in properties
    ]
    pair = " and ".join(DESCRIPTOR_SHORT.get(p, p) for p in properties[:2])
    joint = f"{pair} on target at once (each within its hit window)."
    joint_metric = ("Joint hit rate", _num(summary.get("joint_hit"), ".1%"), joint)
    metric_row([*mad_metrics, joint_metric], border=True)
    notes = []
    if shuffled:
        would = [
            f"{_num(shuffled.get(f'{p}_mad'), mad_format(p))}"
            f"{' ' + DESCRIPTOR_UNITS[p] if p in DESCRIPTOR_UNITS else ''} "
            f"({DESCRIPTOR_SHORT.get(p, p)})"
            for p in properties
        ]
        notes.append(
            f"With shuffled targets (as if the condition were ignored) the MADs would be "
            f"{', '.join(would[:-1])}{' and ' if len(would) > 1 else ''}{would[-1]}: the "
            "further below those the real numbers are, the more the model follows its "
            "condition."
        )
    heldout = report.get(HELDOUT, {})
    if heldout and len(properties) > 2:
        mads = ", ".join(
            f"{DESCRIPTOR_SHORT.get(p, p)} {_num(heldout.get(f'mad_{p}'), '.3g')}"
            for p in properties
        )
        notes.append(
            f"Every property at once, at the values of held-out molecules: MAD {mads}; "
            f"all on target {_num(heldout.get('hit_joint'), '.1%')}."
        )
    if report.get("reconstruction"):
        notes.append(reconstruction_note(report["reconstruction"], free_bits_of(folder)))
    n = report.get("n_per_target")
    notes.append(
        f"{n or '?'} samples per target at temperature {report.get('temperature', '?')}, "
        f"computed in {_num(report.get('seconds'), '.0f')} s."
    )
    st.caption("  \n".join(notes))


def show_training(folder: Path) -> None:
    """Where training ended, from ``metrics.jsonl``."""
    file = folder / "metrics.jsonl"
    if not file.exists():
        st.caption("No training log (metrics.jsonl) in this checkpoint.")
        return
    train, val = training_rows(str(folder), file.stat().st_mtime)
    if not train:
        st.caption("The training log of this checkpoint is empty.")
        return
    last, last_val = train[-1], (val[-1] if val else {})
    st.markdown("**Training**")
    step = checkpoint_step(folder) or last.get("step", 0)
    units = last_val.get("val_active_units")
    metric_row(
        [
            ("Steps", f"{step:,}", f"{last.get('tokens', 0) / 1e6:.1f} M SELFIES tokens seen"),
            ("Training loss", _num(last.get("loss"), ".3f"),
             "Reconstruction + β·KL + property-head error, per token (lower is better)."),
            ("Val. token accuracy", _num(last_val.get("val_token_acc"), ".1%"),
             "Next-symbol accuracy on held-out molecules, teacher-forced."),
            ("Active latent units", "—" if units is None else f"{units}",
             "Latent dimensions whose mean varies across molecules; 0 = posterior collapse."),
        ],
        border=True,
    )  # fmt: skip


st.title("MolScope")
st.markdown(
    "A **conditional Transformer VAE** that writes molecules as "
    "[SELFIES](https://github.com/aspuru-guzik-group/selfies) strings, one symbol at a time, "
    "aimed at target properties: by default **LogP** (Crippen octanol–water partition "
    "coefficient) and **TPSA** (topological polar surface area, Å²), or any descriptors "
    "(QED, SA score, MW, ...) a model is trained on, on MOSES or on your own molecules. Every "
    "SELFIES string decodes to a valid molecule, so the question is not *whether* it writes "
    "chemistry but whether it listens to the targets. The encoder maps a molecule to a "
    "latent code *z*; the decoder reads [conditions, z] (e.g. [LogP, TPSA, z]) as a prefix "
    "and writes the molecule under a causal mask. A **closed-loop** checkpoint also reads, at "
    "every position, the gap between each target and the property of the molecule written so "
    "far (RDKit after every symbol), so it steers with feedback instead of counting in its head."
)

name = selected_checkpoint()
folder = checkpoints_root() / name
st.subheader(f"Checkpoint `{name}`")
if not folder.is_dir():
    st.warning(f"There is no checkpoint folder '{name}'. Pick one in the sidebar.")
else:
    show_data(folder)
    show_evaluation(name, folder)
    show_training(folder)

st.subheader("Pages")
for path, title, icon, purpose, failure in GUIDE:
    if not (ROOT / path).is_file():
        continue
    left, right = st.columns([1, 5], vertical_alignment="center")
    left.page_link(path, label=title, icon=icon)
    right.markdown(f"{purpose}  \n:orange[Shows:] {failure}.")
