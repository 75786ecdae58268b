"""Live intervention: clamp features at the SAE's hook, score WMDP-bio and the side effects,
compare generations, sweep settings. core.evaluation does the work; this page renders."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import UserError
from core.attribution import TOP_K, Attributor
from core.evaluation import FORGET, SIDE, EvalSettings, Evaluator, make_intervention
from core.generation import generate
from core.interventions import METHODS, bos_rule
from core.known import VARIANTS
from core.mcq import LETTERS, SCORINGS
from core.stats import select_features
from core.sweeps import screen, sweep
from pages.common import workspace_with_statistics

st.title("Live intervention")
ws, table, _, store = workspace_with_statistics()
d_sae = len(table)


@st.cache_resource(show_spinner=False, max_entries=8)
def _evaluator(name: str, version: str, settings: EvalSettings) -> Evaluator:
    return Evaluator(ws, settings)


def _provenance(prov: dict, method: str, skip_bos: bool) -> None:
    """Where an evaluation's numbers come from, under its table."""
    st.caption(
        f"{prov['model']} · SAE {prov['sae']} · hook {prov['hook']} · {prov['dtype']} on "
        f"{prov['device']} · {METHODS[method]}, {bos_rule(skip_bos)} · scoring: "
        f"{prov['scoring_rule']} · known: {prov['known_rule']} · questions "
        f"{prov['questions']} · {prov['loss_text']['general']}"
    )


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", ",").split(",") if part.strip()]
    except ValueError:
        st.error(f"Feature ids must be integers separated by commas: {text!r}")
        return []


# -- which features ---------------------------------------------------------------------
st.subheader("Features")
source = st.radio(
    "Take features from",
    [
        "Top-n selection",
        "Gradient attribution",
        "A saved set",
        "The search page's selection",
        "Ids typed in",
    ],
    horizontal=True,
)
multipliers: dict[int, float] = {}
feature_set = None
if source == "Top-n selection":
    pick = st.columns(3)
    threshold = pick[0].number_input("Retain threshold", 0.0, 1.0, 0.01, 0.001, format="%.4f")
    n = int(pick[1].number_input("n", 1, d_sae, 10))
    variant = pick[2].selectbox("Frequency variant", ["saebench", "authors"])
    features = select_features(table, threshold, n, variant)["feature"].tolist()
elif source == "Gradient attribution":
    pick = st.columns(2)
    count = int(pick[0].number_input("Questions to attribute", 1, 5000, 20, 10))
    n = int(pick[1].number_input("n", 1, d_sae, 10, key="attribution_n"))
    plain = EvalSettings.for_device(ws.device, known_filter=False)
    attributor = Attributor(_evaluator(ws.name, ws.config.provenance_hash(), plain), limit=count)
    found = attributor.cached()
    if found is None and st.button("Attribute", help="One forward and backward pass per question"):
        bar = st.progress(0.0, text="Attributing (the model loads first)…")
        try:
            found = attributor.attribute(
                lambda done, total: bar.progress(done / total, text=f"{done} of {total} questions")
            )
        except UserError as exc:
            st.error(str(exc))
            st.stop()
        bar.empty()
    if found is None:
        st.info(
            "Gradient attribution (the paper's per-question mode): each feature's activation "
            "× its decoder direction · the gradient of the right letter's logit minus the "
            "mean wrong letter's, summed over the prompt. Press Attribute to compute it."
        )
        st.stop()
    features = found.top(n)
    record, where = found.provenance, ws.provenance()
    st.caption(
        f"{record['questions_used']} forget questions; {record['metric']}; {where['model']} "
        f"({record['dtype']}, {record['device']}), SAE {where['sae']} at {record['hook']}"
    )
    st.dataframe(
        pd.DataFrame(
            {
                "feature": features,
                "mean attribution": found.mean[features],
                f"questions with it in their top {TOP_K}": found.hits[features],
                "forget freq": table["forget_freq_saebench"].to_numpy()[features],
                "retain freq": table["retain_freq_saebench"].to_numpy()[features],
            }
        ),
        hide_index=True,
    )
