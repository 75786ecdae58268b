"""AppTest of the Run history page on real runs of the small workspace: the list, two runs
side by side with their paired differences, and a run restored on the intervention page."""

import pytest

from tests.helpers import open_app_page
from tests.sweeps.test_history import kept  # noqa: F401  (the runs, as a fixture)

pytestmark = pytest.mark.model

PAGE = "pages/run_history.py"


def test_list_compare_and_restore_a_run(kept, small_app_env, monkeypatch):  # noqa: F811
    _, _, runs, _ = kept
    first, second = runs[1.0][0], runs[4.0][0]
    at = open_app_page(small_app_env, monkeypatch, PAGE)
    listed = at.dataframe[0].value
    assert {first, second} <= set(listed["run"])
    assert "history pair: 13, 29" in listed["features"].tolist()
    at.selectbox(key="history_a").set_value(first)
    at.selectbox(key="history_b").set_value(second).run()
    assert not at.exception
    paired = at.dataframe[2].value
    assert paired["test"].iloc[0].startswith("McNemar exact p")
    next(s for s in at.selectbox if s.label == "Run").set_value(second).run()
    next(b for b in at.button if b.label == "Restore on the intervention page").click().run()
    assert not at.exception
    assert at.title[0].value == "Live intervention"
    assert at.number_input(key="c").value == 4.0
    assert at.selectbox(key="method").value == "clamp"
    assert at.selectbox(key="set").value == "history pair"
