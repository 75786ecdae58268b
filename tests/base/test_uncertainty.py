"""Intervals of accuracy changes on the same questions: the paired drop interval agrees with
McNemar's exact test and with a brute-force count of what the discordant questions allow."""

import pytest

from core.base.uncertainty import mcnemar_exact, paired_drop_interval


def test_no_changed_question_is_no_drop():
    assert paired_drop_interval(0, 0, 50) == (0.0, 0.0)


@pytest.mark.parametrize(("lost", "gained"), [(1, 0), (0, 1), (3, 2), (5, 0), (12, 1), (20, 20)])
def test_the_interval_holds_the_drop_and_excludes_zero_only_when_mcnemar_rejects(lost, gained):
    n = 50
    low, high = paired_drop_interval(lost, gained, n)
    assert -1 <= low <= (lost - gained) / n <= high <= 1
    assert high - low <= 2 * (lost + gained) / n  # never wider than what changed allows
    excludes_zero = low > 0 or high < 0
    assert excludes_zero == (mcnemar_exact(lost, gained) < 0.05)


def test_one_flipped_question_of_fifty_is_no_shown_drop():
    low, high = paired_drop_interval(1, 0, 50)
    assert low < 0 < high and high == pytest.approx(0.02)
    assert paired_drop_interval(8, 0, 50)[0] > 0  # eight lost, none gained: shown
