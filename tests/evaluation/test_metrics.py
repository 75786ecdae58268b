"""The metrics of an evaluation from clean and intervened runs, and the sweep axes."""

import numpy as np
import pytest

from core.base.uncertainty import Z95, ratio_interval
from core.evaluation.metrics import compare, pareto_axes
from core.loading.data import Question


def _questions(n: int, subject: str) -> list[Question]:
    return [Question(f"Q{i}?", ("a", "b", "c", "d"), 0, subject) for i in range(n)]


RIGHT, WRONG = [0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]


def test_compare_gives_intervals_paired_tests_selectivity_and_unmeasured_as_such():
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


def test_sweeps_plot_known_accuracy_only_when_some_point_has_it():
    assert pareto_axes([{"mmlu_known_accuracy": None}]) == (
        "mmlu_all_accuracy",
        "wmdp_all_accuracy",
    )
    assert pareto_axes([{"mmlu_known_accuracy": None}, {"mmlu_known_accuracy": 0.9}]) == (
        "mmlu_known_accuracy",
        "wmdp_known_accuracy",
    )


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
