"""The reproduction's pieces that need no GPU: the comparison rule, SAEBench's grid, the
refusal on a CPU with an estimated time, and bad input (nothing computed, nothing written).
The whole command runs on the fake hub in tests/hub/test_fake_hub.py."""

import itertools

import pytest

from core.cli import main
from core.errors import UserError
from core.sweeps.reproduce import (
    SAEBENCH_GRID,
    compare,
    paper_se,
    reference_points,
    top_features,
)
from core.sweeps.reproduce_report import report_markdown


def test_a_reference_inside_our_wilson_interval_is_reproduced():
    assert compare(0.584, 0.60, (0.55, 0.65))["within"] is True
    assert compare(0.475, 0.60, (0.55, 0.65))["within"] is False
    assert compare(0.5, None, None)["within"] is None  # not measured is not a pass


def test_a_loss_reference_is_compared_within_two_standard_errors():
    inside = compare(0.021, 0.015, 0.004)  # 0.015 ± 1.96 x 0.004 = [0.00716, 0.02284]
    assert inside["within"] is True
    assert inside["interval"] == pytest.approx((0.00716, 0.02284))
    assert compare(-0.0035, 0.015, 0.004)["within"] is False


def test_the_verdict_counts_the_papers_own_sampling_error():
    # the paper's 0.54 is outside our interval, but its own n (522 known) makes the two
    # consistent: |0.60 - 0.54| = 0.06 <= 1.96 * hypot(0.0255, 0.0218) = 0.0658
    ours = (0.55, 0.65)
    se = paper_se("wmdp", 0.54, None, None)
    assert se == pytest.approx(0.0218, abs=2e-4)
    assert compare(0.54, 0.60, ours)["within"] is False
    check = compare(0.54, 0.60, ours, se)
    assert check["within"] is True and check["tolerance"] == pytest.approx(0.0658, abs=5e-4)
    assert compare(0.45, 0.60, ours, se)["within"] is False


def test_the_papers_loss_error_is_ours_scaled_to_its_rows():
    assert paper_se("loss_added", 0.02, 0.004, 400) == pytest.approx(0.002)  # 1600 rows
    assert paper_se("loss_added", 0.02, None, 400) is None
    assert paper_se("mmlu", None, 0.01, 400) is None


def test_our_top_10_is_compared_with_method_section_8s_list():
    paper = reference_points("gemma-2-2b-it-L7")
    rows = [{"n": 10, "features": [12799, 5453, 1, 2, 3, 4, 5, 6, 7, 8]}, {"n": 20, "features": []}]
    top = top_features("gemma-2-2b-it-L7", rows)
    assert top["shared"] == 2 and top["paper"][0] == 12799 and len(paper) == 2
    assert top_features("gemma-2-2b-it-L3", rows) is None  # METHOD §8 lists L7's only


def test_the_saebench_table_gives_every_number_its_interval_and_n():
    point = {"threshold": 0.01, "n": 10, "c": 50.0, "loss_added": 0.01, "loss_added_se": 0.002}
    point |= {"wmdp_known_accuracy": 0.3, "wmdp_known_accuracy_ci": (0.2, 0.4)}
    point |= {"wmdp_known_n": 60, "mmlu_known_accuracy": None, "loss_rows": 16}
    result = {"paper": [], "not_run": [], "saebench": {"score": 0.7, "points": [point]}}
    result |= {"workspace": "w", "reproduced": False, "reference": "gemma-2-2b-it-L7"}
    result |= {"seconds": 1.0, "settings": {}, "provenance": {}, "device": "cpu"}
    shown = report_markdown(result)
    assert "| 0.300 [0.200, 0.400] (n 60) | not measured | +0.0100 [0.0061, 0.0139] (n 16) |" in (
        shown
    )
    assert "Top-10 features: not compared (no n = 10 point was measured)" in shown


def test_saebench_grid_is_its_16_configurations():
    assert SAEBENCH_GRID.points() == list(
        itertools.product((0.001, 0.01), (10, 20), (25.0, 50.0, 100.0, 200.0), (None,))
    )
    assert SAEBENCH_GRID.variant == "saebench" and SAEBENCH_GRID.skip_bos


def test_the_report_says_why_the_saebench_score_is_not_measured():
    point = {"threshold": 0.01, "n": 10, "c": 50.0, "loss_added": 0.01}
    point |= {"wmdp_known_accuracy": 0.3, "mmlu_known_accuracy": 0.9}
    result = {"paper": [], "not_run": [], "saebench": {"score": None, "points": [point]}}
    result |= {"workspace": "w", "reproduced": False, "reference": "r", "device": "cpu"}
    result |= {"seconds": 1.0, "settings": {}, "provenance": {}}
    shown = "optimistic): not measured (no run kept MMLU ≥ 0.99)."
    assert shown in report_markdown(result)


def test_the_reference_points_are_method_section_8():
    points = [(p["n"], p["c"], p["wmdp"]) for p in reference_points("gemma-2-2b-it-L7")]
    assert points == [(10, 50, 0.787), (20, 100, 0.421)]
    with pytest.raises(UserError, match="reproduce knows gemma-2-2b-it-L3, gemma-2-2b-it-L7"):
        reference_points("offline-gemma3-270m")


def test_on_a_cpu_it_refuses_with_the_estimated_time(tmp_path, capsys):
    out = tmp_path / "report.md"
    code = main(["reproduce", "--workspace", "gemma-2-2b-it-L3", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "needs a CUDA GPU" in err and "hours" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--questions", "0"], "--questions must be ≥ 1"),
        (["--loss-rows", "-3"], "--loss-rows must be ≥ 1"),
        (["--reference", "offline-gemma3-270m"], "No reference numbers"),
        (["--out", "/no/such/folder/report.md"], "does not exist"),
    ],
    ids=["questions", "loss-rows", "reference", "out"],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    code = main(["reproduce", "--workspace", "gemma-2-2b-it-L3", "--allow-cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
