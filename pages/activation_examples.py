"""Activation examples: what one feature reads, from the caches; its logit effects; and the
features that fire on text you paste."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.cache.store import SparseActivationStore
from core.features.examples import (
    FeatureActivations,
    features_on_text,
    logit_effects,
    token_strings,
)
from core.features.stats import (
    bin_centers,
    feature_frequency,
    feature_histogram,
    histogram_span,
)
from pages.common import plain, url_value, within, workspace_with_statistics
from pages.effect_views import feature_effect_caption
from pages.feature_views import cooccurrence_view, neighbours_view, suggestion_view
from pages.label_views import label_form, recent_labels
from pages.token_render import render_tokens

st.title("Activation examples")
ws, table, provenance, store = workspace_with_statistics()
d_sae = len(table)

BOX = "feature_box"
CONTEXT = 16  # tokens each side of the marked one: contexts are centred on their peak
requested = st.query_params.get("feature")
if requested is not None and requested != st.session_state.get("feature_in_url"):
    st.session_state.feature_in_url = requested  # a new link: it sets the box once
    if (wanted := url_value("feature", within(int, 0, d_sae - 1))) is not None:
        st.session_state[BOX] = wanted
st.session_state.setdefault(BOX, st.session_state.get("feature", 0))

searched = st.session_state.get("browse_list")
browse = searched or list(range(d_sae))


def _step(offset: int) -> None:
    where = browse.index(st.session_state[BOX])
    st.session_state[BOX] = browse[where + offset]


current = st.session_state[BOX]
where = browse.index(current) if current in browse else None
navigation = st.columns([1, 1, 2, 3])
navigation[0].button("◀ previous", disabled=where is None or where == 0, on_click=_step, args=(-1,))
navigation[1].button(
    "next ▶", disabled=where is None or where == len(browse) - 1, on_click=_step, args=(1,)
)
feature = int(navigation[2].number_input("Feature", 0, d_sae - 1, step=1, key=BOX))
st.session_state.feature = feature
st.query_params["feature"] = str(feature)
st.session_state.feature_in_url = str(feature)
if searched and where is not None:
    navigation[3].caption(f"Stepping through the search page's filtered list ({len(browse):,}).")
else:
    navigation[3].caption(f"Stepping through all {d_sae:,} features.")

row = table.iloc[feature]
variant = "saebench"
caches = {
    "forget": SparseActivationStore.for_workspace(ws, "forget_corpus"),
    "retain": SparseActivationStore.for_workspace(ws, "retain_corpus"),
}
rows = {name: provenance[name]["rows"] for name in caches}
frequency = {
    name: feature_frequency(cache, feature, variant, rows[name]) for name, cache in caches.items()
}
numbers = st.columns(4)
for column, name in zip(numbers, caches, strict=False):
    found = frequency[name]
    column.metric(
        f"{name.capitalize()} frequency",
        f"{found.freq:.5f}",
        help=f"{found.fires:,} of {found.tokens:,} tokens in {found.rows:,} rows; 95% interval "
        f"[{found.low:.5f}, {found.high:.5f}], clustered by row",
    )
numbers[2].metric("Max on forget", f"{row[f'forget_max_{variant}']:.2f}")
numbers[3].metric("Max on retain", f"{row[f'retain_max_{variant}']:.2f}")
st.caption(feature_effect_caption(ws, table, feature))
intervals = "; ".join(
    f"{name} [{found.low:.5f}, {found.high:.5f}] over {found.rows:,} rows"
    for name, found in frequency.items()
)
st.caption(
    f"**{ws.name}** · SAE `{provenance['sae']}` at `{provenance['hook']}` · forget "
    f"{provenance['forget']['tokens'][variant]:,} and retain "
    f"{provenance['retain']['tokens'][variant]:,} tokens counted ({variant}: "
    f"{provenance['variants'][variant]}); frequencies' 95% intervals, clustered by row: "
    f"{intervals}; examples include every position."
)

reads = {name: FeatureActivations.read(cache, feature) for name, cache in caches.items()}
if not any(read.fires for read in reads.values()):
    st.info(
        f"Feature {feature} never fires on the cached text "
        f"({sum(c.rows_final() * c.spec.context_length for c in caches.values()):,} tokens)."
    )
else:
    scale = max(float(read.values.max()) for read in reads.values() if read.fires)
    tabs = st.tabs(
        ["Forget corpus (biology)", "Retain corpus", "By activation interval", "Histogram"]
    )
    for tab, name in zip(tabs[:2], ("forget", "retain"), strict=True):
        with tab:
            read = reads[name]
            if not read.fires:
                st.info(f"Feature {feature} never fires on the cached {name} text.")
            for context in read.top(k=10, left=CONTEXT, right=CONTEXT):
                st.caption(f"row {context.row}, token {context.position}: {context.value:.2f}")
                strings = token_strings(ws, context.token_ids)
                st.html(render_tokens(strings, context.values, scale, mark=context.mark))
    with tabs[2]:
        for lo, hi, examples in reads["forget"].by_interval(left=CONTEXT, right=CONTEXT):
            st.markdown(f"**Activation in ({lo:.2f}, {hi:.2f}]** · forget corpus")
            for context in examples:
                strings = token_strings(ws, context.token_ids)
                st.html(render_tokens(strings, context.values, scale, mark=context.mark))
    with tabs[3]:
        figure = go.Figure()
        counts = {name: feature_histogram(caches[name], feature) for name in ("forget", "retain")}
        edges = counts["forget"][0]
        span = histogram_span(edges, [found for _, found in counts.values()])
        log = span is None or span[2]  # log only when the activations span two decades
        for name, color in (("forget", "#d1495b"), ("retain", "#2e7d5b")):
            figure.add_bar(
                x=bin_centers(edges),
                y=counts[name][1],
                width=None if log else np.diff(edges),
                name=name,
                marker_color=color,
                opacity=0.6,
            )
        xaxis = {"type": "log" if log else "linear", "title": "activation (log-spaced bins)"}
        if span is not None:
            xaxis["range"] = [np.log10(span[0]), np.log10(span[1])] if log else span[:2]
        figure.update_layout(
            barmode="overlay",
            xaxis=xaxis,
            yaxis={"type": "log", "title": "positions"},
            height=320,
        )
        st.plotly_chart(figure)
        st.caption("Positions SAEBench counts (BOS, EOS and PAD left out), all cached rows.")

near, together = st.columns(2)
with near:
    neighbours_view(ws, table, store, feature)
with together:
    cooccurrence_view(ws, feature)

if st.toggle("Logit effects (loads the model)"):
    promote, suppress = logit_effects(ws, feature)
    frame = pd.DataFrame(
        {
            "promotes": [t for t, _ in promote],
            "logit +": [v for _, v in promote],
            "suppresses": [t for t, _ in suppress],
            "logit −": [v for _, v in suppress],
        }
    )
    left, right = st.columns(2)
    left.dataframe(frame, hide_index=True)
    bars = go.Figure(
        go.Bar(
            x=[v for _, v in promote] + [v for _, v in suppress],
            y=[repr(t) for t, _ in promote] + [repr(t) for t, _ in suppress],
            orientation="h",
            marker_color=["#2e7d5b"] * len(promote) + ["#d1495b"] * len(suppress),
        )
    )
    bars.update_layout(height=420, yaxis={"autorange": "reversed"})
    right.plotly_chart(bars)

form_column, recent_column = st.columns(2)
with form_column:
    label_form(store, [], feature)
    suggestion_view(ws, store, feature)
with recent_column:
    recent_labels(store)

st.subheader("Try your own text")
text = st.text_area("Text (runs the model up to the SAE's layer)", max_chars=20_000)
if st.button("Show the features on each token"):
    try:
        rows, truncated = features_on_text(ws, text)
    except UserError as exc:
        st.error(plain(exc))
    else:
        if truncated:
            st.warning("Only the first 512 tokens were run.")
        st.session_state.pasted = rows
if st.session_state.get("pasted"):
    rows = st.session_state.pasted
    tops = [item["features"][0][1] if item["features"] else 0.0 for item in rows]
    scale = max(tops[1:], default=0.0) or 1.0  # BOS (position 0) is an outlier: left out
    st.html(render_tokens([item["token"] for item in rows], tops, scale))
    st.caption("Shaded by each token's strongest feature, relative to the largest after BOS.")
    st.dataframe(
        pd.DataFrame(
            {
                "position": [item["position"] for item in rows],
                "token": [repr(item["token"]) for item in rows],
                "top features": [
                    ", ".join(f"{f} ({v:.1f})" for f, v in item["features"]) for item in rows
                ],
            }
        ),
        hide_index=True,
    )
    options = sorted({f for item in rows for f, _ in item["features"]})
    opened = st.selectbox("Open a feature", options) if options else None
    if opened is not None and st.button(f"Open feature {opened}"):
        st.query_params["feature"] = str(opened)
        st.session_state.feature = opened
        st.rerun()
