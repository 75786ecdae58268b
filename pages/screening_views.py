"""The Live intervention page's screening (the paper's second selection mode): each feature
clamped alone, the kept ones evaluated cumulatively. Not a page."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import streamlit as st

from core import UserError, Workspace
from core.evaluation.report_rows import provenance_line
from core.selection.screening import ScreenConfig, screen
from pages.common import ProgressBar, plain
from pages.run_views import RunForm, evaluator_for


def _screened_view(name: str, screened: dict) -> None:
    st.write(f"Kept {len(screened['kept'])} of {len(screened['singles'])}: {screened['kept']}")
    rule = screened["config"]
    st.caption(plain(provenance_line(screened["provenance"], rule["method"], rule["skip_bos"])))
    st.dataframe(pd.DataFrame(screened["singles"]), hide_index=True)
    if screened["cumulative"]:
        st.dataframe(pd.DataFrame(screened["cumulative"]).drop(columns="features"))
    st.download_button(
        "Download screening (JSON)",
        json.dumps(screened, indent=2),
        file_name=f"{name}-screen.json",
        mime="application/json",
    )


def screening_view(ws: Workspace, features: list[int], form: RunForm) -> None:
    """Screen the features on a press of Screen, with the form's last applied settings; the
    result stays in the session."""
    with st.expander("Screen these features one at a time, then add them up"):
        st.caption(
            "The paper's second selection mode: each feature clamped alone at c (the base "
            "value above), dropped only when its MMLU-4 accuracy drop (known questions when "
            "there are any) is shown above the tolerance: the lower end of the drop's 95% paired "
            "interval is above it, so one flipped question decides nothing. The kept ones are "
            "then evaluated cumulatively, in "
            "this order, with the method, BOS and scoring settings last applied with Run. "
            "Every run is memoised."
        )
        tolerance = st.number_input("Largest MMLU accuracy drop kept", -1.0, 1.0, 0.0, 0.01)
        if st.button("Screen"):
            bar = ProgressBar("Screening…")
            try:
                config = ScreenConfig(
                    tuple(features), form.base, float(tolerance), form.method, form.skip_bos
                )
                chooser = evaluator_for(ws, replace(form.settings, split="selection"))
                st.session_state.screen = screen(
                    chooser,
                    config,
                    lambda d, t, p: bar.count(
                        d, t, "runs", "alone" if "feature" in p else "together"
                    ),
                )
            except UserError as exc:
                st.error(plain(exc))
            bar.empty()
        screened = st.session_state.get("screen")
        if screened:
            _screened_view(ws.name, screened)
