"""Labelling views shared by the search and examples pages: the label form and the recently
labelled features. Not a page."""

from __future__ import annotations

import streamlit as st

from core import UserError
from core.labels.store import DEFAULT_TAGS, LabelStore
from pages.common import plain


def label_form(store: LabelStore, known_tags: list[str], feature: int | None = None) -> None:
    """A form that labels one feature (the given one, or one typed in)."""
    suffix = "" if feature is None else f"_{feature}"
    with st.form(f"label-form{suffix}", clear_on_submit=feature is None):
        st.markdown("**Label a feature**" if feature is None else f"**Label feature {feature}**")
        current = store.label(feature) if feature is not None else None
        if feature is None:
            feature = int(
                st.number_input("Feature id", 0, store.d_sae - 1, step=1, key="label_feature")
            )
        text = st.text_input(
            "Label", value=current.label if current else "", key=f"label_text{suffix}"
        )
        options = sorted(set(known_tags) | set(DEFAULT_TAGS) | set(current.tags if current else ()))
        tags = st.multiselect(
            "Tags",
            options,
            default=list(current.tags) if current else [],
            key=f"label_tags{suffix}",
            select_all=False,  # else Enter after "biology" picks "not biology" too
            help="A tag and its negation ('biology', 'not biology') are refused together.",
        )
        note = st.text_area(
            "Note", value=current.note if current else "", height=68, key=f"label_note{suffix}"
        )
        if st.form_submit_button("Save label"):
            try:
                store.set_label(
                    feature,
                    label=text,
                    tags=tags,
                    note=note,
                    author=st.session_state.get("author", ""),
                )
                st.session_state.editor_round = st.session_state.get("editor_round", 0) + 1
                st.rerun()
            except UserError as exc:
                st.error(plain(exc))


def recent_labels(store: LabelStore) -> None:
    st.markdown("**Recently labelled**")
    recent = store.recent(8)
    st.text(
        "\n".join(f"{item.feature}: {item.label}  [{', '.join(item.tags)}]" for item in recent)
        or "Nothing labelled yet."
    )
