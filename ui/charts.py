"""The dashboard's figure builders (the Generate page's so far): Plotly figures from plain
data, with no Streamlit and no model, so a page only reads its widgets, calls ``core`` and
draws what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.chem import DESCRIPTOR_LABELS

CHOSEN, OTHER, TARGET = "#d62728", "#7f9fbf", "#2ca02c"
GENERATED, DROPPED, DATASET = "#1f77b4", "#a9c4e0", "#c7ccd4"
GAP = "#ff7f0e"  # what a closed-loop model reads: the gap to its target


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


def top_k_figure(labels: Sequence[str], probs: Sequence[float], chosen: str) -> go.Figure:
    """The most probable next symbols (best first), the ``chosen`` one in red."""
    fig = go.Figure(
        go.Bar(
            x=list(probs),
            y=list(labels),
            orientation="h",
            marker_color=[CHOSEN if label == chosen else OTHER for label in labels],
            text=[f"{q:.1%}" for q in probs],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 + 24 * len(labels),
        margin=dict(l=0, r=40, t=10, b=0),
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
