"""Feature search: every SAE feature's forget/retain frequency, METHOD §4 selection, labels,
feature sets, export and import."""

import json
from dataclasses import astuple

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.features.stats import VARIANTS
from core.labels.export import export_set, import_set, labels_csv, neuronpedia_payload, steered_csv
from core.labels.sets import compare_sets
from core.labels.store import DEFAULT_TAGS
from core.selection.frequency import (
    DSGSelectionConfig,
    SelectionConfig,
    reselect,
    select_dsg,
    select_features,
    selection_record,
)
from pages.common import (
    flag,
    from_url,
    label_form,
    one_of,
    plain,
    recent_labels,
    to_url,
    within,
    workspace_with_statistics,
)
from pages.feature_views import contrast_view, feature_map_view, label_search_view
from pages.search_view import (
    filter_view,
    floored,
    frequency_floor,
    label_edits,
    log_ratio,
    membership_edits,
    search_view,
)

st.title("Feature search")
ws, table, provenance, store = workspace_with_statistics()

MODES = {
    "frequency": "frequency threshold (METHOD §4)",
    "dsg": "DSG importance percentiles (METHOD §10)",
}
PERCENTILES = (  # DSGSelectionConfig's field, its label, its default
    ("forget_percentile", "Forget importance ≥ percentile", 5.0),
    ("retain_percentile", "Retain importance ≤ percentile", 100.0),
    ("ratio_percentile", "Ratio ≥ percentile", 90.0),
)
SORTS = {  # the table's order: columns, ascending
    "set, then forget frequency": (["in_set", "forget_freq"], False),
    "forget frequency": (["forget_freq"], False),
    "ratio (forget / retain)": (["ratio", "forget_freq"], False),
    "retain frequency, rarest first": (["retain_freq", "forget_freq"], [True, False]),
    "feature id": (["feature"], True),
}
URL_KEYS = {  # every control a reload or a shared link restores, and how to read it back
    "mode": one_of(MODES),
    "variant": one_of(VARIANTS),
    "threshold": within(float, 0.0, 1.0),
    "top_n": within(int, 1, len(table)),
    **{name: within(float, 0.0, 100.0) for name, _, _ in PERCENTILES},
    "sort": one_of(SORTS),
    "search_text": str,
    "min_forget": within(float, 0.0, 1.0),
    "only_set": flag,
    "only_labelled": flag,
}
for key, parse in URL_KEYS.items():
    from_url(key, parse)

mode = st.radio("Selection", list(MODES), format_func=MODES.get, horizontal=True, key="mode")
controls = st.columns([2, 3, 1, 2])
variant = controls[0].radio(
    "Counting",
    VARIANTS,
    horizontal=True,
    key="variant",
    help="saebench: BOS/EOS/PAD not counted; authors: all",
)
top_n = int(controls[2].number_input("Top n", 1, len(table), 20, key="top_n"))
if mode == "dsg":
    bounds = controls[1].columns(3)
    config = DSGSelectionConfig(
        **{
            name: column.number_input(label, 0.0, 100.0, default, step=1.0, key=name)
            for column, (name, label, default) in zip(bounds, PERCENTILES, strict=True)
        },
        n=top_n,
        variant=variant,
    )
    threshold = None
else:
    threshold = controls[1].number_input(
        "Retain threshold", 0.0, 1.0, 0.01, step=0.001, format="%.4f", key="threshold"
    )
    config = SelectionConfig(threshold, top_n, variant)
selection = select_dsg(table, config) if mode == "dsg" else select_features(table, config)
selection_key = (mode, *astuple(config))
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
if mode == "dsg":
    st.caption(
        f"DSG (METHOD §10): a feature's importance on a corpus is its mean activation over "
        f"the counted positions, squared; kept when its forget importance is at least the "
        f"{config.forget_percentile:g}th percentile of all features', its retain importance "
        f"at most the {config.retain_percentile:g}th and its forget / retain ratio at least "
        f"the {config.ratio_percentile:g}th; the top {config.n} by forget importance."
    )
    with st.expander(f"The {len(selection)} features DSG selected, with their importances"):
        st.dataframe(
            selection[["rank", "feature", "forget_importance", "retain_importance", "ratio"]],
            hide_index=True,
            column_config={
                name: st.column_config.NumberColumn(format="%.3e")
                for name in ("forget_importance", "retain_importance", "ratio")
            },
        )

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
if threshold is not None:
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

filters = st.columns([2, 2, 1, 1, 1, 2])
text = filters[0].text_input("Search labels and notes (or a feature id)", key="search_text")
known_tags = sorted({t for tags in view["tags"] for t in tags.split(", ") if t} | set(DEFAULT_TAGS))
tags = filters[1].multiselect("Tags", known_tags)
min_forget = filters[2].number_input(
    "Min forget freq", 0.0, 1.0, 0.0, format="%.4f", key="min_forget"
)
only_set = filters[3].checkbox("Current set only", key="only_set")
only_labelled = filters[4].checkbox("Labelled only", key="only_labelled")
sort_columns, ascending = SORTS[filters[5].selectbox("Sort by", list(SORTS), key="sort")]
to_url(*URL_KEYS)
shown = filter_view(view, text, tags, min_forget, only_set, only_labelled)
shown = shown.sort_values(sort_columns, ascending=ascending).reset_index(drop=True)
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
    ungated = False
    if chosen_set.gate is not None:
        ungated = buttons[1].checkbox(
            "lm-eval: its ungated equivalent",
            help="lm-eval's steered model cannot gate; the file says it is the ungated twin.",
        )
    try:
        buttons[1].download_button(
            "lm-eval steered CSV",
            steered_csv(ws, store, exported, c_value, steered_feature, ungated),
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
