"""The Live intervention page's sweep over thresholds × n × c × gate, serial or on Ray, with
its scores, its points and their Pareto plots. Not a page."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.report_rows import NOT_MEASURED, format_score, provenance_line
from core.sweeps.grid import SweepConfig
from core.sweeps.plots import pareto_plot
from core.sweeps.run import sweep
from pages.common import ProgressBar, plain
from pages.run_views import RunForm


def sweep_table(points: pd.DataFrame) -> pd.DataFrame:
    """The sweep's points as a flat table: the gate's on-rates as columns of their own."""
    table = points.drop(columns=["features", "selection", "gate"], errors="ignore")
    if "gate" in points:
        for name in ("wmdp", "mmlu"):
            table[f"gate on {name}"] = [
                (rates or {}).get(name, {}).get("on") if isinstance(rates, dict) else None
                for rates in points["gate"]
            ]
    return table


def _error_bars(error: dict | None) -> dict | None:
    if error is None:
        return None
    return {"type": "data", "symmetric": False, **error}


def _pareto_chart(result: dict, against: str) -> None:
    plot = pareto_plot(result, against)
    fig = go.Figure()
    for series in plot["series"]:
        fig.add_scatter(
            x=series["x"],
            y=series["y"],
            error_x=_error_bars(series["x_error"]),
            error_y=_error_bars(series["y_error"]),
            mode="markers",
            marker_symbol=series["symbol"],
            name=series["name"],
            text=series["text"],
        )
    fig.update_layout(xaxis_title=plot["x_title"], yaxis_title=plot["y_title"], height=320)
    st.plotly_chart(fig)
    st.caption(plot["note"])


def _score_metric(column, label: str, shown: str) -> None:
    """A sweep score with its rule as help; when not measured, why, in plain sight."""
    column.metric(label, shown.split(" (")[0], help=shown)
    if shown.startswith(NOT_MEASURED):
        column.caption(shown)


def _swept_view(name: str, result: dict) -> None:
    """The sweep's held-out and SAEBench scores, its points and Pareto plots."""
    points = pd.DataFrame([p for p in result["points"] if "skipped" not in p])
    scores = st.columns(2)
    if result["questions"] == "report":
        held_out = format_score(result["held_out_score"], result["points"], held_out=True)
        _score_metric(scores[0], "Held-out score", held_out)
    optimistic = format_score(result["saebench_score"], result["points"])
    _score_metric(scores[1], "SAEBench score (optimistic)", optimistic)
    rule = result["config"]
    st.caption(plain(provenance_line(result["provenance"], rule["method"], rule["skip_bos"])))
    st.dataframe(sweep_table(points), hide_index=True)
    for against in ("side effect", "loss added"):
        _pareto_chart(result, against)
    st.download_button(
        "Download sweep (JSON)",
        json.dumps(result, indent=2),
        file_name=f"{name}-sweep.json",
        mime="application/json",
    )


def _run_sweep(evaluator: Evaluator, config: SweepConfig, ray: bool, address: str) -> dict:
    bar = ProgressBar("Sweeping…")
    try:
        if ray:
            from core.scale.sweeps import restarts_note, sweep_at

            return sweep_at(
                address.strip() or None,
                evaluator,
                config,
                lambda d, t, p: bar.count(d, t, "evaluations", f"on Ray{restarts_note(p)}"),
            )
        return sweep(evaluator, config, lambda d, t, p: bar.count(d, t, "points"))
    finally:
        bar.empty()


def sweep_view(name: str, evaluator: Evaluator, form: RunForm) -> None:
    """The grid's fields; Run sweep evaluates every point with the form's method, BOS rule
    and gate rule (memoised); the result stays in the session."""
    with st.expander("Sweep thresholds × n × c × gate"):
        grid = st.columns(4)
        thresholds = grid[0].text_input("Retain thresholds", "0.01")
        ns = grid[1].text_input("Numbers of features", "10,20")
        cs = grid[2].text_input("c values", "20,50")
        gates = grid[3].text_input(
            "Gate percentiles",
            "off",
            help='"off" is the ungated run; e.g. "off, 95" draws both families (METHOD §10). '
            "Each gate is calibrated on its point's own features; the rule is the one chosen "
            "above.",
        )
        scale = st.columns(2)
        on_ray = scale[0].toggle(
            "Run on Ray",
            help="Each point's evaluations on a Ray cluster's model-holding workers "
            "(docs/scale-out.md); memoised as a serial sweep's, so the result is the same.",
        )
        ray_address = scale[1].text_input(
            "Ray address",
            "",
            disabled=not on_ray,
            help="Empty: Ray on this machine; 'auto' or HOST:PORT joins a running cluster.",
        )
        if st.button("Run sweep"):
            try:
                config = SweepConfig.from_text(
                    thresholds,
                    ns,
                    cs,
                    gates,
                    method=form.method,
                    skip_bos=form.skip_bos,
                    gate_rule=form.gate_rule,
                )
                st.session_state.sweep = _run_sweep(evaluator, config, on_ray, ray_address)
            except UserError as exc:
                st.error(plain(exc))
        result = st.session_state.get("sweep")
        if result:
            _swept_view(name, result)
