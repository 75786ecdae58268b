"""The Live intervention page's run: the evaluator per settings, the intervention form, the
intervention it builds and the background run with its progress. Not a page."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st

from core import UserError, Workspace
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import VARIANTS
from core.evaluation.mcq import SCORINGS
from core.evaluation.settings import MAX_SHOTS, SHOTS_RULE, EvalSettings
from core.interventions.calibration import CALIBRATIONS, describe
from core.interventions.edits import METHODS, Intervention, make_intervention
from core.interventions.gate import GATE_RULES
from core.labels.store import Label, LabelStore
from core.loading.data import files_stamp
from core.selection import sources
from core.selection.sources import FeatureChoice
from core.sweeps.history import c_text
from pages.common import flag, from_url, one_of, plain, to_url, within
from pages.job_views import watched_job

SLIDERS = 50  # features with a slider of their own; the others keep their multipliers
MAX_C = 10_000.0


@dataclass(frozen=True)
class RunForm:
    """What the intervention form holds once submitted (or as it was last submitted)."""

    method: str
    base: float  # c, or m for scale
    multiplier: float
    skip_bos: bool
    choice: FeatureChoice  # the features with the sliders' multipliers of c
    gate_on: bool
    gate_percentile: float
    gate_rule: str
    gate_calibration: str  # a key of CALIBRATIONS
    settings: EvalSettings  # on the selection split: what Run tunes on
    allow_overlap: bool
    run: bool
    report: bool  # score once on the held-out report split (counted)

    @property
    def weights(self) -> list[float]:
        return list(self.choice.multipliers)

    @property
    def values(self) -> list[float]:
        return self.choice.values(self.base)


@st.cache_resource(show_spinner=False, max_entries=8)
def _evaluator(
    name: str, version: str, files: str, settings: EvalSettings, _ws: Workspace
) -> Evaluator:
    return Evaluator(_ws, settings)


def evaluator_for(ws: Workspace, settings: EvalSettings) -> Evaluator:
    """One Evaluator per workspace version, state of its data files and settings per
    server: an edited question file is read again without a restart."""
    return _evaluator(ws.name, ws.config.provenance_hash(), files_stamp(ws.config), settings, ws)


def _named(feature: int, label: Label | None) -> str:
    """A feature's id with its label and tags, as a slider names it."""
    if label is None or not (label.label or label.tags):
        return f"feature {feature}"
    tags = f" [{', '.join(label.tags)}]" if label.tags else ""
    return f"feature {feature} '{label.label or 'unlabelled'}'{tags}"


def _sliders(ws: Workspace, table: pd.DataFrame, chosen: FeatureChoice, origin: str) -> list[float]:
    """Each feature's multiplier of c, a slider each (named by the feature's label and
    tags) for the first SLIDERS features."""
    weights = list(chosen.multipliers)
    columns = st.columns(2)
    labels = LabelStore.for_workspace(ws).labels(list(chosen.features[:SLIDERS]))
    for i, feature in enumerate(chosen.features[:SLIDERS]):
        row = table.iloc[feature]
        label = plain(
            f"{_named(feature, labels.get(feature))} × (mean "
            f"{row['forget_mean_saebench']:.2f} / max {row['forget_max_saebench']:.2f})"
        )
        weights[i] = columns[i % 2].slider(
            label, 0.0, max(5.0, weights[i]), weights[i], 0.05, key=f"m-{origin}-{feature}"
        )
    if len(chosen.features) > SLIDERS:
        st.caption(
            f"{len(chosen.features) - SLIDERS} more features keep their multipliers "
            f"(sliders for {SLIDERS})."
        )
    return weights


def _scoring(ws: Workspace) -> EvalSettings:
    """The form's scoring settings."""
    st.markdown("**Scoring**")
    opts = st.columns(6)
    scoring = opts[0].selectbox("Scoring", list(SCORINGS), help="; ".join(SCORINGS.values()))
    defaults = EvalSettings.for_device(ws.device, split="selection")  # the CLI's defaults
    limit = opts[1].number_input(
        "Questions per set (0 = all)", 0, 100_000, defaults.question_limit or 0, 10
    )
    known_filter = opts[2].toggle("Known-question filter", value=defaults.known_filter)
    known_variant = opts[3].selectbox("Known variant", list(VARIANTS), disabled=not known_filter)
    loss_rows = int(opts[4].number_input("Loss rows per text", 1, 4096, defaults.loss_rows))
    shots = int(
        opts[5].number_input(
            "k-shot check",
            0,
            MAX_SHOTS,
            0,
            help="Also score every question after k solved examples of its subject, beside "
            "k = 0 (METHOD §12: 5-shot prompting undoes shallow unlearning). " + SHOTS_RULE,
        )
    )
    return replace(
        defaults,
        scoring=scoring,
        known_variant=known_variant,
        question_limit=int(limit) or None,
        loss_rows=loss_rows,
        known_filter=known_filter,
        shots=shots,
    )


