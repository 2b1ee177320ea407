"""The dashboard's figure builders: Plotly figures from plain data, with no Streamlit and no
model, so a page only reads its widgets, calls ``core`` and draws what these return.

Shapes and labels first, then a section per page: Generate (densities, next-symbol
probabilities, running properties, batches), Dataset (histograms, LogP × TPSA coverage),
Training (curves), Attention (maps, condition shares, leak check), Evaluate (target vs
achieved, shuffled targets, latent use)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.chem import DESCRIPTOR_LABELS, DESCRIPTOR_SHORT, DESCRIPTOR_UNITS

CHOSEN, OTHER, TARGET = "#d62728", "#7f9fbf", "#2ca02c"
REFUSED = "#b0b0b0"  # Generate: symbols a closed loop drew and refused
GENERATED, DROPPED, DATASET = "#1f77b4", "#a9c4e0", "#c7ccd4"
GAP = "#ff7f0e"  # what a closed-loop model reads: the gap to its target
DATA, FILTERED, UPLOAD = "#b8c2cc", "#1f77b4", "#d62728"  # Dataset page: whole, filtered, yours
RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]
MASKED = "#d4d4d4"  # cells the causal mask hides: grey, never a colour of the scale
PREFIX = "#c2410c"  # tick labels of the condition/z/BOS prefix
REAL, SHUFFLED = "#1f77b4", "#b0b7c3"  # Evaluate page: own targets, shuffled ones


def unit_label(p: str) -> str:
    """``" (Å²)"`` for TPSA, nothing for a property without a unit."""
    return f" ({DESCRIPTOR_UNITS[p]})" if p in DESCRIPTOR_UNITS else ""


def short_label(p: str) -> str:
    """``LogP``, ``TPSA (Å²)``, ``MW (Da)``...: a short name with its unit."""
    return DESCRIPTOR_SHORT.get(p, p) + unit_label(p)


def novelty_label(result: Mapping) -> str:
    """How an evaluation's novelty is named: "Novelty", or "Novelty (vs subset)" where
    ``core.evaluate`` measured it against the MOSES subset because the training set its
    checkpoint names was missing (``novelty_vs``), which inflates it.

    >>> novelty_label({"novelty_vs": "subset"}), novelty_label({})
    ('Novelty (vs subset)', 'Novelty')
    """
    return "Novelty (vs subset)" if result.get("novelty_vs") == "subset" else "Novelty"


def fmt(value: float | None, percent: bool) -> str:
    """A figure as shown in tables and on bars: ``12.3%`` or ``0.42``; a dash when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1%}" if percent else f"{value:.2f}"


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


# ---------------------------------------------------------------- Generate


def density_figure(
    counts: Sequence[int],
    edges: Sequence[float],
    covered: tuple[float, float],
    target: float | None,
) -> go.Figure:
    """A histogram (``counts`` over ``edges``) with the ``covered`` range shaded and the
    target marked."""
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    shade = band(*covered, axis="x") | {"fillcolor": TARGET, "opacity": 0.1}
    shapes = [shade] + ([] if target is None else [line(target, "x", CHOSEN, "solid")])
    return go.Figure(
        go.Bar(x=centres, y=counts, marker_color="#b0b7c3", hoverinfo="skip"),
        layout=dict(
            height=90,
            margin=dict(l=0, r=0, t=0, b=0),
            bargap=0,
            showlegend=False,
            shapes=shapes,
            xaxis=dict(range=[edges[0], edges[-1]], title=None),
            yaxis=dict(visible=False),
        ),
    )


