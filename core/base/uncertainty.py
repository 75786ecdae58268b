"""Intervals and tests beside every number (METHOD §11): Wilson intervals for accuracies,
McNemar's exact test and an interval for accuracy changes on the same questions, standard
errors of means,
Fieller intervals for ratios of independent means."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion; None when n = 0."""
    if n == 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against Binomial(b + c, 1/2)."""
    n = right_to_wrong + wrong_to_right
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(right_to_wrong, wrong_to_right) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_drop_interval(lost: int, gained: int, n: int) -> tuple[float, float]:
    """The 95% interval of an accuracy drop on the same n > 0 questions, (lost − gained) / n:
    the exact (Clopper-Pearson) interval of the lost share of the discordant questions,
    scaled by their number. Conditional on them, as McNemar's exact test is, so it excludes 0
    exactly when that test's p < 0.05; (0, 0) when no question changed."""
    from scipy.stats import beta

    changed = lost + gained
    if changed == 0:
        return 0.0, 0.0
    low = float(beta.ppf(0.025, lost, gained + 1)) if lost else 0.0
    high = float(beta.ppf(0.975, lost + 1, gained)) if gained else 1.0
    return changed * (2 * low - 1) / n, changed * (2 * high - 1) / n


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, standard error of the mean); the SE needs at least two values."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return float(array.mean()), None
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def ratio_interval(
    numerator: float,
    numerator_se: float | None,
    denominator: float,
    denominator_se: float | None,
    z: float = Z95,
) -> tuple[float, float] | None:
    """The 95% Fieller interval of numerator / denominator, two independent estimates with
    their standard errors. None when an SE is unknown, or when the denominator's own
    interval reaches 0: the ratio is then unbounded."""
    if numerator_se is None or denominator_se is None:
        return None
    a, b = numerator, denominator
    scale = b * b - z * z * denominator_se**2
    if scale <= 0:
        return None
    # ≥ 0 in exact arithmetic when scale > 0; rounding can dip below when both SEs are 0
    root = math.sqrt(max(a * a * b * b - scale * (a * a - z * z * numerator_se**2), 0.0))
    return (a * b - root) / scale, (a * b + root) / scale


def paired_ratio_interval(
    numerator: Sequence[float], denominator: Sequence[float], seed: int = 0, resamples: int = 2000
) -> tuple[float, float] | None:
    """The 95% percentile-bootstrap interval of mean(numerator) / mean(denominator), two
    measurements of the same rows (resampled together, so their correlation counts). None
    below two rows, or when the denominator's mean is not clearly above 0 (its own
    bootstrap interval reaches 0): the ratio is then unbounded."""
    top, bottom = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if len(bottom) < 2:
        return None
    picks = np.random.default_rng(seed).integers(0, len(bottom), size=(resamples, len(bottom)))
    means = bottom[picks].mean(axis=1)
    if np.percentile(means, 2.5) <= 0:
        return None
    ratios = top[picks].mean(axis=1) / means
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def rate_ratio_interval(
    count_a: np.ndarray, total_a: int, count_b: np.ndarray, total_b: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per element the exact 95% interval of the ratio of two rates, (count_a / total_a) /
    (count_b / total_b), counts taken as Poisson: given their sum, count_a is binomial with
    p = share of a, and the Clopper-Pearson interval of p maps to the ratio. Finite below
    even when count_b is 0 (where a Fieller interval has no bound), so one count against
    none gives a low bound near 0: little evidence, not a large ratio. Low 0 when count_a
    is 0, high ∞ when count_b is 0 (NaN, NaN when both are 0)."""
    from scipy.stats import beta

    a = np.asarray(count_a, dtype=np.float64)
    b = np.asarray(count_b, dtype=np.float64)
    scale = max(total_b, 1) / max(total_a, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_low = np.where(a > 0, beta.ppf(0.025, np.maximum(a, 1), b + 1), 0.0)
        p_high = np.where(b > 0, beta.ppf(0.975, a + 1, np.maximum(b, 1)), 1.0)
        low = scale * p_low / (1 - p_low)
        high = np.where(b > 0, scale * p_high / (1 - p_high), np.inf)
    neither = (a == 0) & (b == 0)
    return np.where(neither, np.nan, low), np.where(neither, np.nan, high)
