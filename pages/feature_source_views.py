"""The Live intervention page's choice of features: a top-n selection, gradient attribution,
a saved set, the search page's current set or ids typed in. Not a page."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from core import UserError, Workspace
from core.evaluation.settings import EvalSettings
from core.features.stats import VARIANTS
from core.interventions.calibration import CALIBRATIONS, RETAIN_ROWS
from core.labels.sets import FeatureSet
from core.labels.store import LabelStore
from core.selection import sources
from core.selection.attribution import TOP_K, Attribution, AttributionConfig, Attributor
from core.selection.frequency import SelectionConfig
from core.selection.sources import SOURCES, FeatureChoice
from pages.common import ProgressBar, from_url, one_of, plain, to_url
from pages.run_views import evaluator_for


def _attribution_table(
    ws: Workspace, table: pd.DataFrame, found: Attribution, top: list[int]
) -> None:
    """The attributed features' means, intervals and frequencies, and where they come from."""
    record, where = found.provenance, ws.provenance()
    st.caption(
        f"{record['questions_used']} forget questions (n = {found.questions}; intervals: "
        f"mean ± 1.96 SE over questions); {record['metric']}; {where['model']} "
        f"({record['dtype']}, {record['device']}), SAE {where['sae']} at {record['hook']}"
    )
    low, high = found.interval(top)
    st.dataframe(
        pd.DataFrame(
            {
                "feature": top,
                "mean attribution": found.mean[top],
                "95% CI low": low,
                "95% CI high": high,
                f"questions with it in their top {TOP_K}": found.hits[top],
                "forget freq": table["forget_freq_saebench"].to_numpy()[top],
                "retain freq": table["retain_freq_saebench"].to_numpy()[top],
            }
        ),
        hide_index=True,
    )


def _from_attribution(ws: Workspace, table: pd.DataFrame) -> FeatureChoice:
    """The top features by gradient attribution, computed on a press of Attribute."""
    pick = st.columns(3)
    count = int(pick[0].number_input("Questions to attribute", 1, 5000, 20, 10))
    n = int(pick[1].number_input("n", 1, len(table), 10, key="attribution_n"))
    choosing = EvalSettings.for_device(ws.device, split="selection")  # the CLI's defaults
    known = pick[2].toggle(
        "Known-question filter",
        value=choosing.known_filter,
        key="attribution_known",
        help="Attribute on the questions the clean model knows (24 orderings each; it runs "
        "once on the first press of Attribute, then is kept)",
    )
    choosing = replace(choosing, known_filter=known)
    attributor = Attributor(
        evaluator_for(ws, choosing), AttributionConfig(question_limit=count, n=n)
    )
    found = attributor.cached()
    if found is None and st.button("Attribute", help="One forward and backward pass per question"):
        bar = ProgressBar("Attributing (the model loads first)…")
        found = attributor.attribute(
            lambda done, total: bar.count(done, total, "questions"),
            lambda stage, fraction: bar.stage(fraction, stage),
        )
        bar.empty()
    if found is None:
        st.info(
            "Gradient attribution (the paper's per-question mode): each feature's activation "
            "× its decoder direction · the gradient of the right letter's logit minus the "
            "mean wrong letter's, summed over the prompt. Press Attribute to compute it."
        )
        st.stop()
    chosen = sources.from_attribution(found, n)
    _attribution_table(ws, table, found, list(chosen.features))
    return chosen


def _from_set(store: LabelStore) -> FeatureSet:
    names = store.set_names()
    if not names:
        st.info("No saved sets yet: save one on the Feature search page.")
        st.stop()
    if st.session_state.get("set") not in names:
        st.session_state.pop("set", None)
    feature_set = store.get_set(st.selectbox("Set", names, key="set"))
    to_url("set")
    return feature_set


def _choose(
    ws: Workspace, table: pd.DataFrame, store: LabelStore, source: str
) -> tuple[FeatureChoice, FeatureSet | None]:
    if source == "selection":
        pick = st.columns(3)
        threshold = pick[0].number_input("Retain threshold", 0.0, 1.0, 0.01, 0.001, format="%.4f")
        n = int(pick[1].number_input("n", 1, len(table), 10))
        variant = pick[2].selectbox("Frequency variant", list(VARIANTS))
        return sources.from_selection(table, SelectionConfig(threshold, n, variant)), None
    if source == "attribution":
        return _from_attribution(ws, table), None
    if source == "set":
        feature_set = _from_set(store)
        return sources.from_set(feature_set), feature_set
    if source == "search":
        return sources.from_list(st.session_state.get("current", [])), None
    return sources.from_ids(st.text_input("Feature ids", placeholder="e.g. 12, 40, 311")), None


def feature_source_view(
    ws: Workspace, table: pd.DataFrame, store: LabelStore
) -> tuple[FeatureChoice, FeatureSet | None]:
    """(the features chosen, the saved set they come from or None); stops the page with the
    reason when there are none."""
    st.subheader("Features")
    from_url("source", one_of(SOURCES))
    from_url("set", one_of(store.set_names()))
    source = st.radio(
        "Take features from", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="source"
    )
    to_url("source")
    try:
        chosen, feature_set = _choose(ws, table, store, source)
    except UserError as exc:
        st.error(plain(exc))
        st.stop()
    chosen, out_of_range = chosen.within(len(table))
    if out_of_range:
        st.error(f"Out of range for this SAE (0-{len(table) - 1}): {out_of_range[:10]}")
    if not chosen.features:
        st.warning("No features chosen yet.")
        st.stop()
    shown = ", ".join(map(str, chosen.features[:40]))
    st.caption(f"{len(chosen.features)} features: {shown}")
    return chosen, feature_set


def gate_kept_with(feature_set: FeatureSet | None, features: list[int]) -> dict | None:
    """The gate a set was saved with (METHOD §10), while its features are unchanged; the
    first time the set is chosen, the form's gate starts on with the kept rule, percentile
    and calibration (its alpha is used as saved)."""
    if feature_set is None or not feature_set.gate or features != list(feature_set.features):
        return None
    kept = feature_set.gate
    if st.session_state.get("gate_from") != feature_set.name:
        st.session_state["gate_from"] = feature_set.name
        kept_percentile = float(kept["calibration"]["percentile"])
        st.session_state.update(gate=True, gate_rule=kept["rule"])
        if (on := kept["calibration"].get("on", RETAIN_ROWS)) in CALIBRATIONS:
            st.session_state["gate_calibration"] = on
        if 50.0 <= kept_percentile <= 99.9:  # the percentile box's range
            st.session_state["gate_percentile"] = kept_percentile
    return kept
