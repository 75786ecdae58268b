"""Feature search: every SAE feature's forget/retain frequency, METHOD §4 selection, labels,
feature sets, export and import."""

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.features.search import (
    filter_view,
    floored,
    frequency_floor,
    label_edits,
    log_ratio,
    membership_edits,
    search_view,
)
from core.features.selection import (
    SelectionConfig,
    reselect,
    select_features,
    selection_record,
)
from core.features.stats import VARIANTS
from core.labels.export import export_set, import_set, labels_csv, neuronpedia_payload, steered_csv
from core.labels.sets import compare_sets
from core.labels.store import DEFAULT_TAGS
from pages.common import label_form, plain, recent_labels, workspace_with_statistics
from pages.feature_views import contrast_view, feature_map_view, label_search_view

st.title("Feature search")
ws, table, provenance, store = workspace_with_statistics()

controls = st.columns([2, 1, 1, 2])
variant = controls[0].radio(
    "Counting", VARIANTS, horizontal=True, help="saebench: BOS/EOS/PAD not counted; authors: all"
)
threshold = controls[1].number_input(
    "Retain threshold", 0.0, 1.0, 0.01, step=0.001, format="%.4f", key="threshold"
)
top_n = int(controls[2].number_input("Top n", 1, len(table), 20, key="top_n"))
config = SelectionConfig(threshold, top_n, variant)
selection = select_features(table, config)
selection_key = (variant, threshold, top_n)
if st.session_state.get("selection_key") != selection_key:
    selected = selection["feature"].tolist()
    previous = st.session_state.get("selected")
    st.session_state.current = (
        selected
        if previous is None
        else reselect(previous, st.session_state.get("current", []), selected)
    )
    st.session_state.selection_key, st.session_state.selected = selection_key, selected
current: list[int] = st.session_state.current
controls[3].metric("Current set", f"{len(current)} features", f"{len(selection)} from top-n")

tokens = {role: provenance[role]["tokens"][variant] for role in ("forget", "retain")}
st.caption(
    f"**{ws.name}** · SAE `{provenance['sae']}` at `{provenance['hook']}` "
    f"({provenance['dtype']}) · "
    f"forget: {provenance['forget']['corpus']}, {tokens['forget']:,} tokens counted · retain: "
    f"{provenance['retain']['corpus']}, {tokens['retain']:,} tokens counted · "
    f"{provenance['context_length']}-token rows · variant **{variant}**: "
    f"{provenance['variants'][variant]}"
)

floor = frequency_floor(tokens["retain"])
view = search_view(table, store.labels(), set(current), variant, floor)
forget_shown, retain_shown = floored(view, floor)
chart, histogram = st.columns([3, 2])
colors = np.where(view["in_set"], "#d1495b", "#7aa095")
scatter = go.Figure(
    go.Scattergl(
        x=retain_shown,
        y=forget_shown,
        mode="markers",
        marker={"size": 5, "color": colors, "opacity": 0.7},
        customdata=view["feature"],
        hovertemplate="feature %{customdata}<br>retain %{x:.2e}<br>forget %{y:.2e}<extra></extra>",
    )
)
scatter.add_vline(x=threshold, line_dash="dash", annotation_text="retain threshold")
scatter.update_layout(
    xaxis={"type": "log", "title": f"retain frequency (zeros drawn at {floor:.0e})"},
    yaxis={"type": "log", "title": "forget frequency"},
    height=420,
    margin={"t": 20, "b": 40},
    dragmode="select",
)
picked = chart.plotly_chart(
    scatter, on_select="rerun", key="scatter", selection_mode=("points", "box", "lasso")
)
chosen = sorted({int(point["customdata"]) for point in picked.selection.get("points", [])})
if chosen and chart.button(f"Add the {len(chosen)} picked features to the current set"):
    st.session_state.current = list(dict.fromkeys([*current, *chosen]))
    st.rerun()
ratio = log_ratio(view, floor)
histogram_figure = go.Figure()
histogram_figure.add_histogram(x=ratio, name="all features", marker_color="#7aa095")
histogram_figure.add_histogram(
    x=ratio[view["in_set"].to_numpy()], name="current set", marker_color="#d1495b"
)
histogram_figure.update_layout(
    barmode="overlay",
    xaxis_title="log10(forget / retain frequency)",
    height=420,
    margin={"t": 20, "b": 40},
    legend={"orientation": "h"},
)
histogram.plotly_chart(histogram_figure)
feature_map_view(ws, view, ratio, store, current)

