"""The question protocol: a seeded sample of each set, split into disjoint selection and
report parts, and what chooses refused on the report part."""

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.protocol import refuse_report_split, sample_positions, split_positions
from core.evaluation.settings import EvalSettings


def test_the_sample_is_seeded_sorted_and_all_without_a_limit():
    sample = sample_positions(50, 10, seed=42)
    assert len(sample) == 10 and (np.diff(sample) > 0).all()
    assert np.array_equal(sample, sample_positions(50, 10, seed=42))
    assert not np.array_equal(sample, sample_positions(50, 10, seed=43))
    assert np.array_equal(sample_positions(5, None, seed=42), np.arange(5))
    assert np.array_equal(sample_positions(5, 9, seed=42), np.arange(5))


def test_selection_and_report_are_disjoint_seeded_and_make_up_all():
    chosen = {
        split: set(split_positions(11, EvalSettings(split=split, report_fraction=0.3)).tolist())
        for split in ("selection", "report", "all")
    }
    assert len(chosen["report"]) == round(11 * 0.3) and len(chosen["selection"]) == 8
    assert chosen["selection"] | chosen["report"] == chosen["all"] == set(range(11))
    assert not chosen["selection"] & chosen["report"]
    again = split_positions(11, EvalSettings(split="report", report_fraction=0.3))
    assert set(again.tolist()) == chosen["report"]


@pytest.mark.parametrize("split", ["selection", "all"])
def test_only_the_report_split_is_refused_to_what_chooses(split):
    refuse_report_split(EvalSettings(split=split), "Screening")
    with pytest.raises(UserError, match="Screening chooses features"):
        refuse_report_split(EvalSettings(split="report"), "Screening")