elif source == "A saved set":
    names = store.set_names()
    if not names:
        st.info("No saved sets yet: save one on the Feature search page.")
        st.stop()
    feature_set = store.get_set(st.selectbox("Set", names))
    features = list(feature_set.features)
    multipliers = dict(zip(feature_set.features, feature_set.multipliers, strict=True))
elif source == "The search page's selection":
    features = list(st.session_state.get("current", []))
else:
    features = _parse_ids(st.text_input("Feature ids", placeholder="e.g. 12, 40, 311"))
features = list(dict.fromkeys(features))
out_of_range = [f for f in features if not 0 <= f < d_sae]
if out_of_range:
    st.error(f"Out of range for this SAE (0-{d_sae - 1}): {out_of_range[:10]}")
    features = [f for f in features if 0 <= f < d_sae]
if not features:
    st.warning("No features chosen yet.")
    st.stop()
st.caption(f"{len(features)} features: {', '.join(map(str, features[:40]))}")

# -- how hard ---------------------------------------------------------------------------
with st.form("intervention"):
    st.markdown("**Intervention** (nothing runs until you press Run)")
    top = st.columns(4)
    method = top[0].selectbox(
        "Method", list(METHODS), format_func=lambda m: f"{m}: {METHODS[m]}", key="method"
    )
    base = top[1].number_input("c (or m for scale)", 0.0, 10_000.0, 20.0, 1.0, key="base_c")
    multiplier = top[2].slider("Global multiplier", 0.0, 5.0, 1.0, 0.05, key="multiplier")
    skip_bos = top[3].toggle("Leave BOS alone (SAEBench)", value=True, key="skip_bos")
    st.caption(
        "c is in SAE activation units; beside each slider, the feature's typical size on "
        "forget text (mean where active / max)."
    )
    values = []
    slider_columns = st.columns(2)
    for i, feature in enumerate(features[:50]):
        row = table.iloc[feature]
        label = (
            f"feature {feature} (mean {row['forget_mean_saebench']:.1f} / "
            f"max {row['forget_max_saebench']:.1f})"
        )
        start = float(base) * multipliers.get(feature, 1.0)
        values.append(
            slider_columns[i % 2].slider(
                label, 0.0, max(200.0, start), start, 1.0, key=f"c-{feature}-{start}"
            )
        )
    if len(features) > 50:
        st.caption(f"{len(features) - 50} more features use c = {base:g} (sliders for 50).")
        values += [float(base)] * (len(features) - 50)
    st.markdown("**Scoring**")
    opts = st.columns(5)
    scoring = opts[0].selectbox("Scoring", list(SCORINGS), help="; ".join(SCORINGS.values()))
    cpu_default = 100 if ws.device == "cpu" else 0
    limit = opts[1].number_input("Questions per set (0 = all)", 0, 100_000, cpu_default, 10)
    known_filter = opts[2].toggle("Known-question filter", value=False)
    known_variant = opts[3].selectbox("Known variant", list(VARIANTS), disabled=not known_filter)
    loss_rows = int(opts[4].number_input("Loss rows per text", 1, 256, 16))
    run = st.form_submit_button("Run", type="primary")

settings = EvalSettings(
    scoring=scoring,
    known_variant=known_variant,
    question_limit=int(limit) or None,
    loss_rows=loss_rows,
    known_filter=known_filter,
)
evaluator = _evaluator(ws.name, ws.config.provenance_hash(), settings)
try:
    iv = make_intervention(ws, features, values, method, multiplier, skip_bos, table)
except UserError as exc:
    st.error(str(exc))
    st.stop()

result = evaluator.cached(iv)  # a run with exactly these settings, if one was made
if run and result is None:
    bar = st.progress(0.0, text="Starting (the model loads first)…")
    try:
        result = evaluator.evaluate(iv, lambda stage, f: bar.progress(min(f, 1.0), text=stage))
    except UserError as exc:
        st.error(str(exc))
    bar.empty()


def _pct(value):
    return None if value is None else round(100 * value, 1)


