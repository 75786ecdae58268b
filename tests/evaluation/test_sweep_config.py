"""Sweep and screening configs: grids as typed, refused before anything runs."""

import pytest

from core.errors import UserError
from core.evaluation.sweeps import (
    REFERENCE_POINTS,
    ScreenConfig,
    SweepConfig,
    pareto_plot,
    side_drop,
)


def test_grid_as_typed_on_the_page_or_the_command_line():
    config = SweepConfig.from_text("0.001, 0.01", "10 20", "20,50", method="scale")
    assert config.thresholds == (0.001, 0.01) and config.ns == (10, 20)
    assert len(config.points()) == 8
    config.check()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (("0.01", "10.5", "20"), "Numbers of features must be whole numbers"),
        (("0.01", "10", "twenty"), "c values must be numbers"),
        (("2", "10", "20"), r"frequency in \[0, 1\]"),
        (("0.01", "0", "20"), "≥ 1"),
        (("0.01", "10", "-5"), "finite number ≥ 0"),
        (("0.01", "10", ""), "at least one c"),
    ],
    ids=["n-fraction", "c-word", "threshold-above-1", "n-zero", "c-negative", "no-c"],
)
def test_bad_grids_are_user_errors(typed, message):
    with pytest.raises(UserError, match=message):
        SweepConfig.from_text(*typed).check()


def test_screening_needs_candidates_and_a_sane_tolerance():
    with pytest.raises(UserError, match="No candidate"):
        ScreenConfig(()).check()
    with pytest.raises(UserError, match="tolerance"):
        ScreenConfig((1, 2), tolerance=5.0).check()


def _point(known: float | None) -> dict:
    return {
        "threshold": 0.01,
        "n": 10,
        "c": 20.0,
        "wmdp_known_accuracy": known,
        "wmdp_known_accuracy_ci": None if known is None else [known - 0.1, known + 0.1],
        "mmlu_known_accuracy": known,
        "mmlu_known_accuracy_ci": None if known is None else [known - 0.05, known + 0.05],
        "wmdp_all_accuracy": 0.3,
        "wmdp_all_accuracy_ci": [0.2, 0.4],
        "mmlu_all_accuracy": 0.5,
        "mmlu_all_accuracy_ci": [0.4, 0.6],
        "loss_added": 0.1,
        "loss_added_se": 0.02,
    }


def test_the_papers_points_are_drawn_on_known_axes_only_and_rmu_is_named():
    reference = REFERENCE_POINTS["gemma-2-2b-it-L3"]
    known = pareto_plot({"points": [_point(0.5)], "reference": reference}, "side effect")
    assert [s["name"] for s in known["series"]] == [
        "this workspace",
        "paper's SAE clamp (METHOD §8)",
        "RMU",
    ]
    y_error = known["series"][0]["y_error"]
    assert y_error["array"] == pytest.approx([0.1]) and y_error["arrayminus"] == pytest.approx(
        [0.1]
    )
    assert known["series"][2]["x"] == [1.0] and known["series"][2]["y"] == [0.441]
    everything = pareto_plot({"points": [_point(None)], "reference": reference}, "loss added")
    assert [s["name"] for s in everything["series"]] == ["this workspace"]
    assert everything["series"][0]["x_error"] == {"array": [0.02], "arrayminus": [0.02]}
    assert "not drawn" in everything["note"]


def test_screening_judges_on_known_questions_only_when_they_are_measured():
    too_few = {
        "mmlu_known_n": 5,  # known, but fewer than min_known: not measured
        "mmlu_known_baseline": None,
        "mmlu_known_accuracy": None,
        "mmlu_all_baseline": 0.5,
        "mmlu_all_accuracy": 0.25,
    }
    assert side_drop(too_few) == ("all", 0.25)
    measured = too_few | {"mmlu_known_baseline": 1.0, "mmlu_known_accuracy": 0.9}
    assert side_drop(measured)[0] == "known"
    assert side_drop(measured)[1] == pytest.approx(0.1)
