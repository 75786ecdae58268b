"""The Feature search page's feature sets: save the current set, load, duplicate, delete and
compare saved ones, export them (JSON, lm-eval, Neuronpedia) and import one. Not a page."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core import UserError, Workspace
from core.labels.export import export_set, import_set, labels_csv, neuronpedia_payload, steered_csv
from core.labels.sets import compare_sets
from core.labels.store import LabelStore
from core.selection.frequency import selection_record
from pages.common import plain


def _save_set(store: LabelStore, current: list[int], config, selected: list[int], provenance):
    with st.form("save-set", clear_on_submit=True):
        name = st.text_input("Save the current set as")
        note = st.text_area("Note", height=68)
        if st.form_submit_button("Save set"):
            try:
                record = selection_record(config, selected, provenance, current)
                store.save_set(name, current, note=note, selection=record)
                st.success(f"Saved {plain(name)} ({len(current)} features).")
            except UserError as exc:
                st.error(plain(exc))


def _manage_sets(store: LabelStore, names: list[str]) -> None:
    if not names:
        st.info("No saved sets yet.")
        return
    chosen_set = st.selectbox("Saved sets", names)
    feature_set = store.get_set(chosen_set)
    st.write(f"{len(feature_set.features)} features: {', '.join(map(str, feature_set.features))}")
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


def feature_sets_view(
    store: LabelStore,
    current: list[int],
    config,
    selection: pd.DataFrame,
    provenance: dict,
) -> None:
    """Save the current set (with the selection that made it), manage the saved ones."""
    st.subheader("Feature sets")
    save, manage = st.columns(2)
    with save:
        _save_set(store, current, config, selection["feature"].tolist(), provenance)
    with manage:
        _manage_sets(store, store.set_names())


def _export_buttons(ws: Workspace, store: LabelStore, names: list[str]) -> None:
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


def export_import_view(ws: Workspace, store: LabelStore) -> None:
    """Download a saved set or the labels; import a set exported by this app."""
    st.subheader("Export and import")
    names = store.set_names()
    if names:
        _export_buttons(ws, store, names)
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
