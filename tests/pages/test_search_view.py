"""The search view: ratios that sort, filters that filter."""

import numpy as np
import pandas as pd

from pages.search_view import filter_view, label_edits, search_view


def _table() -> pd.DataFrame:
    frame = {"feature": np.arange(3)}
    for variant in ("saebench", "authors"):
        frame[f"forget_freq_{variant}"] = np.array([0.001, 0.2, 0.15])
        frame[f"retain_freq_{variant}"] = np.array([0.0, 0.01, 0.0])
        frame[f"forget_count_{variant}"] = np.array([1, 200, 150])  # of 1,000 tokens
        frame[f"retain_count_{variant}"] = np.array([0, 10, 0])
        frame[f"ratio_{variant}"] = frame[f"forget_freq_{variant}"] / frame[
            f"retain_freq_{variant}"
        ].clip(1e-300)
        frame[f"forget_max_{variant}"] = np.ones(3)
        frame[f"retain_max_{variant}"] = np.ones(3)
    return pd.DataFrame(frame)


def test_a_feature_never_seen_on_retain_text_ranks_by_its_forget_frequency():
    view = search_view(_table(), {}, {1}, "saebench", floor=0.005)
    assert np.isfinite(view["ratio"]).all()
    order = view.sort_values("ratio", ascending=False)["feature"].tolist()
    assert order == [2, 1, 0]  # 0.15 / 0.005 > 0.2 / 0.01 > 0.001 / 0.005
    assert filter_view(view, only_in_set=True)["feature"].tolist() == [1]


def test_effects_join_each_beside_its_error_and_unmeasured_stays_empty():
    from core.effects.table import FeatureEffects
    from pages.effect_views import with_effects

    rng = np.random.default_rng(0)
    arrays = {
        "estimated_forget": rng.normal(1.0, 0.1, (4, 3)),
        "estimated_retain": rng.normal(0.0, 0.1, (4, 3)),
        "candidates": np.array([1]),
        "measured_forget": rng.normal(1.0, 0.1, (4, 1)),
        "measured_retain": rng.normal(0.0, 0.1, (4, 1)),
    }
    effects = FeatureEffects(arrays, {}).table()
    view = with_effects(search_view(_table(), {}, set(), "saebench"), effects)
    assert np.allclose(view["forget_effect"], arrays["estimated_forget"].mean(0))
    assert np.allclose(view["forget_effect_se"], arrays["estimated_forget"].std(0, ddof=1) / 2)
    assert view["measured_forget"].isna().tolist() == [True, False, True]
    unbounded = view["effect_ratio_low"].isna()  # retain effects near 0: no interval
    assert unbounded.all() and view["effect_ratio"].notna().all()
    assert with_effects(view, None) is view


def test_ranked_by_the_ratio_interval_a_single_firing_against_none_comes_last():
    """The point ratio ranks feature 0 (1 forget firing, none on retain) above feature 1 when
    the floor is small; the interval's low end puts it last."""
    view = search_view(_table(), {}, set(), "saebench", 1e-5, {"forget": 1000, "retain": 1000})
    assert view.sort_values("ratio", ascending=False)["feature"].tolist()[:2] == [2, 0]
    ranked = view.sort_values("ratio_low", ascending=False)["feature"].tolist()
    assert ranked == [2, 1, 0]
    assert view.loc[0, "ratio_low"] < 0.05
    assert search_view(_table(), {}, set(), "saebench")["ratio_low"].isna().all()


def test_label_edits_are_the_changed_rows_only():
    before = pd.DataFrame(
        {
            "feature": np.arange(5),
            "label": ["a", "", "c", "d", ""],
            "tags": ["x", "", "y, z", "", ""],
            "note": ["", "", "n", "", ""],
        }
    )
    after = before.copy()
    after["label"] = after["label"].astype(object)
    after.loc[1, "label"] = "new"
    after.loc[2, "tags"] = "y, w ,"
    after.loc[3, "label"] = None  # a cleared cell in the data editor
    after.loc[4, "note"] = ""  # unchanged
    assert label_edits(before, after) == {
        1: {"label": "new"},
        2: {"tags": ["y", "w"]},
        3: {"label": ""},
    }
    assert label_edits(before, before.copy()) == {}
