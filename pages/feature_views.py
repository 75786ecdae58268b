"""Views shared by the search and examples pages around one feature or many: neighbours,
co-occurrence, suggested labels, the feature map, contrast search and label search. Not a
page: each function reads widgets, calls core and renders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.cache.store import SparseActivationStore
from core.features.contrast import (
    ContrastConfig,
    contrast,
    corpus_texts,
    split_texts,
)
from core.features.cooccurrence import CooccurrenceConfig, cooccurrence
from core.features.feature_map import cached_feature_map, feature_map
from core.features.neighbours import Neighbours, neighbour_table
from core.labels.store import LabelStore
from core.labels.suggestions import EXPLANATIONS_FILE, import_explanations, suggest
from core.workspace.workspace import Workspace
from pages.common import ProgressBar, plain

BOX = "feature_box"
EXAMPLES_PAGE = "pages/activation_examples.py"
UNTAGGED = "no tag"
UNTAGGED_MARKER = {"size": 3, "color": "lightgrey", "opacity": 0.6}


@st.cache_resource(show_spinner="Finding every feature's neighbours (once per SAE)…")
def _neighbours(name: str, fingerprint: str, _ws: Workspace) -> Neighbours:
    return Neighbours.for_workspace(_ws)


def _open_feature(feature: int) -> None:
    st.session_state[BOX] = feature


def _feature_buttons(features: list[int], key: str) -> None:
    """One small button per feature; a click opens it on this page."""
    columns = st.columns(max(len(features), 1))
    for column, feature in zip(columns, features, strict=False):
        column.button(str(feature), key=f"{key}-{feature}", on_click=_open_feature, args=(feature,))


def neighbours_view(ws: Workspace, table: pd.DataFrame, store: LabelStore, feature: int) -> None:
    st.markdown("**Nearest features** (cosine similarity of directions; click to open)")
    found = neighbour_table(
        _neighbours(ws.name, ws.sae_fingerprint(), ws), feature, table, store.label_texts(), k=8
    )
    for direction, prefix in (("decoder", "dec"), ("encoder", "enc")):
        st.caption(f"By {direction} direction")
        part = found[[c for c in found.columns if c.startswith(prefix)]]
        st.dataframe(part.rename(columns=lambda c: c[4:]), hide_index=True, height=180)
        _feature_buttons(part[f"{prefix}_feature"].tolist(), f"open-{prefix}")


def cooccurrence_view(ws: Workspace, feature: int) -> None:
    st.markdown("**Fires together with** (same token positions; click to open)")
    order = st.radio(
        "Rank by",
        ["jaccard", "conditional"],
        horizontal=True,
        key="cooccurrence_order",
        help="Jaccard: |both| / |either|; conditional: P(other fires | this one fires)",
    )
    for name, role in (("forget", "forget_corpus"), ("retain", "retain_corpus")):
        found = cooccurrence(
            SparseActivationStore.for_workspace(ws, role),
            feature,
            CooccurrenceConfig(k=8, order=order),
        )
        st.caption(f"On the {name} corpus (BOS, EOS and PAD not counted)")
        if found.empty:
            st.caption("Never fires here.")
            continue
        st.dataframe(found, hide_index=True, height=180)
        _feature_buttons(found["feature"].tolist(), f"open-co-{name}")


def suggestion_view(ws: Workspace, store: LabelStore, feature: int) -> None:
    st.markdown("**Suggested label**")
    current = store.label(feature)
    if current.label:
        st.caption(f"Labelled already: {plain(current.label)}. A suggestion would replace it.")
    buttons = st.columns(2)
    if buttons[0].button("Suggest from the evidence (loads the model)"):
        try:
            suggest(ws, store, feature)
        except UserError as exc:
            st.error(plain(exc))
    explanations = ws.folder / EXPLANATIONS_FILE
    if explanations.exists() and buttons[1].button("Import Neuronpedia explanations"):
        try:
            st.success(f"Imported {import_explanations(ws, store):,} explanations as suggestions.")
        except UserError as exc:
            st.error(plain(exc))
    for number, item in enumerate(store.suggestions(feature)):
        st.caption(f"From {plain(item.source)} · {item.created_at}")
        with st.form(f"suggestion-{feature}-{number}"):
            text = st.text_input("Edit before accepting", item.text)
            if st.form_submit_button("Accept as the label"):
                try:
                    store.set_label(feature, label=text, author=st.session_state.get("author", ""))
                    st.rerun()
                except UserError as exc:
                    st.error(plain(exc))
        top = item.evidence.get("top_tokens")
        if top:
            st.caption("Top activating tokens: " + plain(", ".join(f"{t} ×{n}" for t, n in top)))


def feature_map_view(
    ws: Workspace, view: pd.DataFrame, ratio: np.ndarray, store: LabelStore, current: list[int]
) -> None:
    st.subheader("Feature map")
    layout = cached_feature_map(ws)
    if layout is None:
        st.caption("A UMAP of every decoder direction, computed once per SAE and kept on disk.")
        if not st.button("Compute the feature map"):
            return
        with st.spinner("Computing the map (about a minute for 16k features)…"):
            layout = feature_map(ws)
    controls = st.columns(2)
    colour = controls[0].radio("Colour by", ["forget/retain ratio", "tag"], horizontal=True)
    saved = controls[1].multiselect("Highlight saved sets", store.set_names())
    figure = go.Figure()
    hover = "feature %{customdata[0]}<br>%{customdata[1]}<extra></extra>"
    data = np.stack([view["feature"].to_numpy(), view["label"].to_numpy()], axis=1)
    if colour == "tag":
        tags = view["tags"].replace("", UNTAGGED)
        # untagged first: drawn underneath, small and grey, so the few tagged points show
        for tag in sorted(tags.unique(), key=lambda name: (name != UNTAGGED, name)):
            members = (tags == tag).to_numpy()
            marker = UNTAGGED_MARKER if tag == UNTAGGED else {"size": 7}
            figure.add_scattergl(
                x=layout[members, 0], y=layout[members, 1], mode="markers", name=tag,
                marker=marker, customdata=data[members], hovertemplate=hover,
            )  # fmt: skip
    else:
        figure.add_scattergl(
            x=layout[:, 0], y=layout[:, 1], mode="markers", name="all features",
            marker={"size": 4, "color": ratio, "colorscale": "RdBu_r", "cmid": 0,
                    "colorbar": {"title": "log10 ratio"}},
            customdata=data, hovertemplate=hover,
        )  # fmt: skip
    highlights = [("current set", current), *((n, store.get_set(n).features) for n in saved)]
    for name, members in highlights:
        members = [f for f in members if f < len(layout)]
        figure.add_scattergl(
            x=layout[members, 0], y=layout[members, 1], mode="markers", name=name,
            marker={"size": 9, "symbol": "circle-open", "line": {"width": 2}},
            customdata=data[members], hovertemplate=hover,
        )  # fmt: skip
    figure.update_layout(height=520, margin={"t": 20, "b": 20}, legend={"orientation": "h"})
    picked = st.plotly_chart(figure, on_select="rerun", key="feature_map", selection_mode="points")
    points = picked.selection.get("points", []) if picked else []
    if points:
        opened = int(points[0]["customdata"][0])
        if st.button(f"Open feature {opened}"):
            st.switch_page(EXAMPLES_PAGE, query_params={"feature": str(opened)})


def _group(name: str, key: str, ws: Workspace) -> list[str]:
    source = st.radio(
        f"Group {name}", ["pasted text", "forget_corpus", "retain_corpus"], key=f"{key}_source"
    )
    if source != "pasted text":
        n = int(st.number_input("Documents", 1, 500, 50, key=f"{key}_documents"))
        return corpus_texts(ws, source, n)
    pasted = st.text_area("Paragraphs (blank lines between texts)", key=f"{key}_text")
    upload = st.file_uploader("or a .txt file", type=["txt"], key=f"{key}_file")
    if upload is not None:
        pasted += "\n\n" + upload.getvalue().decode("utf-8", errors="replace")
    return split_texts(pasted)


def contrast_view(ws: Workspace, store: LabelStore) -> None:
    st.subheader("Contrast search")
    st.caption("Features that fire more on group A's tokens than on group B's (BOS not counted).")
    left, right = st.columns(2)
    with left:
        group_a = _group("A", "contrast_a", ws)
    with right:
        group_b = _group("B", "contrast_b", ws)
    order = st.radio("Rank by", ["difference", "ratio"], horizontal=True, key="contrast_order")
    if st.button("Run contrast search (runs the model)"):
        bar = ProgressBar("Running both groups through the model (it loads first)…")
        try:
            st.session_state.contrast = contrast(
                ws,
                group_a,
                group_b,
                ContrastConfig(order=order),
                lambda name, done, total: bar.count(done, total, "texts", f"group {name.upper()}"),
            )
        except UserError as exc:
            st.error(plain(exc))
        bar.empty()
    if "contrast" not in st.session_state:
        return
    found, record = st.session_state.contrast
    st.caption(
        f"A: {record['group_a']['texts']} texts, {record['group_a']['tokens']:,} tokens · "
        f"B: {record['group_b']['texts']} texts, {record['group_b']['tokens']:,} tokens"
    )
    st.dataframe(found.head(100), hide_index=True, height=300)
    with st.form("save-contrast", clear_on_submit=True):
        columns = st.columns([3, 1])
        name = columns[0].text_input("Save the top features as the set")
        n = int(columns[1].number_input("Top", 1, max(len(found), 1), min(20, max(len(found), 1))))
        if st.form_submit_button("Save contrast set"):
            try:
                store.save_contrast_set(name, found["feature"].tolist(), record, n)
                st.success(f"Saved {plain(name)}.")
            except UserError as exc:
                st.error(plain(exc))


def label_search_view(store: LabelStore) -> None:
    st.subheader("Search labels and suggestions")
    columns = st.columns([3, 1])
    query = columns[0].text_input(
        "Words (every one must match; word beginnings count; a tag matches as a whole)"
    )
    with_suggestions = columns[1].checkbox("Include suggestions", value=True)
    if not query.strip():
        return
    try:
        hits = store.search(query, with_suggestions)
    except UserError as exc:
        st.error(plain(exc))
        return
    st.dataframe(
        pd.DataFrame(
            {
                "feature": [hit.feature for hit in hits],
                "kind": [hit.kind for hit in hits],
                "matched in": [", ".join(hit.fields) for hit in hits],
                "source": [hit.source for hit in hits],
                "text": [hit.text for hit in hits],
            }
        ),
        hide_index=True,
        height=240,
    )
    features = list(dict.fromkeys(hit.feature for hit in hits))
    st.caption(f"{len(hits)} matches, {len(features)} features.")
    with st.form("save-search", clear_on_submit=True):
        name = st.text_input("Make a set from this search, named")
        if st.form_submit_button("Save search set"):
            try:
                saved = store.save_search_set(name, query, with_suggestions)
                st.success(f"Saved {plain(name)} ({len(saved.features)} features).")
            except UserError as exc:
                st.error(plain(exc))
