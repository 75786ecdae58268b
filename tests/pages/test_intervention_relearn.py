"""AppTest of the Live intervention page's relearning panel on the small real workspace: bad
settings are said, not raised; a tiny run goes in the background and shows every arm at each
measured step with its n, and the button is disabled once the result is kept."""

import time

import pytest

from tests.helpers import open_app_page, shown

pytestmark = pytest.mark.model


def _number(app, key: str):
    return next(n for n in app.number_input if n.key == key)


def test_a_tiny_relearning_run_from_the_page(small_app_env, monkeypatch):
    app = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    _number(app, "relearn_rows").set_value(1).run()
    assert any("as many rows as a step takes" in shown(e.value) for e in app.error)
    for key, value in (
        ("relearn_rows", 4),
        ("relearn_steps", 2),
        ("relearn_eval", 2),
        ("relearn_checkpoints", 1),
    ):
        _number(app, key).set_value(value)
    app.run()
    next(b for b in app.button if b.label == "Relearn").click().run()
    deadline = time.monotonic() + 600
    while not any("survives" in d.value.columns for d in app.dataframe):
        assert not app.exception, app.exception
        assert time.monotonic() < deadline, "the relearning run did not finish"
        time.sleep(1)
        app.run()
    table = next(d.value for d in app.dataframe if "survives" in d.value.columns)
    assert list(table["arm"]) == ["relearn"] * 2 + ["control"] * 2 + ["reference"] * 2
    assert list(table["step"]) == [0, 2] * 3 and (table["forget n"] == 2).all()
    assert next(b for b in app.button if b.label == "Relearn").disabled
    assert any("Question accuracy: not measured" in shown(c.value) for c in app.caption)
