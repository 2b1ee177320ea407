"""Attention: where each decoder and encoder head looks for one molecule, how much the decoder
attends to its conditions, and a live check that the causal mask hides the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.chem import DESCRIPTOR_LABELS, MAX_SMILES_CHARS, describe_smiles, mol_to_png
from core.feedback import prefix_properties
from core.generate import GenerationError, prefix_inputs
from core.inspect import (
    InspectError,
    attention_maps,
    condition_share,
    leak_check,
    molecule_ids,
    readable_selfies,
    uniform_share,
)
from core.pool import on_pool
from ui.common import ensure_app_frame, require_bundle, require_dataset

ensure_app_frame()

N_CHOICES = 36  # dataset molecules offered in the picker
MASKED = "#d4d4d4"  # cells the causal mask hides: grey, never a colour of the scale
PREFIX = "#c2410c"  # tick labels of the condition/z/BOS prefix
SHORT = {"logp": "LogP", "tpsa": "TPSA"}
COLOURS = "Viridis"

bundle = require_bundle()
data = require_dataset()
props = bundle.properties


@st.cache_data(show_spinner=False)
def picker_molecules(_data, checkpoint: str, n: int = N_CHOICES) -> list[dict]:
    """A fixed sample of test-split molecules the model can read, shortest first."""
    test = _data[_data.split == "test"]
    pool = (test if len(test) else _data).sample(min(4 * n, len(_data)), random_state=0)
    rows = []
    for row in pool.itertuples():
        try:
            molecule_ids(bundle, row.selfies)
        except InspectError:
            continue
        rows.append({"smiles": row.smiles, **{p: float(getattr(row, p)) for p in props}})
        if len(rows) == n:
            break
    return sorted(rows, key=lambda r: len(r["smiles"]))


def tick_text(labels: list[str], n_special: int) -> list[str]:
    """Axis labels with the prefix (conditions, z, [BOS]) in bold colour."""
    return [
        f"<b><span style='color:{PREFIX}'>{t}</span></b>" if i < n_special else t
        for i, t in enumerate(labels)
    ]


def heatmap_traces(weights: np.ndarray, causal: np.ndarray | None, labels: list[str], **kw):
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
            colorscale=COLOURS,
            hovertemplate="%{text}: %{z:.3f}<extra></extra>",
            **kw,
        )
    )
    return traces


def detail_figure(weights, causal, labels, n_special, title: str, zmax: float) -> go.Figure:
    """One head's map with every position labelled (rows: queries, columns: keys)."""
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
            dict(
                type="line",
                x0=edge,
                x1=edge,
                y0=-0.5,
                y1=len(labels) - 0.5,
                line=dict(color=PREFIX, width=1.5),
            ),
            dict(
                type="line",
                y0=edge,
                y1=edge,
                x0=-0.5,
                x1=len(labels) - 0.5,
                line=dict(color=PREFIX, width=1.5),
            ),
        ],
    )
    return fig


def overview_figure(layers: list[np.ndarray], causal, zmax: float, prefix: str) -> go.Figure:
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


def share_figure(shares: dict[str, np.ndarray]) -> go.Figure:
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


def leak_figure(report) -> go.Figure:
    """Max |Δ logit| per decoder position; positions before the replaced symbol must be 0."""
    before = np.arange(len(report.labels)) < report.changed_row
    colours = np.where(before, "#2ca02c", "#ff7f0e")
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
            ticktext=tick_text(report.labels, bundle.args.n_prefix + 1),
            tickangle=-90,
            tickfont_size=10,
        ),
        yaxis_title="max |Δ logit|",
    )
    return fig


def gap_table(selfies: str, symbols: list[str], targets: dict[str, float | None]) -> pd.DataFrame:
    """What each [BOS]/symbol position of a closed-loop decoder reads besides its token: per
    property the molecule so far and, for a targeted one, the gap target − that (real units).
    Call it through ``on_pool``: ``prefix_inputs`` builds an MLX array."""
    reads = np.array(prefix_inputs(bundle, selfies))[0]  # (1 + len(symbols), P), normalised
    rows = []
    for t, label in enumerate(["[BOS]", *symbols]):
        smiles = prefix_properties("".join(symbols[:t]), props)[0] or "(empty)"
        row = {"position": label if t == 0 else f"{t}: {label}", "molecule so far": smiles}
        for i, p in enumerate(props):
            so_far = bundle.scales[p].denormalise(float(reads[t, i]))
            row[f"{SHORT.get(p, p)} so far"] = round(so_far, 2)
            if targets[p] is not None:
                row[f"gap {SHORT.get(p, p)}"] = round(targets[p] - so_far, 2)
        rows.append(row)
    return pd.DataFrame(rows)