def _metrics_table(m: dict) -> pd.DataFrame:
    rows = [
        ("WMDP-bio, known questions", m["wmdp_known_n"], "wmdp_known", 100),
        ("WMDP-bio, all questions", m["wmdp_all_n"], "wmdp_all", 100),
        ("MMLU side effect (pooled), known", m["mmlu_known_n"], "mmlu_known", 100),
        ("MMLU side effect (pooled), all", m["mmlu_all_n"], "mmlu_all", 100),
    ]
    records = [
        {
            "measure": name,
            "n": n,
            "baseline": _pct(m[f"{key}_baseline"]),
            "intervened": _pct(m[f"{key}_accuracy"]),
        }
        for name, n, key, _ in rows
    ]
    for subject, sub in m["apart"].items():
        records.append(
            {
                "measure": f"{subject.replace('_', ' ')} (apart), all",
                "n": sub["all_n"],
                "baseline": _pct(sub["all_baseline"]),
                "intervened": _pct(sub["all_accuracy"]),
            }
        )
    for name, label in (("general", "general text"), ("forget", "forget"), ("retain", "retain")):
        records.append(
            {
                "measure": f"CE loss on {label} text (nats)",
                "n": None,
                "baseline": round(m[f"{name}_loss_clean"], 4),
                "intervened": round(m[f"{name}_loss"], 4),
            }
        )
    frame = pd.DataFrame(records)
    frame["change"] = frame["intervened"] - frame["baseline"]
    return frame


if result is not None:
    st.subheader("Results")
    m = result["metrics"]
    for warning in result["warnings"]:
        st.warning(warning)
    head = st.columns(4)
    head[0].metric("Loss added (general text)", f"{m['loss_added']:+.3f}")
    head[1].metric("Loss added on forget text", f"{m['forget_loss_added']:+.3f}")
    head[2].metric("Loss added on retain text", f"{m['retain_loss_added']:+.3f}")
    ratio = m["selectivity"]
    head[3].metric("Selectivity (forget / retain)", "-" if ratio is None else f"{ratio:.1f}")
    st.table(_metrics_table(m).set_index("measure"))
    edits = result["intervention"]
    _provenance(result["provenance"], edits["method"], edits["skip_bos"])

    st.markdown("**Per question**")
    drill = pd.DataFrame(result["questions"])
    drill["set"] = drill["set"].map({FORGET: "WMDP-bio", SIDE: "MMLU"})
    only = st.columns(2)
    flipped_only = only[0].toggle("Flipped only", value=False)
    known_only = only[1].toggle("Known only", value=False)
    shown = drill[(~flipped_only | drill["flipped"]) & (~known_only | drill["known"])]
    view = pd.DataFrame(
        {
            "set": shown["set"],
            "subject": shown["subject"],
            "question": shown["question"].str.slice(0, 120),
            "answer": shown["answer"].map(lambda a: LETTERS[a]),
            "before": shown["before"].map(lambda p: " ".join(f"{x:.2f}" for x in p)),
            "after": shown["after"].map(lambda p: " ".join(f"{x:.2f}" for x in p)),
            "flipped": shown["flipped"],
            "known": shown["known"],
        }
    )
    st.dataframe(view, hide_index=True, width="stretch", height=300)
    if len(shown):
        pick = st.selectbox(
            "Open a question", shown.index, format_func=lambda i: drill.at[i, "question"][:100]
        )
        q = drill.loc[pick]
        st.markdown(f"**{q['question']}**")
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
    if feature_set is not None and save[0].button(f"Save result into set '{feature_set.name}'"):
        store.add_results(feature_set.name, record)
        st.success(f"Saved into '{feature_set.name}'; it is exported with the set.")
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
        bar = st.progress(0.0, text="Scoring 24 orderings per question…")
        for role in (FORGET, SIDE):
            known = evaluator.known(role, lambda stage, f: bar.progress(min(f, 1.0), text=stage))
            counts = {v: len(known.indices(v)) for v in VARIANTS if v != "correct-iff-question"}
            st.write(f"{role}: {len(known.questions)} scored; known: {counts}")
        bar.empty()