def top_k_figure(
    labels: Sequence[str], probs: Sequence[float], chosen: str, refused: Sequence[str] = ()
) -> go.Figure:
    """The most probable next symbols (best first), the ``chosen`` one in red, those drawn
    and ``refused`` (a closed loop's large rings) grey and hatched."""
    colours = {label: REFUSED for label in refused} | {chosen: CHOSEN}
    fig = go.Figure(
        go.Bar(
            x=list(probs),
            y=list(labels),
            orientation="h",
            marker_color=[colours.get(label, OTHER) for label in labels],
            marker_pattern_shape=["/" if label in refused else "" for label in labels],
            text=[
                f"{q:.1%}" + (" refused" if label in refused else "")
                for label, q in zip(labels, probs, strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 + 24 * len(labels),
        margin=dict(l=0, r=90 if refused else 40, t=10, b=0),
        xaxis=dict(range=[0, max(probs) * 1.15], tickformat=".0%", title="probability"),
        yaxis=dict(autorange="reversed", type="category"),
    )
    return fig


def running_figure(
    values: Sequence[float | None],
    label: str,
    target: float | None,
    window: float,
    reads: Sequence[float] | None = None,
) -> go.Figure:
    """A property of the partial molecule after each symbol (None: no atom yet) against the
    target band (``target`` ± ``window``).

    ``reads`` (a closed-loop model with this property targeted): the property each decoding
    position read, the first one the empty molecule's; drawn at the number of symbols before
    that position, with a bar up or down to the target: the gap the model read.
    """
    shapes = [] if target is None else [band(target - window, target + window), line(target)]
    traces = [
        go.Scatter(
            x=list(range(1, len(values) + 1)),
            y=list(values),
            mode="lines+markers",
            name="so far (RDKit)",
            line_color=GENERATED,
            hovertemplate="after symbol %{x}: %{y:.2f}<extra></extra>",
        )
    ]
    if reads is not None and target is not None:
        read = np.asarray(reads, dtype=float)
        gap = target - read
        traces.append(
            go.Scatter(
                x=list(range(len(read))),
                y=read.tolist(),
                mode="markers",
                name="gap read",
                marker=dict(color=GAP, size=6, symbol="diamond"),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=np.maximum(gap, 0).tolist(),
                    arrayminus=np.maximum(-gap, 0).tolist(),
                    color=GAP,
                    thickness=1.5,
                    width=0,
                ),
                customdata=gap.tolist(),
                hovertemplate="position after %{x} symbols read %{y:.2f}: "
                "gap %{customdata:+.2f}<extra></extra>",
            )
        )
    title = label + ("" if target is None else f" · target {target:g} ± {window:g}")
    return go.Figure(
        traces,
        layout=dict(
            title=dict(text=title, font_size=13),
            shapes=shapes,
            height=240 + 30 * (len(traces) > 1),
            margin=dict(l=0, r=0, t=30, b=30 * (len(traces) > 1)),
            showlegend=len(traces) > 1,
            legend=dict(orientation="h", yanchor="top", y=-0.3, x=0, font_size=11),
            xaxis=dict(title="symbols decoded", tick0=1, dtick=max(1, len(values) // 8)),
        ),
    )


def batch_scatter(
    table: pd.DataFrame,
    cloud: pd.DataFrame,
    targets: Mapping[str, float | None],
    windows: Mapping[str, float],
    kept: np.ndarray | None = None,
) -> go.Figure:
    """LogP × TPSA of the generated molecules over the data set's ``cloud``, with the target
    box (or band) of ±``windows``. ``kept`` (best-of-k): a boolean per row of ``table``; the
    rows not kept are drawn pale."""
    valid = table.smiles != ""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=cloud.logp,
            y=cloud.tpsa,
            mode="markers",
            name="dataset",
            marker=dict(size=3, color=DATASET),
            hoverinfo="skip",
        )
    )
    groups = [("generated", valid)]
    if kept is not None:
        groups = [("not kept", valid & ~kept), ("kept (best of k)", valid & kept)]
    for name, rows in groups:
        shown = table[rows]
        fig.add_trace(
            go.Scatter(
                x=shown.logp,
                y=shown.tpsa,
                mode="markers",
                name=name,
                marker=dict(
                    size=7 if name != "not kept" else 5,
                    color=DROPPED if name == "not kept" else GENERATED,
                    line=dict(width=0.5, color="white"),
                ),
                text=shown.smiles,
                hovertemplate="%{text}<br>LogP %{x:.2f}, TPSA %{y:.1f}<extra></extra>",
            )
        )
    fig.update_layout(
        shapes=_target_shapes(targets.get("logp"), targets.get("tpsa"), windows),
        height=420,
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis_title=DESCRIPTOR_LABELS["logp"],
        yaxis_title=DESCRIPTOR_LABELS["tpsa"],
        legend=dict(orientation="h", y=1.02, x=0),
    )
    return fig


def _target_shapes(lp: float | None, tp: float | None, windows: Mapping[str, float]) -> list:
    """The hit box of two targets (a band for one) and a line at each."""
    shapes = []
    if lp is not None and tp is not None:
        box = dict(
            x0=lp - windows["logp"],
            x1=lp + windows["logp"],
            y0=tp - windows["tpsa"],
            y1=tp + windows["tpsa"],
        )
        shapes.append(dict(type="rect", **box, line_color=TARGET, fillcolor=TARGET, opacity=0.2))
    elif lp is not None:
        shapes.append(band(lp - windows["logp"], lp + windows["logp"], axis="x"))
    elif tp is not None:
        shapes.append(band(tp - windows["tpsa"], tp + windows["tpsa"]))
    if lp is not None:
        shapes.append(line(lp, "x"))
    if tp is not None:
        shapes.append(line(tp))
    return shapes


# ---------------------------------------------------------------- Dataset


def hist_figure(name: str, traces: list[tuple[str, pd.DataFrame, str]], y: str) -> go.Figure:
    """Overlaid pre-binned histograms of one descriptor: (label, ``core.explore.histogram``
    table, colour) per trace; ``y``: "count" or "fraction"."""
    fig = go.Figure()
    for label, hist, colour in traces:
        fig.add_bar(
            x=hist["center"],
            y=hist[y],
            width=hist["right"] - hist["left"],
            name=label,
            marker_color=colour,
            opacity=0.75 if len(traces) > 1 else 1.0,
            hovertemplate=f"{short_label(name)} %{{x:.3g}}<br>{y} %{{y:.3g}}<extra>{label}</extra>",
        )
    fig.update_layout(
        barmode="overlay",
        height=230,
        margin=dict(l=10, r=10, t=30, b=10),
        bargap=0,
        title=dict(text=DESCRIPTOR_LABELS[name], font_size=14),
        showlegend=False,
    )
    fig.update_xaxes(nticks=6)
    fig.update_yaxes(title_text="molecules" if y == "count" else "share", nticks=5)
    if y == "fraction":
        fig.update_yaxes(tickformat=".0%")
    return fig


def coverage_figure(
    counts: np.ndarray,
    x_edges: np.ndarray,
    y_edges: np.ndarray,
    box: Mapping[str, tuple[float, float]],
    upload: pd.DataFrame | None = None,
) -> go.Figure:
    """LogP × TPSA ``counts`` (``core.explore.density_2d``) as a heatmap, the model's range
    ``box`` (when it has LogP and TPSA) as a dashed rectangle and an ``upload``'s molecules
    as points."""
    fig = go.Figure(
        go.Heatmap(
            x=(x_edges[:-1] + x_edges[1:]) / 2,
            y=(y_edges[:-1] + y_edges[1:]) / 2,
            z=np.where(counts > 0, counts, np.nan),
            colorscale="Blues",
            colorbar=dict(title="molecules"),
            hovertemplate="LogP %{x:.2f}<br>TPSA %{y:.0f} Å²<br>%{z} molecules<extra></extra>",
        )
    )
    if {"logp", "tpsa"} <= set(box):
        (x0, x1), (y0, y1) = box["logp"], box["tpsa"]
        fig.add_shape(
            type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color=TARGET, dash="dash", width=2)
        )
        fig.add_annotation(
            x=x0,
            y=y1,
            text="model's training range",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font_color=TARGET,
        )
    if upload is not None and len(upload):
        fig.add_scatter(
            x=upload["logp"],
            y=upload["tpsa"],
            mode="markers",
            name="your molecules",
            marker=dict(color=UPLOAD, size=6, line=dict(color="white", width=0.5)),
            hovertemplate="%{text}<br>LogP %{x:.2f}, TPSA %{y:.0f} Å²<extra></extra>",
            text=upload["smiles"],
        )
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    fig.update_xaxes(title_text=DESCRIPTOR_LABELS["logp"])
    fig.update_yaxes(title_text=DESCRIPTOR_LABELS["tpsa"])
    return fig


# ---------------------------------------------------------------- Training


def metric_figure(
    key: str, title: str, tables: Mapping[str, pd.DataFrame], last_step: float
) -> go.Figure | None:
    """One metric over steps (axis 0..``last_step``), a line per run; None if none logged it."""
    fig = go.Figure()
    for i, (name, table) in enumerate(tables.items()):
        if key not in table or "step" not in table:
            continue
        points = table[["step", key]].dropna()
        fig.add_scatter(
            x=points["step"],
            y=points[key],
            name=name,
            mode="lines+markers" if len(points) < 30 else "lines",
            line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)], width=2),
            marker=dict(size=5),
            hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>",
        )
    if not fig.data:
        return None
    fig.update_layout(
        title=dict(text=title, font_size=14),
        height=250,
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=len(tables) > 1,
        legend=dict(orientation="h", y=-0.25, font_size=11),
    )
    fig.update_xaxes(title_text="step", range=[0, last_step * 1.03])
    if key == "val_token_acc":
        fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    elif key == "val_active_units":
        fig.update_yaxes(rangemode="tozero", tickformat="d")
    return fig