st.title("Attention")
st.write(
    "Pick a molecule and see where every attention head looks while the decoder reads it "
    "(teacher forcing, z = the encoder's mean for this molecule). The decoder reads "
    "**[LogP] [TPSA] [z] [BOS]** and then the SELFIES symbols; its causal mask lets each "
    "position see only itself and what came before."
    + (
        " This checkpoint is closed loop: every [BOS]/symbol position also reads, per "
        "targeted property, the gap between the target and the molecule written so far."
        if bundle.args.feedback
        else ""
    )
)

choices = picker_molecules(data, str(bundle.path))
c_pick, c_type = st.columns(2)
picked = c_pick.selectbox(
    "Dataset molecule (test split)",
    range(len(choices)),
    format_func=lambda i: (
        f"{choices[i]['smiles']}  ·  "
        + "  ".join(f"{SHORT.get(p, p)} {choices[i][p]:.1f}" for p in props)
    ),
    key="att_pick",
)
typed = c_type.text_input(
    "…or type a SMILES",
    key="att_smiles",
    placeholder="e.g. CC(=O)Nc1ccc(O)cc1",
    max_chars=MAX_SMILES_CHARS,
).strip()

smiles = typed or choices[picked]["smiles"]
own = describe_smiles(smiles, props)
if own is None:
    st.error(f"Not a valid SMILES: {smiles[:80]}")
    st.stop()

if st.session_state.get("att_for") != smiles:  # a new molecule: targets start at its own values
    st.session_state.att_for = smiles
    for p in props:
        st.session_state[f"att_{p}"] = round(own[p], 2)

c_mol, c_targets = st.columns([1, 2])
c_mol.image(mol_to_png(smiles, size=(320, 220)))
targets: dict[str, float | None] = {}
with c_targets:
    st.markdown("**Conditions fed to the model** (start at the molecule's own values)")
    for p in props:
        c_use, c_val = st.columns([1, 2], vertical_alignment="bottom")
        use = c_use.toggle(f"Condition on {SHORT.get(p, p)}", value=True, key=f"att_use_{p}")
        value = c_val.number_input(
            DESCRIPTOR_LABELS.get(p, p),
            step=0.1,
            key=f"att_{p}",
            disabled=not use,
            help=f"The molecule's own value is {own[p]:.2f}.",
        )
        targets[p] = float(value) if use else None

try:
    selfies, flattened = readable_selfies(bundle, smiles)
    maps = on_pool(attention_maps, bundle, selfies, targets)
except (InspectError, GenerationError) as exc:
    st.error(f"The model cannot read this molecule: {exc}")
    st.stop()
if flattened:
    st.info(
        "Stereochemistry removed: the model has no stereo symbols (its training data has none)."
    )

n_special = maps.n_prefix + 1  # conditions, z and [BOS]
tab_dec, tab_enc, tab_share, tab_leak = st.tabs(
    ["Decoder attention", "Encoder attention", "Attention on the conditions", "Causal mask check"]
)

with tab_dec:
    st.caption(
        "Rows: the position doing the looking (the row labelled [C] has just read that [C] and "
        "predicts the next symbol); columns: the positions it looks at. "
        "**Grey cells are masked** (the future, exactly 0 after the softmax) — distinct from "
        "dark cells, which are allowed but get almost no attention. Orange lines separate the "
        "prefix [conditions, z, BOS] from the symbols."
    )
    zmax = float(max(w.max() for w in maps.decoder))
    st.plotly_chart(
        overview_figure(maps.decoder, maps.causal, zmax, "decoder"), key="att_dec_overview"
    )
    c_layer, c_head = st.columns(2)
    layer = (
        c_layer.segmented_control(
            "Layer", list(range(1, len(maps.decoder) + 1)), default=1, key="att_dec_layer"
        )
        or 1
    )
    head = (
        c_head.segmented_control(
            "Head", list(range(1, maps.decoder[0].shape[0] + 1)), default=1, key="att_dec_head"
        )
        or 1
    )
    st.plotly_chart(
        detail_figure(
            maps.decoder[layer - 1][head - 1],
            maps.causal,
            maps.decoder_labels,
            n_special,
            f"Decoder layer {layer}, head {head}",
            zmax,
        ),
        key="att_dec_detail",
        width="content",
    )
    if bundle.args.feedback:
        st.markdown("**Gap inputs (closed loop)**")
        st.caption(
            "Besides its token and position, each [BOS]/symbol row also reads, per targeted "
            "property, the target and the gap to it (target − property of the molecule so "
            "far, divided by the training data's σ), through a small network added to its "
            "token embedding. That is an input of the row, not an attention key, so no column "
            "above shows it; the table shows what each row read, in real units. The row "
            "labelled [C] has just read that [C], so its molecule includes it. A free "
            "property reads zeros."
        )
        st.dataframe(
            on_pool(gap_table, selfies, maps.decoder_labels[n_special:], targets),
            hide_index=True,
            key="att_gap_table",
        )

