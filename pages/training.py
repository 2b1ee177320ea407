"""Training: every curve in the checkpoints' metrics.jsonl, several runs overlaid, and small
training runs started, watched and stopped in the background (state on disk: a page reload
or a second browser tab sees the same run)."""

from __future__ import annotations

import math
import shlex

import pandas as pd
import streamlit as st

from core import runs
from core.checkpoint import METRICS, read_metrics
from core.chem import DESCRIPTOR_LABELS, DESCRIPTORS
from core.data import list_datasets
from ui.charts import metric_figure
from ui.common import (
    available_checkpoints,
    checkpoints_root,
    ensure_app_frame,
    selected_checkpoint,
)
from ui.elements import metric_row, name_is_valid

ensure_app_frame()

TRAIN_METRICS = {
    "loss": "Total loss (per token)",
    "recon": "Reconstruction (nats/token)",
    "kl": "KL to the prior (nats/molecule)",
    "beta": "β (KL weight)",
    "prop_mse": "Property head MSE (normalised)",
    "lr": "Learning rate",
    "grad_norm": "Gradient norm (before clipping)",
    "tok_s": "Throughput (tokens/s)",
}
VAL_METRICS = {
    "val_recon": "Reconstruction (nats/token)",
    "val_token_acc": "Token accuracy (teacher-forced)",
    "val_kl": "KL (nats/molecule)",
    "val_active_units": "Active latent units",
    **{f"val_mae_{p}": f"Property head MAE: {DESCRIPTOR_LABELS[p]}" for p in DESCRIPTORS},
}
NOT_CURVES = {"step", "split", "epoch", "time", "tokens"}
STATE_BADGE = {
    "running": ":blue-badge[running]",
    "finished": ":green-badge[finished]",
    "stopped": ":orange-badge[stopped, checkpoint saved]",
    "failed": ":red-badge[failed]",
    "ended": ":gray-badge[ended]",
    "none": ":gray-badge[not started]",
}
SCRATCH = "(none: train from scratch)"
SIZE_OPTIONS = ("d_model", "n_heads", "n_layers", "d_ff", "enc_d_model", "enc_heads")
SIZE_OPTIONS += ("enc_layers", "enc_d_ff", "latent_dim")  # kept from the base when fine-tuning
SMALL_MODEL = {
    "d_model": 64,
    "n_heads": 4,
    "n_layers": 2,
    "d_ff": 256,
    "enc_d_model": 32,
    "enc_heads": 2,
    "enc_layers": 1,
    "enc_d_ff": 128,
    "val_size": 500,
    "log_every": 10,
}


