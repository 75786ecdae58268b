"""The metric table and sweep axes every page and the CLI show, from the metrics alone."""

import numpy as np
import pytest

from core.base.uncertainty import Z95, ratio_interval
from core.evaluation.metrics import compare, metric_rows, pareto_axes, question_rows
from core.loading.data import Question


def _questions(n: int, subject: str) -> list[Question]:
    return [Question(f"Q{i}?", ("a", "b", "c", "d"), 0, subject) for i in range(n)]


RIGHT, WRONG = [0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]


def test_rows_give_percent_intervals_paired_tests_and_unmeasured_as_such():
    questions = {
        "forget_questions": _questions(4, "biology"),
        "side_effect_questions": _questions(3, "anatomy") + _questions(2, "college_biology"),
    }
    clean = {
        "scores": {
            "forget_questions": [RIGHT, RIGHT, WRONG, WRONG],
            "side_effect_questions": [RIGHT] * 5,
        },
        "losses": {"general": [3.0, 3.2], "forget": [2.0, 2.5], "retain": [3.0, 3.2]},
    }
    edited = {
        "scores": {
            "forget_questions": [WRONG, RIGHT, WRONG, RIGHT],
            "side_effect_questions": [RIGHT, RIGHT, WRONG, RIGHT, WRONG],
        },
        "losses": {"general": [3.1, 3.5], "forget": [4.0, 5.5], "retain": [3.1, 3.5]},
    }
    known = {"forget_questions": np.array([0, 1]), "side_effect_questions": None}
    result = compare(questions, ["college_biology"], clean, edited, known, min_known=2)
    m = result["metrics"]
    assert m["wmdp_all_flips"] == [1, 1] and m["wmdp_all_change_p"] == 1.0
    low, high = m["wmdp_all_baseline_ci"]
    assert low == pytest.approx(0.150, abs=1e-3) and high == pytest.approx(0.850, abs=1e-3)
    assert m["mmlu_known_accuracy"] is None and m["wmdp_known_n"] == 2
    assert m["forget_loss_added"] == pytest.approx(2.5)
    assert m["forget_loss_added_se"] == pytest.approx(0.5)
    assert m["same_text"] == [("general", "retain")]
    # forget +2.5 ± 0.5 over retain +0.2 ± 0.1: retain's interval just misses 0, so the
    # ratio's interval is bounded but very wide, and skewed up
    assert m["selectivity"] == pytest.approx(12.5)
    assert m["selectivity_ci"] == pytest.approx(ratio_interval(2.5, 0.5, 0.2, 0.1))
    low, high = m["selectivity_ci"]
    assert low < 12.5 < high and high - 12.5 > 10 * (12.5 - low)
    rows = {row["measure"]: row for row in metric_rows(m)}
    everything = rows["WMDP-bio, all questions"]
    assert everything["n"] == 4 and everything["baseline"] == "50.0% [15.0, 85.0]"
    assert everything["change"] == "+0.0 pts (1 right→wrong, 1 wrong→right)"
    assert rows["MMLU side effect (pooled), known"]["intervened"] == "not measured"
    assert rows["college biology (apart), all"]["intervened"].startswith("50.0% [")
    assert rows["CE loss on forget text (nats)"]["change"] == "+2.5000 ± 0.5000 (SE over rows)"
    assert "CE loss on general text = retain text (nats)" in rows
    assert "CE loss on retain text (nats)" not in rows


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


def test_ratio_intervals_are_fiellers():
    # an exact denominator: the numerator's interval divided by it
    low, high = ratio_interval(2.0, 0.5, 4.0, 0.0)
    assert (low, high) == pytest.approx((0.5 - Z95 * 0.125, 0.5 + Z95 * 0.125))
    # both uncertain: the interval holds every ratio r with |a - r b| <= z sqrt(sa² + r² sb²)
    low, high = ratio_interval(3.0, 0.3, 1.5, 0.2)
    for r in (low, high):
        assert abs(3.0 - r * 1.5) == pytest.approx(Z95 * np.hypot(0.3, r * 0.2))
    assert low < 2.0 < high and high - 2.0 > 2.0 - low  # skewed up: the denominator's doubt
    assert ratio_interval(3.0, 0.3, 0.3, 0.2) is None  # denominator within noise of 0
    assert ratio_interval(3.0, None, 1.5, 0.2) is None
    # both exact: a point, whatever the rounding of a²b² − b²a²
    for a, b in ((0.1, 0.3), (2.7, 0.7), (1e-3, 3.3)):
        assert ratio_interval(a, 0.0, b, 0.0) == pytest.approx((a / b, a / b))
