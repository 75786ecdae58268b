"""Run history: every evaluation and sweep kept in the workspace (core.sweeps.history), two
compared side by side, and a run's settings restored on the Live intervention page."""

import pandas as pd
import streamlit as st

from core import UserError
from core.labels.store import LabelStore
from core.sweeps.history import paired_rows, restore_params, run_history, side_by_side
from pages.common import current_workspace, plain

INTERVENTION_PAGE = "pages/intervention.py"
# the intervention page's widget state each URL parameter sets (its own keys, as from_url)
RESTORED = {
    "method": str,
    "c": float,
    "multiplier": float,
    "skip_bos": lambda text: text == "True",
    "source": str,
    "set": str,
    "gate": lambda text: text == "True",
    "gate_percentile": float,
    "gate_rule": str,
    "gate_calibration": str,
}


def _restore(params: dict[str, str], features: list[int]) -> None:
    """Set the intervention page's controls to a run's settings (over any it keeps in the
    session) and open it with them in its URL. A run of no saved set brings its features
    as the search page's current set."""
    for key, read in RESTORED.items():
        if key in params:
            st.session_state[key] = read(params[key])
    if params.get("source") == "search":
        st.session_state.current = features
    st.switch_page(INTERVENTION_PAGE, query_params=params)


st.title("Run history")
ws = current_workspace()
if ws is None:
    st.stop()
found = run_history(ws, LabelStore.for_workspace(ws))
for notice in found.notices:
    st.caption(plain(notice))
if not found.runs:
    st.info(
        "No evaluation or sweep is kept in this workspace yet: run one on the Live "
        "intervention page (or `python -m core eval`)."
    )
    st.stop()
st.caption(
    f"{len(found.runs)} runs of **{plain(ws.name)}**, newest first (`python -m core runs`). "
    "Accuracies after the edit with their 95% Wilson intervals (known questions when "
    "measured); loss added on general text ± its SE; the look is the protocol's count of "
    "results seen on these features."
)
st.dataframe(pd.DataFrame([run.row() for run in found.runs]), hide_index=True, height=320)

keys = [run.key for run in found.runs]
pick = st.columns(2)
first = pick[0].selectbox("Run A", keys, key="history_a")
second = pick[1].selectbox("Run B", keys, index=min(1, len(keys) - 1), key="history_b")
a, b = found.get(first), found.get(second)
st.subheader("Side by side")
st.dataframe(pd.DataFrame(side_by_side(a, b)), hide_index=True)
if a.kind == b.kind == "evaluation" and a.key != b.key:
    st.markdown("**Paired differences** (on the questions both runs scored)")
    st.dataframe(pd.DataFrame(paired_rows(a, b)), hide_index=True)

st.subheader("Restore a run")
restore = st.selectbox("Run", [k for k in keys if found.get(k).kind == "evaluation"])
if restore is not None:
    chosen = found.get(restore)
    try:
        params = restore_params(chosen)
    except UserError as exc:
        st.error(plain(exc))
        st.stop()
    origin = f"the set '{chosen.set_name}'" if chosen.set_name else "the search page's set"
    st.caption(
        plain(
            f"Opens the Live intervention page with this run's method, c, multiplier, BOS "
            f"rule and gate, its features from {origin}. Its scoring (questions, loss rows, "
            "scoring, k) is in the link too; the form keeps its own until it reads them."
        )
    )
    if st.button("Restore on the intervention page", type="primary"):
        _restore(params, list(chosen.features))
