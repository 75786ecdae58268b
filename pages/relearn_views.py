"""The Live intervention page's relearning test (METHOD §14): fine-tune copies of the model
on forget text with the edit active, beside a control and a reference, and show how much of
the unlearning survives. core.relearning does the work. Not a page."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError, Workspace
from core.interventions.edits import Intervention
from core.relearning.finetune import DEFAULT_LR, KINDS
from core.relearning.run import ARMS, RelearnSettings, cached, relearn, result_path
from core.relearning.summary import SURVIVES, SURVIVES_VS_REFERENCE, accuracy_table, loss_table
from pages.common import plain
from pages.job_views import watched_job


def _settings() -> RelearnSettings:
    """The panel's settings, the CLI's defaults to start with."""
    top = st.columns(4)
    steps = top[0].number_input("Fine-tuning steps", 0, 10_000, 20, key="relearn_steps")
    rows = top[1].number_input("Training rows per arm", 1, 100_000, 32, key="relearn_rows")
    eval_rows = top[2].number_input("Held-out rows per text", 2, 4096, 16, key="relearn_eval")
    kind = top[3].radio("Fine-tune", list(KINDS), format_func=KINDS.get, key="relearn_kind")
    more = st.columns(4)
    lr = more[0].number_input(
        "Learning rate", 1e-7, 0.5, DEFAULT_LR[kind], format="%.1e", key=f"relearn_lr_{kind}"
    )
    checkpoints = more[1].number_input("Checkpoints", 1, 100, 4, key="relearn_checkpoints")
    mcq = more[2].number_input("Questions per set (0: not scored)", 0, 10_000, 0, key="relearn_mcq")
    seed = more[3].number_input("Seed", 0, 2**31 - 1, 0, key="relearn_seed")
    return RelearnSettings(
        steps=int(steps),
        rows=int(rows),
        lr=float(lr),
        kind=kind,
        checkpoints=int(checkpoints),
        eval_rows=int(eval_rows),
        mcq=int(mcq),
        seed=int(seed),
    )


def _interval(value: float | None, interval) -> str:
    if value is None or pd.isna(value):
        return "not defined"
    if not isinstance(interval, tuple | list):
        return f"{value:.0%} (unbounded)"
    return f"{value:.0%} [{interval[0]:.0%}, {interval[1]:.0%}]"


def _shown_table(result: dict) -> pd.DataFrame:
    table = loss_table(result)
    out = pd.DataFrame({"arm": table["arm"], "step": table["step"]})
    for name in ("forget", "retain"):
        out[f"{name} loss added"] = [
            f"{m:+.4f} ± {se:.4f}" if se is not None and not pd.isna(se) else f"{m:+.4f}"
            for m, se in zip(table[f"{name}_added"], table[f"{name}_added_se"], strict=True)
        ]
        out[f"{name} n"] = table[f"{name}_n"]
    out["survives"] = [
        _interval(v, i) if ARMS[a][1] else "-"
        for a, v, i in zip(table["arm"], table["survives"], table["survives_ci"], strict=True)
    ]
    if "survives_vs_reference" in table:
        out["beyond the reference arm"] = [
            _interval(v, i) if a == "relearn" else "-"
            for a, v, i in zip(
                table["arm"],
                table["survives_vs_reference"],
                table["survives_vs_reference_ci"],
                strict=True,
            )
        ]
    return out


def _plot(result: dict) -> go.Figure:
    """Forget loss added against steps, per arm, with ± 1.96 SE bars."""
    table = loss_table(result)
    figure = go.Figure()
    for arm, rows in table.groupby("arm", sort=False):
        figure.add_scatter(
            x=rows["step"],
            y=rows["forget_added"],
            error_y={"array": 1.96 * rows["forget_added_se"].fillna(0)},
            name=ARMS[arm][2],
        )
    figure.update_layout(
        xaxis_title="fine-tuning step",
        yaxis_title="forget loss added over the clean model (nats per token)",
        height=360,
    )
    return figure


def relearn_results(result: dict) -> None:
    """A relearning result: the loss table and plot, accuracies, provenance, download."""
    st.dataframe(_shown_table(result), hide_index=True)
    st.caption(plain(f"survives: {SURVIVES}. Beyond the reference arm: {SURVIVES_VS_REFERENCE}."))
    st.plotly_chart(_plot(result))
    accuracy = accuracy_table(result)
    if accuracy is None:
        st.caption("Question accuracy: not measured (set questions per set above 0).")
    else:
        st.dataframe(accuracy, hide_index=True)
    provenance = result["provenance"]
    settings = result["settings"]
    st.caption(
        plain(
            f"{provenance['fine_tuning']}, lr {settings['lr']:g}, {settings['steps']} steps of "
            f"{settings['batch_rows']} rows, seed {settings['seed']}. Training text: "
            f"{provenance['training_text']['forget']}. Held-out: "
            f"{provenance['held_out_text']['forget']}."
        )
    )
    st.download_button(
        "Download the relearning result (JSON)",
        json.dumps(result, indent=2),
        file_name="relearn.json",
        mime="application/json",
    )


def relearn_view(ws: Workspace, iv: Intervention) -> None:
    """Relearn on a press of the button, in the background; a kept result shows at once."""
    with st.expander("Relearning: does the unlearning survive fine-tuning on forget text?"):
        st.caption(
            "Three copies of the model are fine-tuned from one seed: on the forget corpus's "
            "training documents with this edit active (the attack), on retain text with the "
            "edit (a control for generic drift), and on the same forget text without the edit "
            "(a reference). Losses are measured on the evaluation's held-out rows, which share "
            "no document with the training text. The workspace's model is never changed."
        )
        try:
            settings = _settings()
            settings.check()
            result = cached(ws, iv, settings)
        except UserError as exc:
            st.error(plain(exc))
            return
        key = f"{ws.name}/relearn-{result_path(ws, iv, settings).name}"
        start = st.button("Relearn", disabled=result is not None)
        work = (lambda report: relearn(ws, iv, settings, report)) if start else None
        watched_job(key, work, f"Relearning: {len(iv.features)} features, {settings.steps} steps")
        if result is not None:
            relearn_results(result)