@st.cache_data(show_spinner=False)
def load_curves(folder: str, mtime: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation rows of a checkpoint's metrics.jsonl as tables."""
    rows = read_metrics(folder)
    train = pd.DataFrame([r for r in rows if r.get("split", "train") == "train"])
    val = pd.DataFrame([r for r in rows if r.get("split") == "val"])
    return train, val


def curves_of(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    file = checkpoints_root() / name / METRICS
    return load_curves(str(file.parent), file.stat().st_mtime)


def chart_grid(
    metrics: dict[str, str], tables: dict[str, pd.DataFrame], last_step: float, prefix: str
) -> None:
    """Three small charts per row, sharing the step axis."""
    figures = [(k, f) for k, t in metrics.items() if (f := metric_figure(k, t, tables, last_step))]
    if not figures:
        st.caption("Nothing logged yet.")
    for start in range(0, len(figures), 3):
        for col, (key, fig) in zip(st.columns(3), figures[start : start + 3], strict=False):
            col.plotly_chart(fig, key=f"{prefix}_{key}")


def health_notes(name: str, train: pd.DataFrame, val: pd.DataFrame) -> None:
    """Warnings for the classic failures the curves show: collapse, divergence."""
    if len(val) and "val_active_units" in val and val["val_active_units"].iloc[-1] == 0:
        st.warning(
            f"**{name}: posterior collapse.** No latent unit is active at the last validation "
            "(KL ≈ 0): the decoder ignores z. Lower β, anneal it more slowly or use free bits."
        )
    elif len(train) > 2 and "kl" in train and float(train["kl"].iloc[-1]) < 0.05:
        st.warning(
            f"**{name}: KL ≈ 0** ({float(train['kl'].iloc[-1]):.3f} nats): the posterior is "
            "collapsing onto the prior, so z carries almost no information."
        )
    if len(train) and "loss" in train and not math.isfinite(float(train["loss"].iloc[-1])):
        st.error(f"**{name}: the loss is not finite.** Lower the learning rate and resume.")


# ---------------------------------------------------------------- curves

st.title("Training")
st.caption(
    "Curves logged by `python -m core.train` in each checkpoint's metrics.jsonl. Training "
    "rows are logged every few steps; validation rows (held-out molecules, all conditions "
    "given, z = μ) less often."
)
root = checkpoints_root()
found = available_checkpoints()
logged = [n for n in found if runs.has_metrics(root / n)]
if not logged:
    st.info("No checkpoint has a training log yet. Start a run below.")
else:
    current = selected_checkpoint()
    chosen = st.multiselect(
        "Runs to compare",
        logged,
        default=[current] if current in logged else logged[:1],
        key="compare",
        help="Checkpoints under checkpoints/ that have a metrics.jsonl.",
    )
    tables = {name: curves_of(name) for name in chosen}
    for name, (train, val) in tables.items():
        health_notes(name, train, val)
    trains = {name: t for name, (t, _) in tables.items()}
    vals = {name: v for name, (_, v) in tables.items()}
    extra = sorted(
        {c for t in trains.values() for c in t.columns}
        - NOT_CURVES
        - set(TRAIN_METRICS)
        - {c for c in VAL_METRICS}
    )
    last_step = max(
        [float(t["step"].max()) for t in [*trains.values(), *vals.values()] if "step" in t] or [1.0]
    )
    if chosen:
        st.subheader("Training")
        chart_grid({**TRAIN_METRICS, **{c: c for c in extra}}, trains, last_step, "train")
        st.subheader("Validation")
        chart_grid(VAL_METRICS, vals, last_step, "val")

# ---------------------------------------------------------------- background runs

st.subheader("Train in the background")
st.caption(
    "Starts `python -m core.train` as a separate, low-priority process; it keeps running if "
    "you close the page. Stop asks it to save a checkpoint and exit. The defaults train a "
    "small model for a few minutes; it then appears above and in the sidebar."
)
runs_root = runs.default_runs_root()


hostfile = runs.configured_hostfile()


def start_run(name: str, options: dict, resume: bool, overwrite: bool) -> None:
    """Launch the trainer in the background and watch it; a refusal is shown as an error."""
    try:
        runs.start(
            name,
            options,
            resume=resume,
            overwrite=overwrite,
            runs_root=runs_root,
            checkpoints_root=root,
            hostfile=hostfile if st.session_state.get("distributed") else None,
        )
    except runs.RunError as exc:
        st.error(str(exc))
        return
    st.session_state.watch = name
    st.toast(f"Run {name} started")


with st.container(border=True):
    name_col, mode_col = st.columns(2)
    name = name_col.text_input(
        "Run name",
        value="small",
        key="run_name",
        max_chars=64,
        help="Letters, digits, '_' or '-'. Writes checkpoints/<name>.",
    )
    mode = mode_col.segmented_control(
        "Mode", ["new run", "resume"], default="new run", key="run_mode", required=True
    )
    valid_name = name_is_valid(name)
    exists = valid_name and (root / name / "config.json").exists()
    base = SCRATCH
    if mode == "new run":
        bases = [n for n, problem in found.items() if problem is None and n != name]
        base = st.selectbox(
            "Start from",
            [SCRATCH, *bases],
            key="init_from",
            help="Fine-tune a trained checkpoint on the data: its sizes (and closed loop) are "
            "kept, symbols the data adds get new rows, new properties fresh conditions. The "
            "normal route for a small dataset.",
        )
    with st.form("run_form", border=False):
        if mode == "resume":
            have = runs.checkpoint_step(root / name) if exists else None
            st.caption(
                f"Checkpoint `{name}` is at step {have:,}."
                if have is not None
                else f"There is no checkpoint `{name}` to resume."
            )
            more = st.number_input("More steps", 10, 100_000, 200, step=10, key="more_steps")
            options = {"max_steps": (have or 0) + more}
        else:
            datasets = {str(info.path): info for info in list_datasets(runs.default_data_root())}
            a, b = st.columns(2)
            data_path = a.selectbox(
                "Data",
                list(datasets),
                format_func=lambda p: f"{datasets[p].name} · {datasets[p].n_rows:,} molecules",
                key="data",
                help="Any prepared dataset: MOSES, or your own (Dataset page → Your molecules).",
            )
            properties = b.multiselect(
                "Condition on",
                list(DESCRIPTORS),
                default=["logp", "tpsa"],
                format_func=DESCRIPTOR_LABELS.get,
                key="properties",
                help="The properties the model is given as targets (and learns to hit).",
            )
            fine_tune = base != SCRATCH
            a, b, c, d = st.columns(4)
            steps = a.number_input("Steps", 10, 100_000, 200, step=10, key="max_steps")
            batch = b.number_input("Batch size", 8, 512, 64, step=8, key="batch_size")
            width = c.selectbox(
                "Decoder width", [32, 64, 128, 256], index=1, key="d_model", disabled=fine_tune
            )
            layers = d.number_input("Decoder layers", 1, 8, 2, key="n_layers", disabled=fine_tune)
            a, b, c, d = st.columns(4)
            latent = a.selectbox(
                "Latent size", [2, 4, 8, 16, 32], index=2, key="latent_dim", disabled=fine_tune
            )
            limit = b.number_input(
                "Molecules used",
                500,
                2_000_000,
                5_000,
                step=500,
                key="limit",
                help="First N molecules of each split.",
            )
            lr = c.number_input("Peak learning rate", 1e-5, 1e-2, 1e-3, format="%.4f", key="lr")
            minutes = d.number_input("Time limit (min)", 1, 600, 10, key="max_minutes")
            if fine_tune:
                st.caption(
                    f"Fine-tuning `{base}`: the model's sizes are its own; a lower learning "
                    "rate (e.g. 0.0003) keeps more of what it knows."
                )
            options = {
                **SMALL_MODEL,
                "data": str(data_path),
                "max_steps": steps,
                "batch_size": batch,
                "d_model": width,
                "d_ff": 4 * width,
                "n_layers": layers,
                "latent_dim": latent,
                "limit": limit,
                "lr": lr,
                "max_minutes": minutes,
                "warmup": max(1, min(300, steps // 10)),
                "kl_anneal": max(1, steps // 2),
                "eval_every": max(10, steps // 5),
                "properties": ",".join(properties),
            }
            if fine_tune:
                options = {k: v for k, v in options.items() if k not in SIZE_OPTIONS}
                options["init_from"] = str(root / base)
        overwrite = False
        if mode == "new run" and exists:
            overwrite = st.checkbox(
                f"Replace the existing checkpoint `{name}`",
                key="overwrite",
                disabled=name == "default",
                help="The shipped 'default' checkpoint cannot be replaced from here.",
            )
        if hostfile is not None:
            st.checkbox(
                f"Data-parallel over the hosts in `{hostfile.name}` (mlx.launch, ring backend)",
                key="distributed",
                help="Each host trains on its shard of every batch; gradients are averaged. "
                "Every host needs this repository, its .venv and the data at the same path.",
            )
        submitted = st.form_submit_button(
            "Resume" if mode == "resume" else "Start", type="primary", disabled=not valid_name
        )
        no_properties = mode == "new run" and not properties
        if submitted and no_properties:
            st.error("Choose at least one property to condition on.")
    if valid_name:
        try:
            distributed = hostfile if st.session_state.get("distributed") else None
            argv = runs.train_command(
                name,
                options,
                resume=mode == "resume",
                overwrite=overwrite,
                checkpoints_root=root,
                hostfile=distributed,
            )
            core_at = argv.index("core.train") - 2  # the interpreter, after nice / the launcher
            launcher = ["mlx.launch", *argv[5:8], "--"] if distributed else []
            shown = [*launcher, "python", *argv[core_at + 1 :]]
            text = shlex.join(shown).replace(f"{runs.ROOT}/", "")
            st.caption("Same as running:")
            st.code(text, language="bash", wrap_lines=True)
        except runs.RunError as exc:
            st.error(str(exc))
    if submitted and valid_name and not no_properties:
        start_run(name, options, resume=mode == "resume", overwrite=overwrite)

known = runs.list_runs(runs_root)
statuses = {n: runs.status(n, runs_root=runs_root, checkpoints_root=root) for n in known}
running = [n for n, s in statuses.items() if s.running]
if known:
    if st.session_state.get("watch") not in known:
        st.session_state.watch = running[0] if running else known[-1]
    # plain names: each run's state is shown below and changes while the page is open
    watched = st.selectbox("Watch run", known, key="watch")

    @st.fragment(run_every=2 if running else None)
    def live_status(name: str) -> None:
        """Progress, latest numbers and log tail of one run, refreshed every 2 s."""
        status = runs.status(name, runs_root=runs_root, checkpoints_root=root)
        seen = dict(st.session_state.get("watch_running", {}))
        was_running, seen[name] = seen.get(name, False), status.running
        st.session_state.watch_running = seen
        if was_running and not status.running:
            st.rerun(scope="app")  # the run ended: redraw curves, stop polling
        head, stop_col = st.columns([5, 1], vertical_alignment="center")
        pid = f" · pid {status.pid}" if status.pid else ""
        head.markdown(f"**{name}** {STATE_BADGE.get(status.state, status.state)}{pid}")
        if stop_col.button(
            "Stop",
            key="stop_run",
            disabled=not status.running,
            help="Save a checkpoint and exit (SIGINT).",
        ):
            if runs.stop(name, runs_root=runs_root):
                st.toast(f"Asked {name} to stop; it saves a checkpoint first.")
        if status.step is not None and status.total:
            st.progress(
                min(status.step / status.total, 1.0),
                text=f"step {status.step:,} of {status.total:,}",
            )
        last = status.last_metrics
        if last:
            metric_row(
                [
                    ("Loss", f"{last.get('loss', float('nan')):.3f}", None),
                    ("KL (nats)", f"{last.get('kl', float('nan')):.2f}", None),
                    ("Tokens/s", f"{last.get('tok_s', 0):,.0f}", None),
                    ("Checkpoint at step", f"{status.checkpoint_step or 0:,}", None),
                ]
            )
        if status.message:
            (st.error if status.state == "failed" else st.caption)(status.message)
        st.code("\n".join(status.log_tail) or "(no output yet)", language=None, wrap_lines=True)

    live_status(watched)
else:
    st.caption("No background run yet.")