with tab_enc:
    st.caption(
        "The encoder is bidirectional: every position sees every other, so nothing is masked. "
        "It reads the conditions and the whole molecule and summarises them into z."
    )
    enc_max = float(max(w.max() for w in maps.encoder))
    st.plotly_chart(overview_figure(maps.encoder, None, enc_max, "encoder"), key="att_enc_overview")
    c_layer, c_head = st.columns(2)
    e_layer = (
        c_layer.segmented_control(
            "Layer", list(range(1, len(maps.encoder) + 1)), default=1, key="att_enc_layer"
        )
        or 1
    )
    e_head = (
        c_head.segmented_control(
            "Head", list(range(1, maps.encoder[0].shape[0] + 1)), default=1, key="att_enc_head"
        )
        or 1
    )
    st.plotly_chart(
        detail_figure(
            maps.encoder[e_layer - 1][e_head - 1],
            None,
            maps.encoder_labels,
            len(props),
            f"Encoder layer {e_layer}, head {e_head}",
            enc_max,
        ),
        key="att_enc_detail",
        width="content",
    )

with tab_share:
    names = [SHORT.get(p, p) for p in props] + ["z"]
    shares = {name: condition_share(maps, [i]) for i, name in enumerate(names)}
    total = condition_share(maps)
    baseline = uniform_share(maps, [0])
    st.write(
        "Mean share of attention that the [BOS] and symbol rows put on each prefix token. "
        f"A head that spread its attention evenly would give **{baseline:.0%}** per token; a "
        "share near 0 in every head means the decoder ignores that condition."
    )
    st.plotly_chart(share_figure(shares), key="att_share")
    c1, c2 = st.columns(2)
    c1.metric("Strongest head on the whole prefix", f"{total.max():.0%}")
    c2.metric("Mean over heads", f"{total.mean():.0%}", help="Conditions and z together.")
    if total.max() < 0.5 * uniform_share(maps):
        st.warning(
            "No head attends to the prefix more than half as much as evenly spread attention "
            "would: the decoder may be ignoring its conditions and latent code."
        )

with tab_leak:
    st.write(
        "Replace one symbol with another and run the decoder again (same z and conditions). "
        "If the causal mask works, **every position before the replaced symbol produces "
        "exactly the same output** — it cannot see the future."
    )
    symbols = maps.decoder_labels[n_special:]
    position = st.select_slider(
        "Symbol to replace",
        options=list(range(len(symbols))),
        value=len(symbols) // 2,
        format_func=lambda i: f"{i + 1}: {symbols[i]}",
        key="att_leak_position",
    )
    report = on_pool(leak_check, bundle, selfies, position, targets)
    c1, c2, c3 = st.columns(3)
    c1.metric(
        "Earlier positions: max |Δ logit|",
        f"{report.max_before:.3g}",
        help="Must be exactly 0: they cannot see the replaced symbol.",
    )
    c2.metric("Earlier positions: max |Δ attention|", f"{report.weights_max_before:.3g}")
    c3.metric("Replaced and later positions: max |Δ logit|", f"{report.max_after:.3g}")
    if report.max_before == 0.0 and report.weights_max_before == 0.0:
        st.success(
            f"Replacing {report.original} with {report.replacement} at symbol {position + 1} "
            f"leaves all {report.changed_row} earlier positions exactly unchanged: no leak."
        )
    else:
        st.error(
            "Earlier positions changed when a later symbol changed: the causal mask leaks "
            "the future."
        )
    st.plotly_chart(leak_figure(report), key="att_leak")
