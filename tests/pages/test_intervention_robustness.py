"""AppTest of the Live intervention page's DSG and robustness parts on the small real
workspace: a gated run with the k-shot check shows k = 0 and k-shot rows and the gate's
on-rates; a sweep over gated and ungated draws both families."""

import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import open_app_page

pytestmark = pytest.mark.model


def _number(at: AppTest, label: str):
    return next(n for n in at.number_input if n.label == label)


def test_gated_k_shot_run_then_a_sweep_over_the_gate(small_app_env, monkeypatch):
    app = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    _number(app, "n").set_value(2).run()
    _number(app, "Questions per set (0 = all)").set_value(2)
    _number(app, "Loss rows per text").set_value(1)
    _number(app, "k-shot check").set_value(1)
    next(t for t in app.toggle if t.label == "Known-question filter").set_value(False)
    app.toggle(key="gate").set_value(True)
    next(b for b in app.button if b.label == "Run").click().run()
    deadline = time.monotonic() + 600
    while not app.table:
        assert not app.exception, app.exception
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(1)
        app.run()
    table = app.table[0].value
    assert "WMDP-bio, all questions" in table.index
    assert "WMDP-bio, all questions, 1-shot" in table.index
    assert "gate on: MMLU prompts (share of sequences edited)" in table.index
    drill = next(d.value for d in app.dataframe if "flipped" in d.value.columns)
    assert drill["gated"].isin([True, False]).all()  # each prompt: edited by the gate or not
    inputs = {t.label: t for t in app.text_input}
    inputs["Numbers of features"].input("2")
    inputs["c values"].input("0.5")
    inputs["Gate percentiles"].input("off, 95")
    next(b for b in app.button if b.label == "Run sweep").click().run(timeout=600)
    assert not app.exception, app.exception
    points = next(d.value for d in app.dataframe if "gate_percentile" in d.value.columns)
    assert len(points) == 2 and points["gate_percentile"].isna().sum() == 1
    assert points["gate on wmdp"].notna().sum() == 1  # the gated point's on-rate
    names = {trace.name for chart in app.get("plotly_chart") for trace in _traces(chart)}
    assert {"this workspace, ungated", "this workspace, gated at the 95th percentile"} <= names


def _traces(chart) -> list:
    import json
    from types import SimpleNamespace

    figure = json.loads(chart.proto.spec)
    return [SimpleNamespace(name=trace.get("name")) for trace in figure["data"]]
