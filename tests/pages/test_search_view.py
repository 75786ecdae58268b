"""The search view: ratios that sort, filters that filter."""

import numpy as np
import pandas as pd

from pages.search_view import filter_view, search_view


def _table() -> pd.DataFrame:
    frame = {"feature": np.arange(3)}
    for variant in ("saebench", "authors"):
        frame[f"forget_freq_{variant}"] = np.array([0.001, 0.2, 0.15])
        frame[f"retain_freq_{variant}"] = np.array([0.0, 0.01, 0.0])
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
