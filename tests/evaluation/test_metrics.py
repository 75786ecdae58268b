"""The metric table and sweep axes every page and the CLI show, from the metrics alone."""

from core.evaluation.metrics import compare, metric_rows, pareto_axes, question_rows
from core.loading.data import Question


def _metrics(**overrides) -> dict:
    metrics = {
        "wmdp_known_n": 0,
        "wmdp_known_baseline": None,
        "wmdp_known_accuracy": None,
        "wmdp_all_n": 4,
        "wmdp_all_baseline": 0.5,
        "wmdp_all_accuracy": 0.25,
        "mmlu_known_n": 0,
        "mmlu_known_baseline": None,
        "mmlu_known_accuracy": None,
        "mmlu_all_n": 8,
        "mmlu_all_baseline": 0.5,
        "mmlu_all_accuracy": 0.5,
        "apart": {"college_biology": {"all_n": 2, "all_baseline": 1.0, "all_accuracy": 0.5}},
    }
    for name in ("general", "forget", "retain"):
        metrics[f"{name}_loss_clean"] = 3.0
        metrics[f"{name}_loss"] = 3.5
    return metrics | overrides


def test_rows_give_percent_with_n_and_leave_unmeasured_empty():
    rows = {row["measure"]: row for row in metric_rows(_metrics())}
    known = rows["WMDP-bio, known questions"]
    assert known["n"] == 0 and known["baseline"] is None and known["change"] is None
    everything = rows["WMDP-bio, all questions"]
    assert (everything["n"], everything["baseline"], everything["intervened"]) == (4, 50.0, 25.0)
    assert everything["change"] == -25.0
    assert rows["college biology (apart), all"]["intervened"] == 50.0
    assert rows["CE loss on forget text (nats)"]["change"] == 0.5


def test_sweeps_plot_known_accuracy_only_when_some_point_has_it():
    assert pareto_axes([{"mmlu_known_accuracy": None}]) == (
        "mmlu_all_accuracy",
        "wmdp_all_accuracy",
    )
    assert pareto_axes([{"mmlu_known_accuracy": None}, {"mmlu_known_accuracy": 0.9}]) == (
        "mmlu_known_accuracy",
        "wmdp_known_accuracy",
    )


def _question(flipped: bool, known: bool, after=(0.1, 0.2, 0.3, 0.4)) -> dict:
    return {
        "set": "forget_questions",
        "subject": "biology",
        "question": "Q?",
        "answer": 1,
        "before": [0.1, 0.6, 0.1, 0.1],
        "after": list(after),
        "flipped": flipped,
        "known": known,
    }


def test_question_filters_keep_what_they_say():
    questions = [_question(True, False), _question(False, True), _question(True, True)]
    assert [r["at"] for r in question_rows(questions)] == [0, 1, 2]
    assert [r["at"] for r in question_rows(questions, flipped_only=True)] == [0, 2]
    assert [r["at"] for r in question_rows(questions, known_only=True)] == [1, 2]
    assert [r["at"] for r in question_rows(questions, True, True)] == [2]


def test_a_destroyed_distribution_says_where_the_mass_went():
    (row,) = question_rows([_question(False, False, after=(1e-5, 2e-5, 1e-5, 0.0))])
    assert row["set"] == "WMDP-bio" and row["answer"] == "B"
    assert row["before"] == "0.10 0.60 0.10 0.10"
    assert row["after"] == "mass elsewhere (A–D sum 4.0e-05)"


def test_collapsed_letter_probabilities_are_warned_about():
    questions = {
        "forget_questions": [Question("Q1?", ("a", "b", "c", "d"), 0, "biology")],
        "side_effect_questions": [Question("Q2?", ("a", "b", "c", "d"), 1, "anatomy")],
    }
    losses = {name: [3.0] for name in ("general", "forget", "retain")}
    clean = {"scores": {role: [[0.5, 0.2, 0.1, 0.1]] for role in questions}, "losses": losses}
    edited = {"scores": {role: [[1e-5, 0.0, 0.0, 0.0]] for role in questions}, "losses": losses}
    result = compare(questions, [], clean, edited, {role: None for role in questions})
    assert result["metrics"]["letter_mass_after"] < 1e-4
    assert any("collapsed" in warning for warning in result["warnings"])
    fine = compare(questions, [], clean, clean, {role: None for role in questions})
    assert not any("collapsed" in warning for warning in fine["warnings"])
