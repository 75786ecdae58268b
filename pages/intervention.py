"""Live intervention: clamp features at the SAE's hook, score WMDP-bio and the side effects,
compare generations, sweep settings. core.evaluation.evaluator does the work; this page renders."""

import json
from dataclasses import replace

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import VARIANTS
from core.evaluation.mcq import LETTERS, SCORINGS
from core.evaluation.metrics import (
    QUESTION_COLUMNS,
    format_score,
    metric_rows,
    provenance_line,
    question_rows,
)
from core.evaluation.settings import FORGET, MAX_SHOTS, SHOTS_RULE, SIDE, EvalSettings
from core.features.stats import VARIANTS as VARIANTS_COUNTED
from core.interventions.calibration import calibrate, describe, kept_gate
from core.interventions.edits import METHODS, make_intervention
from core.interventions.gate import GATE_RULES
from core.interventions.generation import generate
from core.runtime.jobs import Jobs
from core.selection import sources
from core.selection.attribution import TOP_K, AttributionConfig, Attributor
from core.selection.frequency import SelectionConfig
from core.selection.screening import ScreenConfig, screen
from core.selection.sources import SOURCES
from core.sweeps.grid import SweepConfig
from core.sweeps.plots import pareto_plot
from core.sweeps.run import sweep
from pages.common import ProgressBar, from_url, plain, time_left, to_url, workspace_with_statistics

st.title("Live intervention")
ws, table, _, store = workspace_with_statistics()
d_sae = len(table)


@st.cache_resource(show_spinner=False, max_entries=8)
def _evaluator(name: str, version: str, settings: EvalSettings) -> Evaluator:
    return Evaluator(ws, settings)


@st.cache_resource(show_spinner=False)
def _jobs() -> Jobs:
    """The server's background runs: a run goes on when the page reruns or reloads."""
    return Jobs()


@st.fragment(run_every=1.0)
def _watch(key: str) -> None:
    """A running evaluation's progress and its Cancel button; the page reruns when it ends."""
    job = _jobs().get(key)
    if job is None or not job.running:
        st.rerun()
    left = time_left(job.fraction, job.stage_started) or "…"
    st.progress(job.fraction, text=f"{job.stage} · {left} (the run goes on if you leave or reload)")
    if st.button("Cancel the run"):
        job.cancel()


def _error_bars(error: dict | None) -> dict | None:
    if error is None:
        return None
    return {"type": "data", "symmetric": False, **error}


# -- which features ---------------------------------------------------------------------
st.subheader("Features")
for key, parse in (("source", str), ("set", str), ("method", str), ("c", float)):
    from_url(key, parse)
from_url("multiplier", float)
from_url("skip_bos", lambda text: text == "True")
if st.session_state.get("source") not in SOURCES:
    st.session_state.pop("source", None)
source = st.radio(
    "Take features from", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="source"
)
to_url("source")
feature_set = None
try:
    if source == "selection":
        pick = st.columns(3)
        threshold = pick[0].number_input("Retain threshold", 0.0, 1.0, 0.01, 0.001, format="%.4f")
        n = int(pick[1].number_input("n", 1, d_sae, 10))
        variant = pick[2].selectbox("Frequency variant", list(VARIANTS_COUNTED))
        chosen = sources.from_selection(table, SelectionConfig(threshold, n, variant))
    elif source == "attribution":
        pick = st.columns(2)
        count = int(pick[0].number_input("Questions to attribute", 1, 5000, 20, 10))
        n = int(pick[1].number_input("n", 1, d_sae, 10, key="attribution_n"))
        choosing = EvalSettings.for_device(ws.device, known_filter=False, split="selection")
        config = AttributionConfig(question_limit=count, n=n)
        attributor = Attributor(_evaluator(ws.name, ws.config.provenance_hash(), choosing), config)
        found = attributor.cached()
        if found is None and st.button(
            "Attribute", help="One forward and backward pass per question"
        ):
            bar = ProgressBar("Attributing (the model loads first)…")
            found = attributor.attribute(lambda done, total: bar.count(done, total, "questions"))
            bar.empty()
        if found is None:
            st.info(
                "Gradient attribution (the paper's per-question mode): each feature's activation "
                "× its decoder direction · the gradient of the right letter's logit minus the "
                "mean wrong letter's, summed over the prompt. Press Attribute to compute it."
            )
            st.stop()
        chosen = sources.from_attribution(found, n)
        top = list(chosen.features)
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
    elif source == "set":
        names = store.set_names()
        if not names:
            st.info("No saved sets yet: save one on the Feature search page.")
            st.stop()
        if st.session_state.get("set") not in names:
            st.session_state.pop("set", None)
        feature_set = store.get_set(st.selectbox("Set", names, key="set"))
        to_url("set")
        chosen = sources.from_set(feature_set)
    elif source == "search":
        chosen = sources.from_list(st.session_state.get("current", []))
    else:
        chosen = sources.from_ids(st.text_input("Feature ids", placeholder="e.g. 12, 40, 311"))
