"""Effects on the feature search page: what clamping each feature alone does (METHOD §13),
estimated for every feature and measured for the top candidates, joined to the table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import UserError, Workspace
from core.effects.table import EffectSettings, FeatureEffects, feature_effects, kept_effects
from core.selection.sources import typical_clamp
from pages.common import ProgressBar, plain

SETTINGS_KEY = "effect_settings"  # not a widget's: it outlives the page
EFFECT_COLUMNS = {  # the table's column: the effects table's
    "forget_effect": "forget_effect",
    "forget_effect_se": "forget_effect_se",
    "retain_effect": "retain_effect",
    "retain_effect_se": "retain_effect_se",
    "effect_ratio": "ratio",
    "effect_ratio_low": "ratio_low",
    "effect_ratio_high": "ratio_high",
    "measured_forget": "measured_forget",
    "measured_forget_se": "measured_forget_se",
}


def _agreement(effects: FeatureEffects) -> str:
    said = []
    for name, found in effects.agreement().items():
        if found["spearman"] is None:
            said.append(f"{name}: not computed ({found['n']} measured; it needs 3)")
        else:
            said.append(
                f"{name}: Spearman {found['spearman']:+.2f} (n = {found['n']}, "
                f"p = {found['p']:.2g})"
            )
    return "How well the estimate ranks the measured effect: " + "; ".join(said) + "."


def page_settings(table: pd.DataFrame) -> EffectSettings:
    """The effect settings the feature search page last used (its defaults before)."""
    scale = typical_clamp(table, table["feature"].tolist())
    return st.session_state.get(SETTINGS_KEY) or EffectSettings(16, 128, scale, 20)


def feature_effect_caption(ws: Workspace, table: pd.DataFrame, feature: int) -> str:
    """One feature's effect as the feature search page estimated it, each number with its
    SE and n; or how to estimate it."""
    settings = page_settings(table)
    try:
        effects = kept_effects(ws, settings)
    except UserError as exc:
        return plain(exc)
    if effects is None:
        return (
            f"Effect when clamped alone (c = {settings.c:g}): not estimated at the feature "
            "search page's settings (its Effects panel, or `python -m core effects`)."
        )
    row = effects.table().iloc[feature]
    rows = effects.provenance["rows"]

    def said(column: str) -> str:
        if pd.isna(row[column]):
            return "not measured"
        se = row[f"{column}_se"]
        return f"{row[column]:+.4f}" + ("" if pd.isna(se) else f" ± {se:.4f}")

    return (
        f"Effect when clamped alone to −{settings.c:g} (mean loss added per row ± SE; "
        f"{rows['forget']} forget, {rows['retain']} retain rows × {settings.context_length} "
        f"tokens): estimated forget {said('forget_effect')}, retain {said('retain_effect')}; "
        f"measured forget {said('measured_forget')}, retain {said('measured_retain')}."
    )


def effects_view(ws: Workspace, table: pd.DataFrame) -> pd.DataFrame | None:
    """Controls to estimate the effects (c on the SAE's own scale unless changed), and their
    table when they were estimated at these settings (computed on a click: it loads the
    model)."""
    with st.expander("Effects: the loss added when a feature alone is clamped (METHOD §13)"):
        cols = st.columns(4)
        rows = cols[0].number_input("Rows per corpus", 1, 1024, 16, key="effect_rows")
        context = cols[1].number_input("Tokens per row", 8, 1024, 128, key="effect_context")
        scale = typical_clamp(table, table["feature"].tolist())
        c = cols[2].number_input("c (clamp to −c)", 0.01, 10_000.0, scale, key="effect_c")
        top_k = cols[3].number_input("Measure the top K", 0, ws.sae_width(), 20, key="effect_k")
        settings = EffectSettings(int(rows), int(context), float(c), int(top_k))
        st.session_state[SETTINGS_KEY] = settings  # what the examples page shows
        try:
            effects = kept_effects(ws, settings)
            if effects is None and st.button("Estimate effects (loads the model)"):
                bar = ProgressBar("Loading the model…")
                effects = feature_effects(
                    ws, settings, lambda done, total: bar.count(done, total, "rows")
                )
                bar.empty()
        except UserError as exc:
            st.error(plain(exc))
            return None
        if effects is None:
            st.caption(
                "Not estimated at these settings. Headless: `python -m core effects "
                f"--workspace {ws.name} --rows {rows} --context {context} --c {c:g} "
                f"--top-k {top_k}`."
            )
            return None
        measured = effects.provenance["rows"]
        st.caption(
            f"Change in each row's mean loss when the feature alone is set to −{c:g} where it "
            f"fires ({effects.provenance['bos']}), mean over {measured['forget']} forget and "
            f"{measured['retain']} retain rows × {context} tokens of training documents (never "
            "the held-out rows evaluations report). The estimate is first order, for every "
            f"feature; the top {top_k} by estimated forget effect are also measured. "
            + _agreement(effects)
        )
    return effects.table()


def with_effects(view: pd.DataFrame, effects: pd.DataFrame | None) -> pd.DataFrame:
    """The search view with the effect columns, each beside its SE or interval (empty: not
    measured, or a ratio whose interval is unbounded); unchanged without effects."""
    if effects is None:
        return view
    columns = effects.set_index("feature")
    joined = view.copy()
    for name, source in EFFECT_COLUMNS.items():
        joined[name] = joined["feature"].map(columns[source])
    return joined