# ---------------------------------------------------------------- Attention


def tick_text(labels: Sequence[str], n_special: int) -> list[str]:
    """Axis labels with the prefix (conditions, z, [BOS]) in bold colour."""
    return [
        f"<b><span style='color:{PREFIX}'>{t}</span></b>" if i < n_special else t
        for i, t in enumerate(labels)
    ]


def heatmap_traces(
    weights: np.ndarray, causal: np.ndarray | None, labels: Sequence[str], **kw
) -> list[go.Heatmap]:
    """The mask as a grey layer and the weights (NaN where masked) on top of it."""
    traces = []
    z = weights.astype(float)
    if causal is not None:
        z = np.where(causal, z, np.nan)
        traces.append(
            go.Heatmap(
                z=np.where(causal, np.nan, 1.0),
                colorscale=[[0, MASKED], [1, MASKED]],
                showscale=False,
                hoverinfo="skip",
            )
        )
    text = [
        [f"{labels[r]} (row {r}) → {labels[c]}" for c in range(len(labels))]
        for r in range(len(labels))
    ]
    traces.append(
        go.Heatmap(
            z=z,
            text=text,
            colorscale="Viridis",
            hovertemplate="%{text}: %{z:.3f}<extra></extra>",
            **kw,
        )
    )
    return traces


