"""Attention: where each decoder and encoder head looks for one molecule, how much the decoder
attends to its conditions, and a live check that the causal mask hides the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.chem import (
    DESCRIPTOR_LABELS,
    DESCRIPTOR_SHORT,
    MAX_SMILES_CHARS,
    describe_smiles,
    mol_to_png,
)
from core.closed_loop import prefix_inputs
from core.derivation import code_labels
from core.feedback import prefix_properties
from core.generate import GenerationError
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
from ui.charts import detail_figure, leak_figure, overview_figure, share_figure
from ui.common import ensure_app_frame, require_bundle, require_dataset

ensure_app_frame()

N_CHOICES = 36  # dataset molecules offered in the picker
SHORT = DESCRIPTOR_SHORT

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


def maps_view(
    kind: str,
    layers: list[np.ndarray],
    causal: np.ndarray | None,
    labels: list[str],
    n_special: int,
) -> None:
    """Every head of the decoder or encoder (``kind``) as a thumbnail, then one picked layer
    and head in full."""
    key = f"att_{kind[:3].lower()}"
    zmax = float(max(w.max() for w in layers))
    st.plotly_chart(overview_figure(layers, causal, zmax, kind.lower()), key=f"{key}_overview")
    c_layer, c_head = st.columns(2)
    layer = c_layer.segmented_control(
        "Layer", list(range(1, len(layers) + 1)), default=1, key=f"{key}_layer"
    )
    head = c_head.segmented_control(
        "Head", list(range(1, layers[0].shape[0] + 1)), default=1, key=f"{key}_head"
    )
    layer, head = layer or 1, head or 1
    title = f"{kind} layer {layer}, head {head}"
    weights = layers[layer - 1][head - 1]
    st.plotly_chart(
        detail_figure(weights, causal, labels, n_special, title, zmax),
        key=f"{key}_detail",
        width="content",
    )


def gap_table(selfies: str, symbols: list[str], targets: dict[str, float | None]) -> pd.DataFrame:
    """What each [BOS]/symbol position of a closed-loop decoder reads besides its token: per
    property the molecule so far and, for a targeted one, the gap target − that (real units);
    for a model that reads the derivation, where it stands, in words.
    Call it through ``on_pool``: ``prefix_inputs`` builds an MLX array."""
    reads = np.array(prefix_inputs(bundle, selfies))[0]  # (1 + len(symbols), P [+ 4])
    rows = []
    for t, label in enumerate(["[BOS]", *symbols]):
        smiles = prefix_properties("".join(symbols[:t]), props)[0] or "(empty)"
        row = {"position": label if t == 0 else f"{t}: {label}", "molecule so far": smiles}
        for i, p in enumerate(props):
            so_far = bundle.scales[p].denormalise(float(reads[t, i]))
            row[f"{SHORT.get(p, p)} so far"] = round(so_far, 2)
            if targets[p] is not None:
                row[f"gap {SHORT.get(p, p)}"] = round(targets[p] - so_far, 2)
        if bundle.args.derivation:
            row |= code_labels(reads[t, len(props) :])
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
        "targeted property, the gap between the target and the molecule written so far"
        + (", and where the SELFIES derivation stands." if bundle.args.derivation else ".")
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
    maps_view("Decoder", maps.decoder, maps.causal, maps.decoder_labels, n_special)
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
            + (
                " This model also reads where the SELFIES derivation stands after the row's "
                "symbol (the last four columns): the bonds the atom being extended has left, "
                "index symbols still due after a branch or ring symbol, open branches and "
                "the symbols left in the innermost one. An [=O] with 2 bonds left on the main "
                "chain ends the molecule; inside a branch it is a carbonyl."
                if bundle.args.derivation
                else ""
            )
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
    maps_view("Encoder", maps.encoder, None, maps.encoder_labels, len(props))

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
    st.plotly_chart(leak_figure(report, n_special), key="att_leak")
