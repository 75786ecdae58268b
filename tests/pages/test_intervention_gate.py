"""AppTest of the Live intervention page's gate: alpha calibrated on retain windows of the
prompts' lengths when asked, and said beside the run."""

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import open_app_page, shown

pytestmark = pytest.mark.model


def test_a_gate_calibrated_on_prompt_length_windows_says_so(small_app_env, monkeypatch):
    app: AppTest = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    next(n for n in app.number_input if n.label == "n").set_value(3).run()
    next(n for n in app.number_input if n.label == "Questions per set (0 = all)").set_value(4)
    next(n for n in app.number_input if n.label == "Loss rows per text").set_value(1)
    next(t for t in app.toggle if t.label == "Known-question filter").set_value(False)
    app.session_state["gate"] = True  # in a form, a toggle counts on submit only
    app.run()
    app.selectbox(key="gate_calibration").set_value("prompt-windows")
    next(b for b in app.button if b.label == "Run").click().run()  # the gate is made first
    said = [shown(c.value) for c in app.caption if "Gate: " in shown(c.value)]
    errors = [shown(e.value) for e in app.error]
    assert said and "retain windows of the MMLU prompts' lengths" in said[0], (said, errors)
