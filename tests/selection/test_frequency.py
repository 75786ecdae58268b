"""The selection config refuses what cannot select, and its record is one schema for the
page, the CLI and saved sets."""

import numpy as np
import pandas as pd
import pytest

from core.errors import UserError
from core.selection.frequency import (
    DSGSelectionConfig,
    SelectionConfig,
    reselect,
    select_dsg,
    select_features,
    selection_record,
)


def _table() -> pd.DataFrame:
    frame = {"feature": np.arange(4)}
    for variant in ("saebench", "authors"):
        frame[f"forget_freq_{variant}"] = np.array([0.5, 0.4, 0.3, 0.0])
        frame[f"retain_freq_{variant}"] = np.array([0.0, 0.02, 0.001, 0.0])
    return pd.DataFrame(frame)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SelectionConfig(n=0), "n .* ≥ 1"),
        (SelectionConfig(n=2.5), "n .* whole number"),
        (SelectionConfig(threshold=-0.1), r"frequency in \[0, 1\]"),
        (SelectionConfig(threshold=float("nan")), "must be a number"),
        (SelectionConfig(variant="mine"), "variant must be one of"),
    ],
    ids=["n-zero", "n-fraction", "threshold-negative", "threshold-nan", "variant"],
)
def test_bad_selection_is_a_user_error(config, message):
    with pytest.raises(UserError, match=message):
        select_features(_table(), config)


def test_record_carries_the_config_verbatim_and_what_was_changed_by_hand():
    config = SelectionConfig(threshold=0.01, n=2)
    chosen = select_features(_table(), config)["feature"].tolist()
    assert chosen == [0, 2]
    statistics = {
        "forget": {"tokens": {"saebench": 100, "authors": 128}},
        "retain": {"tokens": {"saebench": 90, "authors": 128}},
    }
    record = selection_record(config, chosen, statistics, features=[0, 3])
    assert record["config"] == {"threshold": 0.01, "n": 2, "variant": "saebench"}
    assert record["features"] == [0, 3] and record["selected"] == [0, 2]
    assert record["added_by_hand"] == [3] and record["removed_by_hand"] == [2]
    assert record["tokens"] == {"forget": 100, "retain": 90}


def test_a_new_selection_keeps_what_was_added_or_removed_by_hand():
    previous, current = [1, 2, 3], [1, 3, 9]  # 2 removed, 9 added by hand
    assert reselect(previous, current, [1, 2, 3, 4, 5]) == [1, 3, 4, 5, 9]
    assert reselect(previous, current, [9, 1]) == [9, 1]
    assert reselect([], [], [4, 5]) == [4, 5]


def _importance_table() -> pd.DataFrame:
    """Five features: statistic = mean × freq on each corpus."""
    frame = {"feature": np.arange(5)}
    for variant in ("saebench", "authors"):
        frame[f"forget_freq_{variant}"] = np.array([0.5, 0.4, 0.3, 0.2, 0.0])
        frame[f"forget_mean_{variant}"] = np.array([1.0, 2.0, 1.0, 1.0, 0.0])
        frame[f"retain_freq_{variant}"] = np.array([0.5, 0.01, 0.0, 0.1, 0.0])
        frame[f"retain_mean_{variant}"] = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
    return pd.DataFrame(frame)


def test_dsg_selection_is_method_10_on_a_table_with_a_known_answer():
    table = _importance_table()
    # forget importance: .25 .64 .09 .04 0; retain: .25 1e-4 0 .01 0; ratio: 1, 6400, 9e19, 4, 0
    chosen = select_dsg(table, DSGSelectionConfig(ratio_percentile=60, n=10))
    assert chosen["feature"].tolist() == [1, 2]  # ranked by forget importance
    assert chosen["forget_importance"].tolist() == pytest.approx([0.64, 0.09])
    everything = select_dsg(table, DSGSelectionConfig(0, 100, 0, n=10))
    assert everything["feature"].tolist() == [1, 0, 2, 3]  # never-firing feature 4 dropped
    assert select_dsg(table, DSGSelectionConfig(0, 100, 0, n=2))["rank"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "config",
    [DSGSelectionConfig(forget_percentile=-1), DSGSelectionConfig(ratio_percentile=101)],
    ids=["below-0", "above-100"],
)
def test_dsg_percentiles_outside_0_100_are_user_errors(config):
    with pytest.raises(UserError, match=r"in \[0, 100\]"):
        select_dsg(_importance_table(), config)
