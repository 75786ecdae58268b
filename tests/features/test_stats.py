"""Selection per METHOD §4 on constructed tables: ties, the threshold boundary, n."""

import os

import numpy as np
import pandas as pd
import pytest

from core.cache.store import SparseActivationStore
from core.features.stats import (
    VARIANTS,
    _counted,
    _segment_max,
    _segment_sum,
    corpus_stats,
    feature_frequency,
    feature_histogram,
    workspace_stats,
)
from core.selection.frequency import SelectionConfig, select_features


def table(forget, retain, variant="saebench") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": np.arange(len(forget)),
            f"forget_freq_{variant}": forget,
            f"retain_freq_{variant}": retain,
        }
    )


FORGET = [0.5, 0.5, 0.3, 0.2, 0.0, 0.9]
RETAIN = [0.009, 0.0, 0.01, 0.0, 0.0, 0.02]


@pytest.mark.parametrize(
    ("threshold", "n", "expected"),
    [
        (0.01, 2, [0, 1]),  # tie at 0.5: lower id first
        (0.01, 10, [0, 1, 3]),  # retain 0.01 is not < 0.01; zero scores never kept
        (0.0100001, 10, [0, 1, 2, 3]),  # just above the boundary admits feature 2
        (0.001, 10, [1, 3]),
        (1.0, 1, [5]),
    ],
    ids=["tie", "boundary-excluded", "boundary-included", "strict", "no-retain-limit"],
)
def test_selection_follows_method_4(threshold, n, expected):
    chosen = select_features(table(FORGET, RETAIN), SelectionConfig(threshold, n))
    assert chosen["feature"].tolist() == expected
    assert chosen["rank"].tolist() == list(range(1, len(expected) + 1))
    assert (chosen["score"] > 0).all()


def test_selection_uses_the_chosen_variant():
    both = table(FORGET, RETAIN).join(
        table([0, 0, 0, 0, 0.1, 0], [0] * 6, "authors").drop(columns="feature")
    )
    assert select_features(both, SelectionConfig(0.01, 5, "authors"))["feature"].tolist() == [4]


def test_segment_reductions_handle_empty_segments():
    indptr = np.array([0, 0, 2, 2, 5, 5])
    values = np.array([1.0, 3.0, 2.0, 7.0, 0.5])
    assert _segment_sum(indptr, values).tolist() == [0.0, 4.0, 0.0, 9.5, 0.0]
    assert _segment_max(indptr, values).tolist() == [0.0, 3.0, 0.0, 7.0, 0.0]


@pytest.mark.model
def test_histogram_counts_the_positions_the_frequencies_count(small_app_ws):
    ws = small_app_ws
    table, _ = workspace_stats(ws)
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    for feature in table.nlargest(3, "forget_count_saebench")["feature"]:
        edges, counts = feature_histogram(cache, int(feature))
        assert counts.sum() == table.loc[feature, "forget_count_saebench"]
        assert np.all(np.diff(edges) > 0) and edges[0] == 0


@pytest.mark.model
def test_a_frequency_interval_is_the_table_frequency_clustered_by_row(small_app_ws):
    ws = small_app_ws
    table, _ = workspace_stats(ws)
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    tokens = np.asarray(cache.tokens())
    counted = ~np.isin(tokens, cache.special_token_ids())
    for feature in table.nlargest(2, "forget_count_saebench")["feature"]:
        found = feature_frequency(cache, int(feature))
        assert found.freq == pytest.approx(table.loc[feature, "forget_freq_saebench"])
        # per row, from the feature's dense activations: fires and counted positions
        dense = np.zeros(tokens.size, dtype=bool)
        dense[cache.feature(int(feature))[0]] = True
        fires = (dense.reshape(tokens.shape) & counted).sum(axis=1)
        n = counted.sum(axis=1)
        rows = len(n)
        se = np.sqrt(((fires - found.freq * n) ** 2).sum() * rows / (rows - 1)) / n.sum()
        assert (found.low, found.high) == pytest.approx(
            (max(found.freq - 1.959964 * se, 0), found.freq + 1.959964 * se), rel=1e-5
        )
        assert found.fires == fires.sum() and found.tokens == n.sum() and found.rows == rows


@pytest.mark.model
def test_statistics_are_counted_once_per_version_of_the_cache(small_app_ws):
    ws = small_app_ws
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")
    final = cache.rows_final()
    first = corpus_stats(cache)
    assert corpus_stats(SparseActivationStore.for_workspace(ws, "retain_corpus")) is first
    for half in (corpus_stats(cache, final // 2), _counted(cache, final // 2, final)):
        assert half is not first and half.rows == final // 2
    afresh = _counted(cache, final, final)
    for kind in ("count", "mean", "max"):
        for variant in VARIANTS:
            assert np.array_equal(getattr(first, kind)[variant], getattr(afresh, kind)[variant])
    assert first.tokens == afresh.tokens
    value = cache.csc_dir / "value.npy"
    os.utime(value, ns=(value.stat().st_atime_ns, value.stat().st_mtime_ns + 10**9))
    again = corpus_stats(cache)  # the cache's files changed: counted afresh
    assert again is not first and np.array_equal(again.count["saebench"], first.count["saebench"])
    pd.testing.assert_frame_equal(workspace_stats(ws)[0], workspace_stats(ws)[0])


def test_a_histogram_spans_its_data_and_is_log_only_across_decades():
    from core.features.stats import HISTOGRAM_EDGES, histogram_span

    def counts(values):
        return np.histogram(values, bins=HISTOGRAM_EDGES)[0]

    low, high, log = histogram_span(HISTOGRAM_EDGES, [counts([0.15, 0.4]), counts([0.7])])
    assert 0.1 <= low <= 0.15 and 0.7 <= high <= 1.0 and not log  # the 0.15-0.7
    assert histogram_span(HISTOGRAM_EDGES, [counts([0.02, 40.0]), counts([])])[2]
    assert histogram_span(HISTOGRAM_EDGES, [counts([]), counts([])]) is None