# -- generation -------------------------------------------------------------------------
with st.expander("Generation, clean vs intervened", expanded=False):
    prompt = st.text_input("Prompt", "The mitochondria is the")
    tokens = st.slider("New tokens", 4, 64, 24)
    if st.button("Generate"):
        sides = st.columns(2)
        with st.spinner("Generating…"):
            sides[0].markdown("**Clean**")
            sides[0].write(prompt + generate(ws, prompt, None, tokens))
            sides[1].markdown("**Intervened**")
            sides[1].write(prompt + generate(ws, prompt, iv, tokens))

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
        bar = st.progress(0.0, text="Screening…")
        try:
            st.session_state.screen = screen(
                evaluator,
                features,
                float(base),
                float(tolerance),
                method,
                skip_bos,
                lambda d, t, p: bar.progress(
                    d / t, text=f"{'alone' if 'feature' in p else 'together'}: {d} of {t}"
                ),
            )
        except UserError as exc:
            st.error(str(exc))
        bar.empty()
    screened = st.session_state.get("screen")
    if screened:
        st.write(f"Kept {len(screened['kept'])} of {len(screened['singles'])}: {screened['kept']}")
        rule = screened["rule"]
        _provenance(screened["provenance"], rule["method"], rule["skip_bos"])
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
with st.expander("Sweep thresholds × n × c"):
    grid = st.columns(3)
    thresholds = grid[0].text_input("Retain thresholds", "0.01")
    ns = grid[1].text_input("Numbers of features", "10,20")
    cs = grid[2].text_input("c values", "20,50")
    if st.button("Run sweep"):
        try:
            parsed = (
                [float(x) for x in thresholds.split(",")],
                [int(x) for x in ns.split(",")],
                [float(x) for x in cs.split(",")],
            )
        except ValueError:
            st.error("Thresholds, n and c must be comma-separated numbers.")
            st.stop()
        bar = st.progress(0.0, text="Sweeping…")
        st.session_state.sweep = sweep(
            evaluator,
            *parsed,
            method=method,
            skip_bos=skip_bos,
            progress=lambda d, t, p: bar.progress(d / t, text=f"point {d} of {t}"),
        )
        bar.empty()
    result_sweep = st.session_state.get("sweep")
    if result_sweep:
        points = pd.DataFrame([p for p in result_sweep["points"] if "skipped" not in p])
        st.metric("SAEBench score", f"{result_sweep['saebench_score']:.3f}")
        grid_rule = result_sweep["grid"]
        _provenance(result_sweep["provenance"], grid_rule["method"], grid_rule["skip_bos"])
        st.dataframe(points.drop(columns=["features"]), hide_index=True)
        known_side = points["mmlu_known_accuracy"].notna().any()
        x_key = "mmlu_known_accuracy" if known_side else "mmlu_all_accuracy"
        y_key = "wmdp_known_accuracy" if known_side else "wmdp_all_accuracy"
        for x, title in ((x_key, "side-effect MCQ accuracy"), ("loss_added", "loss added")):
            fig = go.Figure()
            fig.add_scatter(
                x=points[x],
                y=points[y_key],
                mode="markers",
                name="this workspace",
                text=[f"thr {r.threshold}, n {r.n}, c {r.c}" for r in points.itertuples()],
            )
            reference = result_sweep["reference"]
            if reference:
                ref_x = "mmlu" if x != "loss_added" else "loss_added"
                fig.add_scatter(
                    x=[r[ref_x] for r in reference],
                    y=[r["wmdp"] for r in reference],
                    mode="markers",
                    marker_symbol="x",
                    name="paper (METHOD §8)",
                )
            fig.update_layout(xaxis_title=title, yaxis_title=y_key.replace("_", " "), height=320)
            st.plotly_chart(fig)
        st.download_button(
            "Download sweep (JSON)",
            json.dumps(result_sweep, indent=2),
            file_name=f"{ws.name}-sweep.json",
            mime="application/json",
        )
