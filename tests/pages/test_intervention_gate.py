"""AppTest of the Live intervention page's gate: alpha calibrated on retain windows of the
prompts' lengths when asked, and said beside the run; a set's kept gate brings its
calibration back to the form."""

import pytest
from streamlit.testing.v1 import AppTest

from core.labels.store import LabelStore
from tests.helpers import open_app_page, shown
from tests.pages.test_intervention import _run_and_wait

pytestmark = pytest.mark.model


def test_a_gate_calibrated_on_prompt_length_windows_says_so(small_app_env, monkeypatch):
    app: AppTest = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    next(n for n in app.number_input if n.label == "n").set_value(3).run()
    app.session_state["gate"] = True  # in a form, a toggle counts on submit only
    app.run()  # so the form's values are set after this run and sent with the submit
    next(n for n in app.number_input if n.label == "Questions per set (0 = all)").set_value(4)
    next(n for n in app.number_input if n.label == "Loss rows per text").set_value(1)
    next(t for t in app.toggle if t.label == "Known-question filter").set_value(False)
    app.selectbox(key="gate_calibration").set_value("prompt-windows")
    _run_and_wait(app)  # the run's thread holds the model's hooks until it ends
    said = [shown(c.value) for c in app.caption if "Gate: " in shown(c.value)]
    errors = [shown(e.value) for e in app.error]
    assert said and "retain windows of the MMLU prompts' lengths" in said[0], (said, errors)


def test_a_set_kept_with_a_window_calibrated_gate_starts_with_that_calibration(
    small_app_env, small_app_ws, monkeypatch
):
    calibration = {"percentile": 95.0, "on": "prompt-windows", "rows": 32, "median_length": 40.0}
    calibration["sae"] = small_app_ws.sae_fingerprint()
    kept = {"alpha": 0.1234, "rule": "per feature", "calibration": calibration}
    LabelStore.for_workspace(small_app_ws).save_set(
        "windowed", [3, 7, 11], selection={"gate": kept}, overwrite=True
    )
    app = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    app.radio[0].set_value("set").run()
    next(s for s in app.selectbox if s.label == "Set").set_value("windowed").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="gate_calibration").value == "prompt-windows"
    said = [shown(c.value) for c in app.caption if "Gate: " in shown(c.value)]
    assert said and "kept with the set 'windowed'" in said[0]
    assert "32 retain windows of the MMLU prompts' lengths (median 40 tokens)" in said[0]
