"""Intervals of accuracy changes on the same questions: the paired drop interval agrees with
McNemar's exact test and with a brute-force count of what the discordant questions allow."""

import numpy as np
import pytest

from core.base.uncertainty import mcnemar_exact, paired_drop_interval, rate_ratio_interval


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


@pytest.mark.parametrize(
    ("a", "b", "total_a", "total_b"),
    [(1, 0, 1000, 1000), (100, 1, 1000, 2000), (0, 5, 500, 500), (50, 50, 10_000, 3_000)],
    ids=["one-against-none", "many-against-one", "none-against-some", "even"],
)
def test_the_rate_ratio_interval_is_clopper_pearson_of_the_share_mapped_to_the_ratio(
    a, b, total_a, total_b
):
    from scipy.stats import binomtest

    low, high = rate_ratio_interval(np.array([a]), total_a, np.array([b]), total_b)
    share = binomtest(a, a + b).proportion_ci(0.95, method="exact")
    to_ratio = lambda p: total_b / total_a * p / (1 - p) if p < 1 else np.inf  # noqa: E731
    assert low[0] == pytest.approx(to_ratio(share.low))
    assert high[0] == pytest.approx(to_ratio(share.high))
    if a and b:
        assert low[0] < (a / total_a) / (b / total_b) < high[0]


def test_one_firing_against_none_ranks_below_steady_evidence():
    low, _ = rate_ratio_interval(np.array([1, 40, 0]), 10_000, np.array([0, 2, 0]), 10_000)
    assert low[0] < 0.05 < 1 < low[1]  # point ratios: 1 / 0.5 counts = 2 vs 40 / 2 = 20
    assert np.isnan(low[2])