except UserError as exc:
    st.error(plain(exc))
    st.stop()
chosen, out_of_range = chosen.within(d_sae)
if out_of_range:
    st.error(f"Out of range for this SAE (0-{d_sae - 1}): {out_of_range[:10]}")
features = list(chosen.features)
if not features:
    st.warning("No features chosen yet.")
    st.stop()
st.caption(f"{len(features)} features: {', '.join(map(str, features[:40]))}")

# A set saved with a gate (METHOD §10) starts gated as it was kept; its alpha is used as
# saved while the rule and percentile stay the kept ones and its features are unchanged.
set_gate = None
if feature_set is not None and feature_set.gate and features == list(feature_set.features):
    set_gate = feature_set.gate
    if st.session_state.get("gate_from") != feature_set.name:
        st.session_state["gate_from"] = feature_set.name
        kept_percentile = float(set_gate["calibration"]["percentile"])
        st.session_state.update(gate=True, gate_rule=set_gate["rule"])
        if 50.0 <= kept_percentile <= 99.9:  # the percentile box's range
            st.session_state["gate_percentile"] = kept_percentile

# -- how hard ---------------------------------------------------------------------------
with st.form("intervention"):
    st.markdown("**Intervention** (nothing runs until you press Run)")
    top = st.columns(4)
    method = top[0].selectbox(
        "Method", list(METHODS), format_func=lambda m: f"{m}: {METHODS[m]}", key="method"
    )
    suggested = sources.typical_clamp(table, features)
    base = top[1].number_input(
        "c (or m for scale)",
        0.0,
        10_000.0,
        suggested,
        0.1,
        key="c",
        help=f"Starts at {suggested:g}: twice the median of these features' largest activation "
        "on forget text (the paper's c = 20-100 suits SAEs whose activations run to tens).",
    )
    multiplier = top[2].slider("Global multiplier", 0.0, 5.0, 1.0, 0.05, key="multiplier")
    skip_bos = top[3].toggle("Leave BOS alone (SAEBench)", value=True, key="skip_bos")
    st.caption(
        "c is in SAE activation units. Each slider is that feature's multiplier of c (a saved "
        "set's own to start with; changing c keeps them); beside it, the feature's typical "
        "size on forget text (mean where active / max)."
    )
    weights = list(chosen.multipliers)
    slider_columns = st.columns(2)
    origin = feature_set.name if feature_set is not None else chosen.source
    for i, feature in enumerate(features[:50]):
        row = table.iloc[feature]
        label = (
            f"feature {feature} × (mean {row['forget_mean_saebench']:.2f} / "
            f"max {row['forget_max_saebench']:.2f})"
        )
        weights[i] = slider_columns[i % 2].slider(
            label, 0.0, max(5.0, weights[i]), weights[i], 0.05, key=f"m-{origin}-{feature}"
        )
    if len(features) > 50:
        st.caption(f"{len(features) - 50} more features keep their multipliers (sliders for 50).")
    values = [float(base) * weight for weight in weights]
    gating = st.columns([1, 1, 2])
    gate_on = gating[0].toggle(
        "Gate (DSG)",
        value=False,
        key="gate",
        help="Edit only sequences where the features "
        "fire often (METHOD §10); alpha from retain text, no model run.",
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
    st.markdown("**Scoring**")
    opts = st.columns(6)
    scoring = opts[0].selectbox("Scoring", list(SCORINGS), help="; ".join(SCORINGS.values()))
    cpu_default = 100 if ws.device == "cpu" else 0
    limit = opts[1].number_input("Questions per set (0 = all)", 0, 100_000, cpu_default, 10)
    known_filter = opts[2].toggle("Known-question filter", value=False)
    known_variant = opts[3].selectbox("Known variant", list(VARIANTS), disabled=not known_filter)
    device_defaults = EvalSettings.for_device(ws.device)
    loss_rows = int(opts[4].number_input("Loss rows per text", 1, 4096, device_defaults.loss_rows))
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
    run = st.form_submit_button("Run", type="primary")
to_url("method", "c", "multiplier", "skip_bos")

settings = EvalSettings(
    scoring=scoring,
    known_variant=known_variant,
    question_limit=int(limit) or None,
    loss_rows=loss_rows,
    known_filter=known_filter,
    shots=shots,
)
evaluator = _evaluator(ws.name, ws.config.provenance_hash(), settings)
try:
    gate = kept_gate(set_gate, gate_percentile, gate_rule) if gate_on else None
    origin = f", kept with the set '{feature_set.name}'" if gate is not None else ""
    if gate_on and gate is None:
        gate = calibrate(ws, features, gate_percentile, gate_rule)
    iv = make_intervention(ws, features, values, method, multiplier, skip_bos, table, gate)
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

result = evaluator.cached(iv)  # a run with exactly these settings, if one was made
run_key = f"{ws.name}/{evaluator.result_path(iv).name}"
if run and result is None:
    _jobs().start(run_key, lambda report: evaluator.evaluate(iv, report))
job = _jobs().get(run_key)
if job is not None and job.running:
    _watch(run_key)
elif job is not None:
    if job.error:
        st.error(plain(job.error))
    _jobs().forget(run_key)


if result is not None:
    st.subheader("Results")
    m = result["metrics"]
    for warning in result["warnings"]:
        st.warning(plain(warning))
    head = st.columns(4)
    texts = (("general", "general text"), ("forget", "forget text"), ("retain", "retain text"))
    for column, (name, label) in zip(head, texts, strict=False):
        se = m[f"{name}_loss_added_se"]
        column.metric(
            f"Loss added on {label}",
            f"{m[f'{name}_loss_added']:+.3f}" + ("" if se is None else f" ± {se:.3f}"),
            help=f"{m[f'{name}_loss_rows']} rows; ± one standard error over rows",
        )
    ratio, interval = m["selectivity"], m.get("selectivity_ci")
    shown_ratio = "-" if ratio is None else f"{ratio:.1f}"
    if ratio is not None and interval is not None:
        shown_ratio += f" [{interval[0]:.1f}, {interval[1]:.1f}]"
    head[3].metric(
        "Selectivity (forget / retain)",
        shown_ratio,
        help="Loss added on forget text over loss added on retain text, with its 95% Fieller "
        "interval; no interval while the retain loss added is within noise of 0 (the ratio "
        "is then unbounded), and '-' when it is not above 0.",
    )
    st.table(pd.DataFrame(metric_rows(m)).set_index("measure"))
    edits = result["intervention"]
    st.caption(plain(provenance_line(result["provenance"], edits["method"], edits["skip_bos"])))

    st.markdown("**Per question**")
    questions = result["questions"]
    only = st.columns(2)
    flipped_only = only[0].toggle("Flipped only", value=False)
    known_only = only[1].toggle("Known only", value=False)
    rows = question_rows(questions, flipped_only, known_only)
    st.caption(f"{len(rows)} of {len(questions)} questions shown")
    gated_run = any("gated" in q for q in questions)
    columns = [c for c in QUESTION_COLUMNS if c != "gated" or gated_run]
    view = pd.DataFrame(rows, columns=columns)
    st.dataframe(view.drop(columns="at"), hide_index=True, width="stretch", height=300)
    if rows:
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
    record = {k: v for k, v in result.items() if k != "questions"}
    save = st.columns(2)
    if feature_set is not None and save[0].button(
        f"Save the multipliers and this result into set '{feature_set.name}'"
    ):
        store.set_multipliers(feature_set.name, dict(zip(features, weights, strict=True)))
        store.add_results(feature_set.name, record)
        store.set_gate(feature_set.name, record["intervention"].get("gate"))
        st.success(f"Saved into {plain(feature_set.name)}; it is exported with the set.")
    if feature_set is None:
        with save[0].form("save-as-set", clear_on_submit=True):
            new_name = st.text_input("Save these features, their multipliers and this result as")
            if st.form_submit_button("Save as a set"):
                try:
                    gate_kept = record["intervention"].get("gate")
                    selection = {"gate": gate_kept} if gate_kept else None
                    store.save_set(
                        new_name, features, weights, selection=selection, results=[record]
                    )
                    st.success(f"Saved {plain(new_name)}.")
                except UserError as exc:
                    st.error(plain(exc))
    save[1].download_button(
        "Download result (JSON)",
        json.dumps(result, indent=2),
        file_name=f"{ws.name}-eval.json",
        mime="application/json",
    )

# -- known questions --------------------------------------------------------------------
with st.expander("Known questions (24 orderings, clean model)"):
    st.caption(
        "A question is known when the unmodified model answers it right in all 24 orderings "
        "of its choices. Cached on disk per model, dtype and question set."
    )
    if st.button("Find known questions"):
        bar = ProgressBar("Scoring 24 orderings per question…")
        for role in (FORGET, SIDE):
            known = evaluator.known(role, lambda stage, f: bar.stage(f, stage))
            counts = {v: len(known.indices(v)) for v in VARIANTS if v != "correct-iff-question"}
            st.write(f"{role}: {len(known.questions)} scored; known: {counts}")
        bar.empty()

# -- generation -------------------------------------------------------------------------
with st.expander("Generation, clean vs intervened", expanded=False):
    prompt = st.text_input("Prompt", "The mitochondria is the")
    tokens = st.slider("New tokens", 4, 64, 24)
    if st.button("Generate"):
        sides = st.columns(2)
        bar = ProgressBar("Generating (the model loads first)…")
        for side, (name, edit) in zip(sides, (("Clean", None), ("Intervened", iv)), strict=True):

            def report(done: int, total: int, name: str = name) -> None:
                bar.count(done, total, "tokens", name)

            side.markdown(f"**{name}**")
            side.text(prompt + generate(ws, prompt, edit, tokens, report))
        bar.empty()

# -- screening --------------------------------------------------------------------------
with st.expander("Screen these features one at a time, then add them up"):
    st.caption(
        "The paper's second selection mode: each feature clamped alone at c (the base value "
        "above), kept when the MMLU-4 accuracy (known questions when there are any) drops by "
        "at most the tolerance; the kept ones are then evaluated cumulatively, in this order, "
        "with the method, BOS and scoring settings last applied with Run. Every run is memoised."
    )
    tolerance = st.number_input("Largest MMLU accuracy drop kept", -1.0, 1.0, 0.0, 0.01)
    if st.button("Screen"):
        bar = ProgressBar("Screening…")
        try:
            config = ScreenConfig(tuple(features), float(base), float(tolerance), method, skip_bos)
            chooser = _evaluator(
                ws.name, ws.config.provenance_hash(), replace(settings, split="selection")
            )
            st.session_state.screen = screen(
                chooser,
                config,
                lambda d, t, p: bar.count(d, t, "runs", "alone" if "feature" in p else "together"),
            )
        except UserError as exc:
            st.error(plain(exc))
        bar.empty()
    screened = st.session_state.get("screen")
    if screened:
        st.write(f"Kept {len(screened['kept'])} of {len(screened['singles'])}: {screened['kept']}")
        rule = screened["config"]
        st.caption(plain(provenance_line(screened["provenance"], rule["method"], rule["skip_bos"])))
        st.dataframe(pd.DataFrame(screened["singles"]), hide_index=True)
        if screened["cumulative"]:
            st.dataframe(pd.DataFrame(screened["cumulative"]).drop(columns="features"))
        st.download_button(
            "Download screening (JSON)",
            json.dumps(screened, indent=2),
            file_name=f"{ws.name}-screen.json",
            mime="application/json",
        )


# -- sweeps -----------------------------------------------------------------------------
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


with st.expander("Sweep thresholds × n × c × gate"):
    grid = st.columns(4)
    thresholds = grid[0].text_input("Retain thresholds", "0.01")
    ns = grid[1].text_input("Numbers of features", "10,20")
    cs = grid[2].text_input("c values", "20,50")
    gates = grid[3].text_input(
        "Gate percentiles",
        "off",
        help='"off" is the ungated run; e.g. "off, 95" draws both families (METHOD §10). '
        "Each gate is calibrated on its point's own features; the rule is the one chosen above.",
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
        bar = ProgressBar("Sweeping…")
        try:
            config = SweepConfig.from_text(
                thresholds, ns, cs, gates, method=method, skip_bos=skip_bos, gate_rule=gate_rule
            )
            if on_ray:
                from core.scale.sweeps import sweep_at

                st.session_state.sweep = sweep_at(
                    ray_address.strip() or None,
                    evaluator,
                    config,
                    lambda d, t, p: bar.count(d, t, "evaluations", "on Ray"),
                )
            else:
                st.session_state.sweep = sweep(
                    evaluator,
                    config,
                    lambda d, t, p: bar.count(d, t, "points"),
                )
        except UserError as exc:
            st.error(plain(exc))
        bar.empty()
    result_sweep = st.session_state.get("sweep")
    if result_sweep:
        points = pd.DataFrame([p for p in result_sweep["points"] if "skipped" not in p])
        scores = st.columns(2)
        if result_sweep["questions"] == "report":
            held_out = format_score(result_sweep["held_out_score"], held_out=True)
            scores[0].metric("Held-out score", held_out.split(" (")[0], help=held_out)
        optimistic = format_score(result_sweep["saebench_score"])
        scores[1].metric("SAEBench score (optimistic)", optimistic.split(" (")[0], help=optimistic)
        grid_rule = result_sweep["config"]
        line = provenance_line(
            result_sweep["provenance"], grid_rule["method"], grid_rule["skip_bos"]
        )
        st.caption(plain(line))
        st.dataframe(sweep_table(points), hide_index=True)
        for against in ("side effect", "loss added"):
            plot = pareto_plot(result_sweep, against)
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
        st.download_button(
            "Download sweep (JSON)",
            json.dumps(result_sweep, indent=2),
            file_name=f"{ws.name}-sweep.json",
            mime="application/json",
        )