def detail_figure(
    weights: np.ndarray,
    causal: np.ndarray | None,
    labels: Sequence[str],
    n_special: int,
    title: str,
    zmax: float,
) -> go.Figure:
    """One head's map with every position labelled (rows: queries, columns: keys) and the
    first ``n_special`` positions (the prefix) set off by lines."""
    fig = go.Figure(
        heatmap_traces(
            weights, causal, labels, zmin=0, zmax=zmax, colorbar=dict(title="weight", thickness=12)
        )
    )
    ticks = dict(
        tickmode="array",
        tickvals=list(range(len(labels))),
        ticktext=tick_text(labels, n_special),
        tickfont_size=10,
        showgrid=False,
    )
    edge = n_special - 0.5
    cell = max(10, min(18, 900 // len(labels)))  # px: square cells that fit the page
    prefix_line = dict(type="line", line=dict(color=PREFIX, width=1.5))
    fig.update_layout(
        title=dict(text=title, font_size=14),
        width=cell * len(labels) + 260,
        height=cell * len(labels) + 170,
        margin=dict(l=0, r=0, t=40, b=0),
        xaxis=ticks
        | dict(title="attends to (key)", tickangle=-90, scaleanchor="y", constrain="domain"),
        yaxis=ticks | dict(title="position (query)", autorange="reversed"),
        plot_bgcolor="white",
        shapes=[
            prefix_line | dict(x0=edge, x1=edge, y0=-0.5, y1=len(labels) - 0.5),
            prefix_line | dict(y0=edge, y1=edge, x0=-0.5, x1=len(labels) - 0.5),
        ],
    )
    return fig


def overview_figure(
    layers: Sequence[np.ndarray], causal: np.ndarray | None, zmax: float, prefix: str
) -> go.Figure:
    """Every layer × head as a thumbnail (rows: layers, columns: heads)."""
    n_layers, n_heads = len(layers), layers[0].shape[0]
    fig = make_subplots(
        rows=n_layers,
        cols=n_heads,
        horizontal_spacing=0.015,
        vertical_spacing=0.03,
        row_titles=[f"{prefix} layer {i + 1}" for i in range(n_layers)],
        column_titles=[f"head {h + 1}" for h in range(n_heads)],
    )
    labels = [str(i) for i in range(layers[0].shape[-1])]
    for li, w in enumerate(layers):
        for h in range(n_heads):
            for trace in heatmap_traces(w[h], causal, labels, zmin=0, zmax=zmax, showscale=False):
                fig.add_trace(trace, row=li + 1, col=h + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, autorange="reversed")
    fig.update_layout(
        height=150 * n_layers + 40, margin=dict(l=0, r=30, t=30, b=0), plot_bgcolor="white"
    )
    return fig


def share_figure(shares: Mapping[str, np.ndarray]) -> go.Figure:
    """Condition share per layer × head, one panel per prefix token."""
    fig = make_subplots(
        rows=1, cols=len(shares), subplot_titles=list(shares), horizontal_spacing=0.06
    )
    top = max(0.5, max(float(share.max()) for share in shares.values()))
    for i, share in enumerate(shares.values(), start=1):
        n_layers, n_heads = share.shape
        fig.add_trace(
            go.Heatmap(
                z=share,
                x=[f"head {h + 1}" for h in range(n_heads)],
                y=[f"layer {li + 1}" for li in range(n_layers)],
                zmin=0,
                zmax=top,
                colorscale="Oranges",
                texttemplate="%{z:.0%}",
                showscale=False,
                hovertemplate="%{y}, %{x}: %{z:.1%}<extra></extra>",
            ),
            row=1,
            col=i,
        )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_yaxes(showticklabels=True, row=1, col=1)
    fig.update_layout(height=60 * share.shape[0] + 80, margin=dict(l=60, r=0, t=30, b=0))
    return fig


def leak_figure(report, n_special: int) -> go.Figure:
    """Max |Δ logit| per decoder position of a ``core.inspect.leak_check`` report; positions
    before the replaced symbol must be 0."""
    before = np.arange(len(report.labels)) < report.changed_row
    colours = np.where(before, TARGET, GAP)
    fig = go.Figure(
        go.Bar(
            x=list(range(len(report.labels))),
            y=report.row_delta,
            marker_color=colours.tolist(),
            text=np.where(before & (report.row_delta == 0), "0", "").tolist(),
            textposition="outside",
            hovertemplate="%{customdata}: max |Δ logit| = %{y:.3g}<extra></extra>",
            customdata=report.labels,
        )
    )
    fig.update_layout(
        height=280,
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis=dict(
            tickmode="array",
            tickvals=list(range(len(report.labels))),
            ticktext=tick_text(report.labels, n_special),
            tickangle=-90,
            tickfont_size=10,
        ),
        yaxis_title="max |Δ logit|",
    )
    return fig


# ---------------------------------------------------------------- Evaluate


def single_target_figure(rows: Sequence[dict], p: str, hit: float) -> go.Figure:
    """MAD ± SD and hit rate for each target of one property alone (``hit``: its window), from
    the ``targets`` rows of an evaluation."""
    mine = [r for r in rows if set(r["targets"]) == {p}]
    x = [f"{r['targets'][p]:g}<br>hit {r.get(f'hit_{p}', 0):.0%}" for r in mine]
    name = DESCRIPTOR_SHORT.get(p, p)
    fig = go.Figure(
        go.Bar(
            x=x,
            y=[r.get(f"mad_{p}") for r in mine],
            error_y=dict(type="data", array=[r.get(f"sd_{p}") for r in mine]),
            marker_color=REAL,
            hovertemplate="target %{x}: MAD %{y:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=f"{name} targets alone: mean |target − achieved|", font_size=14),
        xaxis_title=f"target {name} (and hit rate)",
        yaxis_title=f"MAD ± SD{unit_label(p)}",
        shapes=[line(hit)],
        height=320,
        margin=dict(l=0, r=0, t=40, b=0),
    )
    return fig


def joint_figure(rows: Sequence[dict], windows: Mapping[str, float]) -> go.Figure | None:
    """Joint hit rate over the grid of target pairs of the first two properties; None when the
    evaluation has no pairs."""
    joint = [r for r in rows if len(r["targets"]) == 2 and "hit_joint" in r]
    if not joint:
        return None
    a, b = list(joint[0]["targets"])
    xs = sorted({r["targets"][a] for r in joint})
    ys = sorted({r["targets"][b] for r in joint})
    grid = {(r["targets"][a], r["targets"][b]): r["hit_joint"] for r in joint}
    name_a, name_b = DESCRIPTOR_SHORT.get(a, a), DESCRIPTOR_SHORT.get(b, b)
    fig = go.Figure(
        go.Heatmap(
            z=[[grid.get((x, y)) for x in xs] for y in ys],
            x=[f"{v:g}" for v in xs],
            y=[f"{v:g}" for v in ys],
            zmin=0,
            zmax=1,
            colorscale="Greens",
            texttemplate="%{z:.0%}",
            colorbar=dict(title="hit", tickformat=".0%", thickness=12),
            hovertemplate=f"{name_a} %{{x}}, {name_b} %{{y}}: %{{z:.0%}}<extra></extra>",
        )
    )
    window = f"±{windows.get(a, 0):g} {name_a} and ±{windows.get(b, 0):g} {name_b}"
    fig.update_layout(
        title=dict(text=f"Both targets: joint hit rate ({window})", font_size=14),
        xaxis=dict(title=f"target {name_a}", type="category"),
        yaxis=dict(title=f"target {name_b}{unit_label(b)}", type="category"),
        height=320,
        margin=dict(l=0, r=0, t=40, b=0),
    )
    return fig


def shuffled_figure(
    own: float | None, shuffled: float | None, label: str, note: str, percent: bool
) -> go.Figure:
    """One metric against the molecules' own targets and against shuffled ones."""
    values = [own, shuffled]
    fig = go.Figure(
        go.Bar(
            x=["own targets", "shuffled"],
            y=values,
            marker_color=[REAL, SHUFFLED],
            text=[fmt(v, percent) for v in values],
            textposition="outside",
            cliponaxis=False,
        )
    )
    fig.update_layout(
        title=dict(text=f"{label} <span style='font-size:11px'>({note})</span>", font_size=13),
        height=240,
        margin=dict(l=0, r=0, t=40, b=0),
        yaxis=dict(tickformat=".0%" if percent else None, rangemode="tozero"),
    )
    return fig


def kl_figure(kl: Sequence[float], free_bits: float | None = None) -> go.Figure:
    """KL to the prior per latent dimension; the inactive ones (≤ 0.01 nats) in red, the
    free-bits floor (``free_bits`` nats, when given) as a dotted line."""
    fig = go.Figure(
        go.Bar(
            x=[str(i + 1) for i in range(len(kl))],
            y=list(kl),
            marker_color=[GENERATED if v > 0.01 else CHOSEN for v in kl],
            hovertemplate="dimension %{x}: KL %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="latent dimension",
        yaxis_title="KL (nats)",
        height=260,
        margin=dict(l=0, r=0, t=10, b=0),
        shapes=[] if free_bits is None else [line(free_bits, colour=CHOSEN, dash="dot")],
    )
    return fig
