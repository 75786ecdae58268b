"""The Live intervention page's results: the headline metrics, the per-question drill-down,
saving into a feature set, and the clean model's known questions. Not a page."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import VARIANTS
from core.evaluation.mcq import LETTERS
from core.evaluation.protocol import look_note
from core.evaluation.report_rows import (
    QUESTION_COLUMNS,
    measured_texts,
    metric_rows,
    provenance_line,
    question_rows,
)
from core.evaluation.settings import FORGET, SIDE
from core.labels.sets import FeatureSet
from core.labels.store import LabelStore
from core.selection.sources import FeatureChoice
from pages.common import ProgressBar, plain

TEXTS = {"general": "general text", "forget": "forget text", "retain": "retain text"}


def _selectivity(metrics: dict) -> str:
    ratio, interval = metrics["selectivity"], metrics.get("selectivity_ci")
    shown = "-" if ratio is None else f"{ratio:.1f}"
    if ratio is not None and interval is not None:
        shown += f" [{interval[0]:.1f}, {interval[1]:.1f}]"
    return shown


def results_view(result: dict) -> None:
    """The run's warnings, loss added, selectivity, metric table, provenance and look."""
    looks = result["looks"]
    tuning = looks["split"] == "selection"
    st.subheader("Results (selection split)" if tuning else "Results on held-out questions")
    st.caption(plain(look_note(looks) + "."))
    m = result["metrics"]
    for warning in result["warnings"]:
        st.warning(plain(warning))
    head = st.columns(4)
    for column, (name, names) in zip(head, measured_texts(m), strict=False):
        label = " = ".join(TEXTS[n] for n in names)
        se, rows = m[f"{name}_loss_added_se"], m[f"{name}_loss_rows"]
        column.metric(
            f"Loss added on {label}",
            f"{m[f'{name}_loss_added']:+.3f}" + ("" if se is None else f" ± {se:.3f}"),
            help=f"{rows} rows; ± one standard error over rows"
            if se is not None
            else f"{rows} row: no standard error (it needs two rows)",
        )
    head[3].metric(
        "Selectivity (forget / retain)",
        _selectivity(m),
        help="Loss added on forget text over loss added on retain text, with its 95% Fieller "
        "interval; no interval while the retain loss added is within noise of 0 (the ratio "
        "is then unbounded), and '-' when it is not above 0.",
    )
    st.table(pd.DataFrame(metric_rows(m)).set_index("measure"))
    edits = result["intervention"]
    optimistic = f"Optimistic: {result['optimistic']}. " if "optimistic" in result else ""
    line = provenance_line(result["provenance"], edits["method"], edits["skip_bos"])
    st.caption(plain(optimistic + line))


def questions_view(questions: list[dict]) -> None:
    """The per-question table (flipped or known only) and one question's choices."""
    st.markdown("**Per question**")
    only = st.columns(2)
    flipped_only = only[0].toggle("Flipped only", value=False)
    known_only = only[1].toggle("Known only", value=False)
    rows = question_rows(questions, flipped_only, known_only)
    st.caption(f"{len(rows)} of {len(questions)} questions shown")
    gated_run = any("gated" in q for q in questions)
    columns = [c for c in QUESTION_COLUMNS if c != "gated" or gated_run]
    view = pd.DataFrame(rows, columns=columns)
    st.dataframe(view.drop(columns="at"), hide_index=True, width="stretch", height=300)
    if not rows:
        return
    pick = st.selectbox(
        "Open a question",
        [row["at"] for row in rows],
        format_func=lambda at: questions[at]["question"][:100],
    )
    q = questions[pick]
    st.markdown(f"**{plain(q['question'])}**")
    st.dataframe(
        pd.DataFrame(
            {
                "letter": list(LETTERS),
                "choice": q["choices"],
                "before": q["before"],
                "after": q["after"],
                "right": [i == q["answer"] for i in range(4)],
            }
        ),
        hide_index=True,
    )


def save_view(
    name: str,
    store: LabelStore,
    result: dict,
    feature_set: FeatureSet | None,
    chosen: FeatureChoice,
    weights: list[float],
) -> None:
    """Save the multipliers and the result into the set they came from, or as a new set
    (with the ids of the questions that chose its features, if any); download the result."""
    features = list(chosen.features)
    record = {k: v for k, v in result.items() if k != "questions"}
    gate = record["intervention"].get("gate")
    save = st.columns(2)
    if feature_set is not None and save[0].button(
        f"Save the multipliers and this result into set '{feature_set.name}'"
    ):
        store.set_multipliers(feature_set.name, dict(zip(features, weights, strict=True)))
        store.add_results(feature_set.name, record, gate=gate)
        st.success(f"Saved into {plain(feature_set.name)}; it is exported with the set.")
    if feature_set is None:
        with save[0].form("save-as-set", clear_on_submit=True):
            new_name = st.text_input("Save these features, their multipliers and this result as")
            if st.form_submit_button("Save as a set"):
                try:
                    selection = {"gate": gate} if gate else {}
                    if chosen.chosen_on:
                        selection["question_ids"] = chosen.chosen_on
                    store.save_set(
                        new_name, features, weights, selection=selection, results=[record]
                    )
                    st.success(f"Saved {plain(new_name)}.")
                except UserError as exc:
                    st.error(plain(exc))
    save[1].download_button(
        "Download result (JSON)",
        json.dumps(result, indent=2),
        file_name=f"{name}-eval.json",
        mime="application/json",
    )


def known_questions_view(evaluator: Evaluator) -> None:
    """Find the questions the clean model answers right in all 24 orderings."""
    with st.expander("Known questions (24 orderings, clean model)"):
        st.caption(
            "A question is known when the unmodified model answers it right in all 24 "
            "orderings of its choices. Cached on disk per model, dtype and question set."
        )
        if st.button("Find known questions"):
            bar = ProgressBar("Scoring 24 orderings per question…")
            for role in (FORGET, SIDE):
                known = evaluator.known(role, lambda stage, f: bar.stage(f, stage))
                counts = {v: len(known.indices(v)) for v in VARIANTS if v != "correct-iff-question"}
                st.write(f"{role}: {len(known.questions)} scored; known: {counts}")
            bar.empty()
