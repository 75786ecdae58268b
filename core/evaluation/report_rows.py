"""The text every page and the CLI show of an evaluation: the metric table, the
per-question table, a run's provenance line and a sweep's score."""

from __future__ import annotations

from collections.abc import Sequence

from core.evaluation.metrics import MASS_FLOOR, best_run, unscored_reason
from core.evaluation.settings import SET_NAMES
from core.interventions.edits import METHODS, bos_rule

QUESTION_COLUMNS = (
    "at",
    "set",
    "subject",
    "question",
    "answer",
    "before",
    "after",
    "flipped",
    "known",
    "gated",
)
ACCURACY_ROWS = (
    ("WMDP-bio, known questions", "wmdp_known"),
    ("WMDP-bio, all questions", "wmdp_all"),
    ("MMLU side effect (pooled), known", "mmlu_known"),
    ("MMLU side effect (pooled), all", "mmlu_all"),
)
GATE_LABELS = {
    "wmdp": "WMDP-bio prompts",
    "mmlu": "MMLU prompts",
    "general_text": "general text rows",
    "forget_text": "forget text rows",
    "retain_text": "retain text rows",
}
LOSS_LABELS = {"general": "general text", "forget": "forget", "retain": "retain"}
NOT_MEASURED = "not measured"


def provenance_line(provenance: dict, method: str, skip_bos: bool) -> str:
    """One line saying where a run's numbers come from: model, SAE, hook, dtype and device,
    the edit and BOS rule, scoring, the known rule, question counts and the loss text."""
    p = provenance
    return (
        f"{p['model']} · SAE {p['sae']} · hook {p['hook']} · {p['dtype']} on {p['device']} · "
        f"{METHODS[method]}, {bos_rule(skip_bos)} · scoring: {p['scoring_rule']} · known: "
        f"{p['known_rule']} · questions {p['questions']}, {p['settings']['split']} split · "
        f"{p['loss_text']['general']}"
    )


def describe_probs(probs: Sequence[float]) -> str:
    """A question's four letter probabilities as shown, or where the mass went."""
    total = float(sum(probs))
    if total < MASS_FLOOR:
        return f"mass elsewhere (A–D sum {total:.1e})"
    return " ".join(f"{p:.2f}" for p in probs)


def question_rows(
    questions: Sequence[dict], flipped_only: bool = False, known_only: bool = False
) -> list[dict]:
    """The per-question table: one row per drill-down record kept by the two filters, with
    its position in the record list (`at`) to open it; for a gated run, whether the gate
    edited the question's prompt."""
    return [
        {
            "at": at,
            "set": SET_NAMES.get(q["set"], q["set"]),
            "subject": q["subject"],
            "question": q["question"][:120],
            "answer": "ABCD"[q["answer"]],
            "before": describe_probs(q["before"]),
            "after": describe_probs(q["after"]),
            "flipped": q["flipped"],
            "known": q["known"],
            **({"gated": q["gated"]} if "gated" in q else {}),
        }
        for at, q in enumerate(questions)
        if (q["flipped"] or not flipped_only) and (q["known"] or not known_only)
    ]


def format_accuracy(value: float | None, interval: Sequence[float] | None) -> str:
    """A percent with one decimal and its 95% interval, or "not measured"."""
    if value is None:
        return NOT_MEASURED
    low, high = interval if interval is not None else (value, value)
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def format_change(before: float | None, after: float | None, flips: list[int] | None) -> str:
    """The change in points with the questions flipped each way."""
    if before is None or after is None or flips is None:
        return NOT_MEASURED
    return f"{100 * (after - before):+.1f} pts ({flips[0]} right→wrong, {flips[1]} wrong→right)"


def format_loss_added(added: float, se: float | None, rows: int) -> str:
    """Loss added with its standard error over rows, or why it has none."""
    if se is None:
        return f"{added:+.4f} (no SE: {rows} row{'s' * (rows != 1)})"
    return f"{added:+.4f} ± {se:.4f} (SE over {rows} rows)"


