"""The Feature search page's selection (METHOD §4 frequency threshold or §10 DSG), the
current set it seeds, and the forget-vs-retain frequency charts. Not a page."""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.features.stats import VARIANTS
from core.selection.frequency import (
    DSGSelectionConfig,
    SelectionConfig,
    reselect,
    select_dsg,
    select_features,
)
from pages.search_view import floored, log_ratio

MODES = {
    "frequency": "frequency threshold (METHOD §4)",
    "dsg": "DSG importance percentiles (METHOD §10)",
}
PERCENTILES = (  # DSGSelectionConfig's field, its label, its default
    ("forget_percentile", "Forget importance ≥ percentile", 5.0),
    ("retain_percentile", "Retain importance ≤ percentile", 100.0),
    ("ratio_percentile", "Ratio ≥ percentile", 90.0),
)
IN_SET, OTHERS = "#d1495b", "#7aa095"


def _current_set(mode: str, config, selection: pd.DataFrame) -> list[int]:
    """The current set: the selection, kept with the hand edits when the selection changes."""
    key = (mode, *astuple(config))
    if st.session_state.get("selection_key") != key:
        selected = selection["feature"].tolist()
        previous = st.session_state.get("selected")
        st.session_state.current = (
            selected
            if previous is None
            else reselect(previous, st.session_state.get("current", []), selected)
        )
        st.session_state.selection_key, st.session_state.selected = key, selected
    return st.session_state.current


def _dsg_view(config: DSGSelectionConfig, selection: pd.DataFrame) -> None:
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


def selection_view(
    table: pd.DataFrame,
) -> tuple[SelectionConfig | DSGSelectionConfig, pd.DataFrame, list[int]]:
    """(the selection's config, the features it selects, the current set) from the mode,
    counting and bounds chosen."""
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
        selection = select_dsg(table, config)
    else:
        threshold = controls[1].number_input(
            "Retain threshold", 0.0, 1.0, 0.01, step=0.001, format="%.4f", key="threshold"
        )
        config = SelectionConfig(threshold, top_n, variant)
        selection = select_features(table, config)
    current = _current_set(mode, config, selection)
    controls[3].metric("Current set", f"{len(current)} features", f"{len(selection)} from top-n")
    if mode == "dsg":
        _dsg_view(config, selection)
    return config, selection, current


def _scatter(view: pd.DataFrame, floor: float, threshold: float | None) -> go.Figure:
    forget_shown, retain_shown = floored(view, floor)
    scatter = go.Figure(
        go.Scattergl(
            x=retain_shown,
            y=forget_shown,
            mode="markers",
            marker={  # numbers on a two-colour scale: plotly checks a colour name per point
                "size": 5,
                "color": view["in_set"].to_numpy(dtype=np.int8),
                "colorscale": [[0, OTHERS], [1, IN_SET]],
                "cmin": 0,
                "cmax": 1,
                "opacity": 0.7,
            },
            customdata=view["feature"],
            hovertemplate="feature %{customdata}<br>retain %{x:.2e}<br>forget %{y:.2e}"
            "<extra></extra>",
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
    return scatter


def _histogram(view: pd.DataFrame, ratio: np.ndarray) -> go.Figure:
    figure = go.Figure()
    figure.add_histogram(x=ratio, name="all features", marker_color=OTHERS)
    figure.add_histogram(
        x=ratio[view["in_set"].to_numpy()], name="current set", marker_color=IN_SET
    )
    figure.update_layout(
        barmode="overlay",
        xaxis_title="log10(forget / retain frequency)",
        height=420,
        margin={"t": 20, "b": 40},
        legend={"orientation": "h"},
    )
    return figure


def frequency_charts(
    view: pd.DataFrame,
    floor: float,
    config: SelectionConfig | DSGSelectionConfig,
    current: list[int],
) -> np.ndarray:
    """Forget vs retain frequency (points picked there join the current set) and the
    histogram of their log ratio; returns that ratio."""
    chart, histogram = st.columns([3, 2])
    picked = chart.plotly_chart(
        _scatter(view, floor, config.threshold if isinstance(config, SelectionConfig) else None),
        on_select="rerun",
        key="scatter",
        selection_mode=("points", "box", "lasso"),
    )
    chosen = sorted({int(point["customdata"]) for point in picked.selection.get("points", [])})
    if chosen and chart.button(f"Add the {len(chosen)} picked features to the current set"):
        st.session_state.current = list(dict.fromkeys([*current, *chosen]))
        st.rerun()
    ratio = log_ratio(view, floor)
    histogram.plotly_chart(_histogram(view, ratio))
    return ratio
