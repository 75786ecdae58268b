"""Sweep and screening configs: grids as typed, refused before anything runs."""

import pytest

from core.errors import UserError
from core.selection.screening import ScreenConfig, judged
from core.sweeps.grid import SweepConfig
from core.sweeps.plots import pareto_plot
from core.sweeps.references import REFERENCE_POINTS


def test_grid_as_typed_on_the_page_or_the_command_line():
    config = SweepConfig.from_text("0.001, 0.01", "10 20", "20,50", method="scale")
    assert config.thresholds == (0.001, 0.01) and config.ns == (10, 20)
    assert len(config.points()) == 8
    config.check()
    gated = SweepConfig.from_text("0.01", "10", "20, 500", "off, 95, 99.5")
    assert gated.gates == (None, 95.0, 99.5) and len(gated.points()) == 6
    gated.check()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (("0.01", "10.5", "20"), "Numbers of features must be whole numbers"),
        (("0.01", "10", "twenty"), "c values must be numbers"),
        (("2", "10", "20"), r"frequency in \[0, 1\]"),
        (("0.01", "0", "20"), "≥ 1"),
        (("0.01", "10", "-5"), "finite number ≥ 0"),
        (("0.01", "10", ""), "at least one c"),
        (("0.01", "10", "20", "off, 100"), "strictly between 0 and 100"),
        (("0.01", "10", "20", "0"), "strictly between 0 and 100"),
        (("0.01", "10", "20", "ninety"), "Gate percentiles must be numbers"),
        (("0.01", "10", "20", ""), "at least one gate"),
    ],
    ids=[
        "n-fraction",
        "c-word",
        "threshold-above-1",
        "n-zero",
        "c-negative",
        "no-c",
        "gate-100",
        "gate-0",
        "gate-word",
        "no-gate",
    ],
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


def test_the_published_points_are_drawn_on_known_axes_only_and_named_by_method():
    reference = REFERENCE_POINTS["gemma-2-2b-it-L3"]
    gated = _point(0.3) | {"gate_percentile": 95.0, "gate_alpha": 0.05}
    gated["gate"] = {"wmdp": {"n": 10, "on": 0.8, "on_ci": [0.5, 0.9]}}
    points = [_point(0.5), gated]
    known = pareto_plot({"points": points, "reference": reference}, "side effect")
    assert [s["name"] for s in known["series"]] == [
        "this workspace, ungated",
        "this workspace, gated at the 95th percentile",
        "paper's SAE clamp (METHOD §8)",
        "RMU (METHOD §8)",
        "DSG (METHOD §10)",
    ]
    assert known["series"][1]["y"] == [0.3] and known["series"][1]["symbol"] == "square"
    assert "gate p95 alpha 0.050, on for 80% of WMDP prompts" in known["series"][1]["text"][0]
    y_error = known["series"][0]["y_error"]
    assert y_error["array"] == pytest.approx([0.1]) and y_error["arrayminus"] == pytest.approx(
        [0.1]
    )
    assert known["series"][3]["x"] == [1.0] and known["series"][3]["y"] == [0.441]
    assert known["series"][4]["x"] == [0.993] and known["series"][4]["y"] == [0.296]
    on_loss = pareto_plot({"points": points, "reference": reference}, "loss added")
    assert "DSG (METHOD §10)" not in [s["name"] for s in on_loss["series"]]  # no loss reported
    everything = pareto_plot({"points": [_point(None)], "reference": reference}, "loss added")
    assert [s["name"] for s in everything["series"]] == ["this workspace, ungated"]
    assert everything["series"][0]["x_error"] == {"array": [0.02], "arrayminus": [0.02]}
    assert "not drawn" in everything["note"]


def test_screening_judges_on_known_questions_only_when_they_are_measured():
    too_few = {
        "mmlu_known_n": 5,  # known, but fewer than min_known: not measured
        "mmlu_known_baseline": None,
        "mmlu_known_accuracy": None,
        "mmlu_all_n": 4,
        "mmlu_all_baseline": 0.5,
        "mmlu_all_accuracy": 0.25,
        "mmlu_all_flips": [1, 0],
    }
    first = judged(too_few, 0.0)
    assert (first["side_questions"], first["side_drop"]) == ("all", 0.25)
    measured = too_few | {
        "mmlu_known_n": 20,
        "mmlu_known_baseline": 1.0,
        "mmlu_known_accuracy": 0.9,
        "mmlu_known_flips": [2, 0],
    }
    assert judged(measured, 0.0)["side_questions"] == "known"
    assert judged(measured, 0.0)["side_drop"] == pytest.approx(0.1)
    unmeasured = too_few | {"mmlu_all_accuracy": None}
    assert judged(unmeasured, 1.0) == {
        "side_questions": "all",
        "side_drop": None,
        "side_drop_ci": None,
        "kept": False,
    }


def test_screening_drops_a_feature_on_a_shown_drop_not_one_flipped_question():
    def metrics(lost: int, gained: int, n: int = 50) -> dict:
        base = 0.6
        return {
            "mmlu_known_accuracy": None,
            "mmlu_all_n": n,
            "mmlu_all_baseline": base,
            "mmlu_all_accuracy": base - (lost - gained) / n,
            "mmlu_all_flips": [lost, gained],
        }

    one_flip = judged(metrics(1, 0), 0.0)
    assert one_flip["side_drop"] == pytest.approx(0.02) and one_flip["kept"]  # not shown
    assert one_flip["side_drop_ci"][0] < 0 < one_flip["side_drop_ci"][1]
    assert not judged(metrics(10, 0), 0.0)["kept"]  # ten lost, none gained: shown above 0
    assert judged(metrics(10, 0), 0.2)["kept"]  # not shown above a 0.2 tolerance
