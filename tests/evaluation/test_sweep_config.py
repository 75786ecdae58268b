"""Sweep and screening configs: grids as typed, refused before anything runs."""

import pytest

from core.errors import UserError
from core.evaluation.sweeps import ScreenConfig, SweepConfig


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