filters = st.columns([2, 2, 1, 1, 1])
text = filters[0].text_input("Search labels and notes (or a feature id)")
known_tags = sorted({t for tags in view["tags"] for t in tags.split(", ") if t} | set(DEFAULT_TAGS))
tags = filters[1].multiselect("Tags", known_tags)
min_forget = filters[2].number_input("Min forget freq", 0.0, 1.0, 0.0, format="%.4f")
only_set = filters[3].checkbox("Current set only")
only_labelled = filters[4].checkbox("Labelled only")
shown = filter_view(view, text, tags, min_forget, only_set, only_labelled)
shown = shown.sort_values(["in_set", "forget_freq"], ascending=False).reset_index(drop=True)
st.caption(f"{len(shown):,} of {len(view):,} features shown. Click a column header to sort.")
editor_key = f"editor-{st.session_state.get('editor_round', 0)}"
edited = st.data_editor(
    shown,
    key=editor_key,
    hide_index=True,
    height=420,
    disabled=["feature", "forget_freq", "retain_freq", "ratio", "forget_max", "retain_max"],
    column_config={
        "forget_freq": st.column_config.NumberColumn(format="%.5f"),
        "retain_freq": st.column_config.NumberColumn(format="%.5f"),
        "ratio": st.column_config.NumberColumn(
            format="%.2f", help="forget / retain frequency; a retain 0 counts as half a count"
        ),
        "forget_max": st.column_config.NumberColumn(format="%.2f"),
        "retain_max": st.column_config.NumberColumn(format="%.2f"),
        "tags": st.column_config.TextColumn(help="comma-separated, e.g. biology, unclear"),
        "in_set": st.column_config.CheckboxColumn("in set"),
    },
)
if len(shown):
    opener = st.columns([2, 3])
    to_open = opener[0].selectbox(
        "Open a feature of this table", shown["feature"].tolist(), key="open_from_table"
    )
    opener[1].page_link(
        "pages/activation_examples.py",
        label=f"Open feature {to_open} in Activation examples",
        query_params={"feature": str(to_open)},
    )
edits = label_edits(shown, edited)
added, removed = membership_edits(shown, edited)
if edits or added or removed:
    try:
        for feature, change in edits.items():
            store.set_label(feature, author=st.session_state.get("author", ""), **change)
    except UserError as exc:
        st.error(plain(exc))
    else:
        st.session_state.current = [f for f in current if f not in removed] + sorted(added)
        st.session_state.editor_round = st.session_state.get("editor_round", 0) + 1
        st.rerun()

form_column, recent_column = st.columns(2)
with form_column:
    label_form(store, known_tags)
with recent_column:
    recent_labels(store)
st.session_state.browse_list = shown["feature"].tolist()
label_search_view(store)
contrast_view(ws, store)

st.subheader("Feature sets")
save, manage = st.columns(2)
with save.form("save-set", clear_on_submit=True):
    name = st.text_input("Save the current set as")
    note = st.text_area("Note", height=68)
    if st.form_submit_button("Save set"):
        try:
            store.save_set(
                name,
                current,
                note=note,
                selection=selection_record(
                    config, selection["feature"].tolist(), provenance, current
                ),
            )
            st.success(f"Saved {plain(name)} ({len(current)} features).")
        except UserError as exc:
            st.error(plain(exc))
names = store.set_names()
with manage:
    if names:
        chosen_set = st.selectbox("Saved sets", names)
        feature_set = store.get_set(chosen_set)
        st.write(
            f"{len(feature_set.features)} features: {', '.join(map(str, feature_set.features))}"
        )
        actions = st.columns(3)
        if actions[0].button("Load as current set"):
            st.session_state.current = list(feature_set.features)
            st.rerun()
        if actions[1].button("Duplicate"):
            try:
                store.duplicate_set(chosen_set, f"{chosen_set} (copy)")
                st.rerun()
            except UserError as exc:
                st.error(plain(exc))
        if actions[2].button("Delete"):
            store.delete_set(chosen_set)
            st.rerun()
        other = st.selectbox("Compare with", [n for n in names if n != chosen_set] or ["—"])
        if other in names:
            st.json(compare_sets(feature_set, store.get_set(other)))
    else:
        st.info("No saved sets yet.")

st.subheader("Export and import")
if names:
    exported = st.selectbox("Set to export", names, key="export_set")
    c_value = st.number_input(
        "Clamp value c for lm-eval (clamps to −c × multiplier)", 0.0, 1e4, 20.0
    )
    buttons = st.columns(4)
    buttons[0].download_button(
        "JSON (full provenance)",
        json.dumps(export_set(ws, store, exported), indent=2),
        file_name=f"{exported}.json",
        mime="application/json",
    )
    steered_feature = None
    chosen_set = store.get_set(exported)
    if len(chosen_set.features) > 1:
        steered_feature = buttons[3].selectbox(
            "Feature for lm-eval (one per hook point)", chosen_set.features
        )
    try:
        buttons[1].download_button(
            "lm-eval steered CSV",
            steered_csv(ws, store, exported, c_value, steered_feature),
            file_name=f"{exported}.csv",
        )
    except UserError as exc:
        buttons[1].caption(plain(exc))
    try:
        payload = json.dumps(neuronpedia_payload(ws, store, exported), indent=2)
        buttons[2].download_button(
            "Neuronpedia list", payload, file_name=f"{exported}-neuronpedia.json"
        )
    except UserError as exc:
        buttons[2].caption(plain(exc))
st.download_button("Labels CSV", labels_csv(store), file_name=f"{ws.name}-labels.csv")
upload = st.file_uploader("Import a feature set (JSON exported by this app)", type=["json"])
force = st.checkbox(
    "Import even if it was made for other weights of this SAE (e.g. before a retraining)"
)
if upload is not None and st.button("Import"):
    try:
        imported = import_set(store, upload.getvalue(), force=force)
        st.success(f"Imported {plain(imported)}.")
    except UserError as exc:
        st.error(plain(exc))
