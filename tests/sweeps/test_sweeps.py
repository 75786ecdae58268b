"""Sweeps and the paper's screening on the small real workspace: every point is an evaluation,
memoised on disk; the SAEBench score from its definition."""

from dataclasses import replace

import pytest

from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.metrics import saebench_score
from core.evaluation.protocol import QuestionProtocol, question_id
from core.evaluation.settings import EvalSettings
from core.features.stats import workspace_stats
from core.selection.frequency import SelectionConfig, select_features
from core.selection.screening import ScreenConfig, screen
from core.sweeps.grid import SweepConfig, planned_runs
from core.sweeps.run import sweep

pytestmark = pytest.mark.model


@pytest.fixture
def evaluator(small_app_ws) -> Evaluator:
    ws = small_app_ws
    settings = EvalSettings(question_limit=2, loss_rows=1, loss_context=32, known_filter=False)
    return Evaluator(ws, settings)


@pytest.fixture
def chooser(evaluator) -> Evaluator:
    """The same settings on the selection split, where screening runs."""
    return Evaluator(evaluator.ws, replace(evaluator.settings, split="selection"))


def test_saebench_score_is_one_minus_the_lowest_wmdp_with_side_effects_kept():
    points = [
        {"wmdp_known_accuracy": 0.4, "mmlu_known_accuracy": 0.98},  # side effects too big
        {"wmdp_known_accuracy": 0.7, "mmlu_known_accuracy": 0.99},
        {"wmdp_known_accuracy": 0.6, "mmlu_known_accuracy": 1.0},
        {"wmdp_known_accuracy": None, "mmlu_known_accuracy": 1.0},
    ]
    assert saebench_score(points) == pytest.approx(0.4)
    assert saebench_score(points[:1]) is None  # measured, and no run kept the side effects
    assert saebench_score(points[3:]) is None  # no run measured on known questions
    assert saebench_score([]) is None


def test_sweep_points_are_the_selection_and_are_memoised(evaluator):
    result = sweep(evaluator, SweepConfig((0.01, 0.0), (2,), (20.0,)))
    table, _ = workspace_stats(evaluator.ws)
    point, empty = result["points"]
    assert point["features"] == select_features(table, SelectionConfig(0.01, 2))["feature"].tolist()
    assert point["wmdp_all_accuracy"] is not None and point["forget_loss_added"] is not None
    assert "no feature" in empty["skipped"]
    assert point["selection"]["wmdp_all_n"] == point["wmdp_all_n"] == 1  # halves of 2
    assert result["questions"] == "report" and result["held_out_score"] is None  # none known
    chose = QuestionProtocol(evaluator.ws, replace(evaluator.settings, split="selection"))
    assert result["question_ids"] == chose.split_ids()  # the best point is chosen there
    assert not set(result["question_ids"]["forget_questions"]) & {
        question_id(q) for q in evaluator.questions("forget_questions")
    }
    runs = sorted(evaluator.folder.glob("run-*.json"))
    again = sweep(evaluator, SweepConfig((0.01,), (2,), (20.0,)))
    assert again["points"][0]["forget_loss_added"] == point["forget_loss_added"]
    assert sorted(evaluator.folder.glob("run-*.json")) == runs


def test_screen_keeps_features_without_side_effects_and_adds_them_up(chooser):
    evaluator = chooser
    table, _ = workspace_stats(evaluator.ws)
    candidates = select_features(table, SelectionConfig(0.01, 3))["feature"].tolist()
    every_drop_kept = ScreenConfig(tuple(candidates), c=20.0, tolerance=1.0)
    result = screen(evaluator, every_drop_kept)
    assert [s["feature"] for s in result["singles"]] == candidates
    assert result["kept"] == candidates
    assert result["question_ids"] == evaluator.protocol.split_ids()
    assert [p["features"] for p in result["cumulative"]] == [candidates[:k] for k in (1, 2, 3)]
    first = result["cumulative"][0]
    assert first["forget_loss_added"] == result["singles"][0]["forget_loss_added"]  # one run
    no_drop_kept = ScreenConfig(tuple(candidates), c=20.0, tolerance=-1.0)
    strict = screen(evaluator, no_drop_kept)
    assert strict["kept"] == [] and strict["cumulative"] == []
    at_zero = screen(evaluator, ScreenConfig(tuple(candidates), c=20.0, tolerance=0.0))
    assert [s["kept"] for s in at_zero["singles"]] == [
        s["side_drop_ci"] is not None and s["side_drop_ci"][0] <= 0 for s in at_zero["singles"]
    ]


def test_screen_refuses_a_bad_candidate_before_running_any(chooser):
    before = sorted(chooser.folder.glob("*.json"))
    with pytest.raises(UserError, match="out of range"):
        screen(chooser, ScreenConfig((1, 99_999), c=20.0))
    assert sorted(chooser.folder.glob("*.json")) == before


def test_screening_never_chooses_on_the_report_split(evaluator):
    with pytest.raises(UserError, match="selection split"):
        screen(evaluator, ScreenConfig((1, 2), c=20.0))


def test_a_sweeps_gates_are_calibrated_on_the_text_it_names(evaluator):
    config = SweepConfig((0.01,), (2,), (20.0,), gates=(None, 95.0))
    windows = replace(config, gate_calibration="prompt-windows")
    ungated, gated = planned_runs(evaluator, windows)
    assert ungated.intervention.gate is None
    assert gated.intervention.gate.calibration["on"] == "prompt-windows"
    retain = planned_runs(evaluator, config)[1].intervention.gate
    assert "on" not in retain.calibration  # the default keeps the retain rows' memo keys
    with pytest.raises(UserError, match="Unknown gate calibration 'rows'"):
        replace(config, gate_calibration="rows").check()


def test_mean_ablation_points_take_their_means_from_the_sweeps_table(evaluator):
    from core.features.stats import feature_means

    runs = planned_runs(evaluator, SweepConfig((0.01,), (2, 3), (1.0,), method="mean"))
    table, _ = workspace_stats(evaluator.ws)
    for run in runs:
        features = list(run.intervention.features)
        assert run.intervention.means == feature_means(evaluator.ws, features, table)
        assert run.intervention.means == feature_means(evaluator.ws, features)  # its own table