def format_point(point: dict) -> str:
    """A sweep point's or screened feature's accuracies and loss added, each with its n and
    interval (a progress line)."""
    said = [
        f"{label} {format_accuracy(point[key + '_accuracy'], point[key + '_accuracy_ci'])} "
        f"(n = {point[key + '_n']})"
        for label, key in (("WMDP (all)", "wmdp_all"), ("MMLU (all)", "mmlu_all"))
    ]
    added = format_loss_added(point["loss_added"], point["loss_added_se"], point["loss_rows"])
    return ", ".join([*said, f"loss added {added}"])


def _accuracy_row(measure: str, record: dict, key: str) -> dict:
    p = record[f"{key}_change_p"]
    return {
        "measure": measure,
        "n": record[f"{key}_n"],
        "baseline": format_accuracy(record[f"{key}_baseline"], record[f"{key}_baseline_ci"]),
        "intervened": format_accuracy(record[f"{key}_accuracy"], record[f"{key}_accuracy_ci"]),
        "change": format_change(
            record[f"{key}_baseline"], record[f"{key}_accuracy"], record[f"{key}_flips"]
        ),
        "test": NOT_MEASURED if p is None else f"McNemar exact p = {p:.3g}",
    }


def measured_texts(metrics: dict) -> list[tuple[str, list[str]]]:
    """Each loss text once: its name, and the names of every text measured on the same rows
    (itself first), as a run's `same_text` pairs say."""
    merged = {second: first for first, second in metrics.get("same_text", [])}
    return [
        (name, [name, *(other for other, first in merged.items() if first == name)])
        for name in LOSS_LABELS
        if name not in merged
    ]


def metric_rows(metrics: dict) -> list[dict]:
    """The result table every page and the CLI show, as text: each accuracy with its n, 95%
    Wilson interval and the paired change (McNemar exact); subjects kept apart; CE loss with
    the loss added ± its standard error over rows. A text measured on the same rows as
    another is one row."""
    rows = [_accuracy_row(name, metrics, key) for name, key in ACCURACY_ROWS]
    if shots := metrics.get("k_shot"):
        rows += [
            _accuracy_row(f"{name}, {shots['k']}-shot", shots, key) for name, key in ACCURACY_ROWS
        ]
    for subject, sub in metrics["apart"].items():
        name = subject.replace("_", " ")
        rows.append(_accuracy_row(f"{name} (apart), known", sub, "known"))
        rows.append(_accuracy_row(f"{name} (apart), all", sub, "all"))
    k_shot_gate = (shots or {}).get("gate") or {}
    for name, rate, k in [
        *((name, rate, "") for name, rate in (metrics.get("gate") or {}).items()),
        *((name, rate, f", {shots['k']}-shot") for name, rate in k_shot_gate.items()),
    ]:
        rows.append(
            {
                "measure": f"gate on: {GATE_LABELS.get(name, name)}{k} (share of sequences edited)",
                "n": rate["n"],
                "baseline": "",
                "intervened": format_accuracy(rate["on"], rate["on_ci"]),
                "change": "",
                "test": "",
            }
        )
    for name, names in measured_texts(metrics):
        se = metrics[f"{name}_loss_added_se"]
        rows.append(
            {
                "measure": f"CE loss on {' = '.join(LOSS_LABELS[n] for n in names)} text (nats)",
                "n": metrics[f"{name}_loss_rows"],
                "baseline": f"{metrics[f'{name}_loss_clean']:.4f}",
                "intervened": f"{metrics[f'{name}_loss']:.4f}",
                "change": format_loss_added(
                    metrics[f"{name}_loss_added"], se, metrics[f"{name}_loss_rows"]
                ),
                "test": "",
            }
        )
    return rows


def format_score(score: float | None, points: Sequence[dict], held_out: bool = False) -> str:
    """A sweep's score as shown, saying how the best run was chosen, or why none was."""
    if score is None:
        return f"{NOT_MEASURED} ({unscored_reason(points, held_out)})"
    shown = f"{score:.3f}"
    best = best_run(points, held_out) or {}
    if (interval := best.get("wmdp_known_accuracy_ci")) is not None:
        n = best["wmdp_known_n"]
        shown += f" [{1 - interval[1]:.3f}, {1 - interval[0]:.3f}], n = {n} known WMDP questions"
    if held_out:
        return f"{shown} (best run chosen on the selection split, scored on the report split)"
    return (
        f"{shown} (SAEBench's protocol, optimistic: the best run is chosen on the "
        "questions it is scored on)"
    )
