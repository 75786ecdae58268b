"""Workspace: what the active workspace is made of, and whether its SAE is healthy."""

import json

import pandas as pd
import streamlit as st

from core import UserError
from core.cache.store import caches_for
from core.sae.health import (
    health_estimate,
    kept_health,
    sae_health,
    with_se,
)
from pages.common import ProgressBar, cache_build_panel, current_workspace, plain

st.title("Workspace")
ws = current_workspace()
if ws is None:
    st.stop()

st.subheader(ws.name)
st.write(plain(ws.config.description))
st.table(pd.DataFrame(ws.provenance().items(), columns=["what", "value"]).set_index("what"))
st.caption(f"Config: `{ws.config.config_path}` · provenance hash `{ws.config.provenance_hash()}`")

training_report = ws.sae_path / "training.json"
if training_report.exists():
    with st.expander("How this SAE was trained"):
        st.json(json.loads(training_report.read_text()))

st.subheader("Activation caches")
try:
    statuses = [(cache, cache.status()) for cache in caches_for(ws)]
except UserError as exc:
    st.error(plain(exc))
    statuses = []
for cache, status in statuses:
    st.text(f"{cache.spec.role}: {status.describe()}")
if statuses:
    st.caption(
        f"Each cache: {ws.config.budgets.context_length}-token rows, "
        f"{ws.config.budgets.forget_rows} forget and {ws.config.budgets.retain_rows} retain "
        f"rows by the budgets. Headless: `python -m core cache status --workspace {ws.name}`."
    )
cache_build_panel(ws)

st.subheader("SAE health")
st.caption(
    "On held-out text (never trained on): L0, fraction of variance explained (FVE), features "
    "that never fire, and cross-entropy added when the SAE's reconstruction replaces the "
    "activation. BOS is excluded from L0/FVE and not spliced. About 0.1% of tokens carry "
    "'massive activations' (norm > 4x the median) that hold most of the variance; the SAE "
    "was not trained on them, so FVE is also shown without them. ± is one standard error "
    "over the held-out rows (a jackknife for FVE)."
)
health, measured_at = kept_health(ws) or (None, None)
st.caption(f"How long: {health_estimate(ws)}.")
label = "Measure SAE health (loads the model)"
if health is not None:
    label = f"Recompute (measured {measured_at})"
if st.button(label):
    bar = ProgressBar("Loading the model…")
    try:
        sae_health(
            ws,
            progress=lambda done, total: bar.count(done, total, "held-out rows"),
            recompute=health is not None,
        )
        health, measured_at = kept_health(ws) or (None, None)
    except UserError as exc:
        st.error(plain(exc))
    bar.empty()
if health is not None:
    table = pd.DataFrame(
        [
            {
                "corpus": item.corpus,
                "source": item.source,
                "rows": item.rows,
                "tokens": item.tokens,
                "L0": with_se(item.l0, item.l0_se, item.rows, 2),
                "FVE": with_se(item.fve, item.fve_se, item.rows),
                "FVE w/o massive tokens": with_se(item.fve_typical, item.fve_typical_se, item.rows),
                "massive tokens": item.massive_tokens,
                "dead features": f"{item.dead_features} / {item.d_sae}",
                "CE clean": round(item.ce_clean, 4),
                "CE spliced": round(item.ce_spliced, 4),
                "CE added": with_se(item.ce_added, item.ce_added_se, item.rows, sign="+"),
            }
            for item in health
        ]
    )
    st.dataframe(table, hide_index=True)
    st.caption(f"Measured {measured_at}.")
