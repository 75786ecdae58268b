"""Feature search: every SAE feature's forget/retain frequency, METHOD §4 selection, labels,
feature sets, export and import."""

import streamlit as st

from core import UserError
from core.features.stats import VARIANTS
from core.labels.store import DEFAULT_TAGS
from pages.common import flag, from_url, one_of, plain, to_url, within, workspace_with_statistics
from pages.effect_views import EFFECT_COLUMNS, effects_view, with_effects
from pages.feature_views import contrast_view, feature_map_view, label_search_view
from pages.label_views import label_form, recent_labels
from pages.search_view import (
    VIEW_COLUMNS,
    filter_view,
    frequency_floor,
    label_edits,
    membership_edits,
    search_view,
)
from pages.selection_views import MODES, PERCENTILES, frequency_charts, selection_view
from pages.set_views import export_import_view, feature_sets_view

st.title("Feature search")
ws, table, provenance, store = workspace_with_statistics()

SORTS = {  # the table's order: columns, ascending; the first is the default
    "ratio, its 95% interval's low end": (["ratio_low", "ratio", "forget_freq"], False),
    "set, then forget frequency": (["in_set", "forget_freq"], False),
    "forget frequency": (["forget_freq"], False),
    "ratio (forget / retain)": (["ratio", "forget_freq"], False),
    "retain frequency, rarest first": (["retain_freq", "forget_freq"], [True, False]),
    "feature id": (["feature"], True),
    "estimated forget effect": (["forget_effect"], False),
}
EDITABLE = ("label", "tags", "note", "in_set")
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

config, selection, current = selection_view(table)
variant = config.variant
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
view = search_view(table, store.labels(), set(current), variant, floor, tokens)
ratio = frequency_charts(view, floor, config, current)
feature_map_view(ws, view, ratio, store, current)
view = with_effects(view, effects_view(ws, table))

filters = st.columns([2, 2, 1, 1, 1, 2])
text = filters[0].text_input("Search labels and notes (or a feature id)", key="search_text")
known_tags = sorted({t for tags in view["tags"] for t in tags.split(", ") if t} | set(DEFAULT_TAGS))
tags = filters[1].multiselect("Tags", known_tags, select_all=False)
min_forget = filters[2].number_input(
    "Min forget freq", 0.0, 1.0, 0.0, format="%.4f", key="min_forget"
)
only_set = filters[3].checkbox("Current set only", key="only_set")
only_labelled = filters[4].checkbox("Labelled only", key="only_labelled")
sort_columns, ascending = SORTS[filters[5].selectbox("Sort by", list(SORTS), key="sort")]
to_url(*URL_KEYS)
shown = filter_view(view, text, tags, min_forget, only_set, only_labelled)
if "forget_effect" in view:
    least = st.number_input("Min estimated forget effect", value=None, format="%.4f")
    if least is not None:
        shown = shown[shown["forget_effect"] >= least]
elif "forget_effect" in sort_columns:
    st.caption("Effects are not estimated at these settings: sorted by feature id.")
    sort_columns, ascending = ["feature"], True
shown = shown.sort_values(sort_columns, ascending=ascending).reset_index(drop=True)
st.caption(f"{len(shown):,} of {len(view):,} features shown. Click a column header to sort.")
edited = st.data_editor(
    shown,
    key=f"editor-{st.session_state.get('editor_round', 0)}",
    hide_index=True,
    height=420,
    disabled=[c for c in VIEW_COLUMNS if c not in EDITABLE] + list(EFFECT_COLUMNS),
    column_config={
        "forget_freq": st.column_config.NumberColumn(format="%.5f"),
        "retain_freq": st.column_config.NumberColumn(format="%.5f"),
        "ratio": st.column_config.NumberColumn(
            format="%.2f", help="forget / retain frequency; a retain 0 counts as half a count"
        ),
        "ratio_low": st.column_config.NumberColumn(
            "ratio ≥ (95%)",
            format="%.2f",
            help="The low end of the ratio's exact 95% interval from the firing counts "
            "(Poisson, given their sum): 1 forget firing and 0 retain ones give about 0.03. "
            "Firings cluster within rows, so the true interval is wider.",
        ),
        "forget_max": st.column_config.NumberColumn(format="%.2f"),
        "retain_max": st.column_config.NumberColumn(format="%.2f"),
        "tags": st.column_config.TextColumn(help="comma-separated, e.g. biology, unclear"),
        "in_set": st.column_config.CheckboxColumn("in set"),
        **{name: st.column_config.NumberColumn(format="%.4f") for name in EFFECT_COLUMNS},
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

feature_sets_view(store, current, config, selection, provenance)
export_import_view(ws, store)