def intervention_form(
    ws: Workspace, table: pd.DataFrame, chosen: FeatureChoice, origin: str
) -> RunForm:
    """The form of method, c, multipliers, gate and scoring; nothing runs until Run."""
    features = list(chosen.features)
    from_url("method", one_of(METHODS))  # each as its widget below can take it
    from_url("c", within(float, 0.0, MAX_C))
    from_url("multiplier", within(float, 0.0, 5.0))
    from_url("skip_bos", flag)
    with st.form("intervention", enter_to_submit=False):  # Enter in a box runs nothing
        st.markdown("**Intervention** (nothing runs until you press Run)")
        top = st.columns(4)
        method = top[0].selectbox(
            "Method", list(METHODS), format_func=lambda m: f"{m}: {METHODS[m]}", key="method"
        )
        suggested = sources.typical_clamp(table, features)
        base = top[1].number_input(
            "c (or m for scale)",
            0.0,
            MAX_C,
            suggested,
            0.1,
            key="c",
            help=f"Starts at {suggested:g}: twice the median of these features' largest "
            "activation on forget text (the paper's c = 20-100 suits SAEs whose activations "
            "run to tens).",
        )
        multiplier = top[2].slider("Global multiplier", 0.0, 5.0, 1.0, 0.05, key="multiplier")
        skip_bos = top[3].toggle("Leave BOS alone (SAEBench)", value=True, key="skip_bos")
        st.caption(
            "c is in SAE activation units. Each slider is that feature's multiplier of c (a "
            "saved set's own to start with; changing c keeps them); beside it, the feature's "
            "typical size on forget text (mean where active / max)."
        )
        weights = _sliders(ws, table, chosen, origin)
        gating = st.columns([1, 1, 2, 2])
        gate_on = gating[0].toggle(
            "Gate (DSG)",
            value=False,
            key="gate",
            help="Edit only sequences where the features fire often (METHOD §10).",
        )
        gate_percentile = gating[1].number_input(
            "Gate percentile", 50.0, 99.9, 95.0, 0.5, disabled=not gate_on, key="gate_percentile"
        )
        gate_rule = gating[2].selectbox(
            "Rule inside a gated sequence",
            list(GATE_RULES),
            format_func=lambda r: f"{r}: {GATE_RULES[r]}",
            disabled=not gate_on,
            key="gate_rule",
        )
        gate_calibration = gating[3].selectbox(
            "Alpha calibrated on",
            list(CALIBRATIONS),
            disabled=not gate_on,
            key="gate_calibration",
            help="; ".join(f"{k}: {v}" for k, v in CALIBRATIONS.items()),
        )
        settings = _scoring(ws)
        allow_overlap = st.checkbox(
            "Allow overlap",
            help="Score a set on questions that chose its features (its selection record's); "
            "the result is labelled optimistic. Otherwise such a run is refused.",
        )
        buttons = st.columns([1, 3])
        run = buttons[0].form_submit_button(
            "Run",
            type="primary",
            help="Score on the selection split: tune here (what you choose never sees the "
            "report split).",
        )
        report = buttons[1].form_submit_button(
            "Report on held-out questions",
            help="Score this setting once on the report split; the result says after how "
            "many selection-split runs of these features it came.",
        )
    to_url("method", "c", "multiplier", "skip_bos")
    return RunForm(
        method,
        float(base),
        multiplier,
        skip_bos,
        replace(chosen, multipliers=tuple(weights)),
        gate_on,
        gate_percentile,
        gate_rule,
        gate_calibration,
        settings,
        allow_overlap,
        run,
        report,
    )


def intervention_of(
    ws: Workspace,
    table: pd.DataFrame,
    features: list[int],
    form: RunForm,
    set_gate: dict | None = None,
    set_name: str | None = None,
):
    """The form's intervention, its gate kept with the set or calibrated (said in a caption);
    stops the page with the message when it cannot be made."""
    try:
        gate, kept = None, False
        if form.gate_on:
            gate, kept = evaluator_for(ws, form.settings).gate(
                features, form.gate_percentile, form.gate_rule, form.gate_calibration, set_gate
            )
        origin = f", kept with the set '{set_name}'" if kept else ""
        iv = make_intervention(
            ws, features, form.values, form.method, form.multiplier, form.skip_bos, table, gate
        )
        if gate is not None:
            st.caption(
                plain(
                    f"Gate: {describe(gate)}{origin}; MCQ and loss measure rho over the whole "
                    "sequence, generation over the prompt."
                )
            )
    except UserError as exc:
        st.error(plain(exc))
        st.stop()
    return iv


def background_run(
    ws: Workspace,
    evaluator: Evaluator,
    iv,
    run: bool,
    chosen_on: dict[str, list[str]],
    allow_overlap: bool,
) -> dict | None:
    """The memoised result of this intervention, if any (labelled optimistic when scored on
    questions that chose its features); else a press of Run starts it in the background and
    its progress shows until it ends (or its error, once). A run on questions that chose the
    features is refused (said in an error) unless `allow_overlap`."""
    try:
        result = evaluator.shown(iv, chosen_on, allow_overlap)  # counted as a look
    except UserError as exc:
        st.error(plain(exc))
        return None
    key = f"{ws.name}/{evaluator.result_path(iv).name}"
    start = run and result is None
    watched_job(
        key,
        (lambda report: evaluator.evaluate(iv, report, chosen_on, True)) if start else None,
        run_title(iv, evaluator.settings),
    )
    return result


def run_title(iv: Intervention, settings: EvalSettings) -> str:
    """A run as the workspace's list of runs names it: its features, edit and questions."""
    shown = ", ".join(map(str, iv.features[:5])) + (", …" if len(iv.features) > 5 else "")
    c = c_text(iv.values, iv.multiplier)
    gate = "" if iv.gate is None else f", gated (alpha {iv.gate.alpha:.3g})"
    questions = settings.question_limit or "all"
    return (
        f"{settings.split.capitalize()} run: {len(iv.features)} features ({shown}), "
        f"{iv.method} {c}{gate}; {questions} questions a set, {settings.loss_rows} loss rows"
    )
