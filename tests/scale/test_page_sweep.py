"""The intervention page's sweep with "Run on Ray": the page makes a pool of the cluster's
free workers, the points are the serial sweep's (read back from the memo, nothing new)."""

import time

import pytest

from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.sweeps.grid import SweepConfig
from core.sweeps.run import sweep
from tests.helpers import open_app_page

pytestmark = pytest.mark.model


def test_a_sweep_run_on_ray_from_the_page_equals_the_serial_sweep(
    ray_cluster, pool, small_app_env, small_app_ws, monkeypatch
):
    app = open_app_page(small_app_env, monkeypatch, "pages/intervention.py", timeout=600)
    next(n for n in app.number_input if n.label == "n").set_value(2).run()
    next(n for n in app.number_input if n.label == "Questions per set (0 = all)").set_value(2)
    next(n for n in app.number_input if n.label == "Loss rows per text").set_value(1)
    next(t for t in app.toggle if t.label == "Known-question filter").set_value(False)
    next(b for b in app.button if b.label == "Run").click().run()  # the form's settings apply
    deadline = time.monotonic() + 600
    while not app.table:  # its run, in the background
        assert not app.exception, app.exception
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(1)
        app.run()
    inputs = {t.label: t for t in app.text_input}
    inputs["Numbers of features"].input("2, 3")
    inputs["c values"].input("0.7")
    next(t for t in app.toggle if t.label == "Run on Ray").set_value(True)
    next(b for b in app.button if b.label == "Run sweep").click().run(timeout=600)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    points = next(d.value for d in app.dataframe if "gate_percentile" in d.value.columns)
    assert list(points["n"]) == [2, 3] and points["wmdp_all_accuracy"].notna().all()
    settings = EvalSettings(question_limit=2, loss_rows=1, known_filter=False)
    evaluator = Evaluator(small_app_ws, settings)
    made = set(evaluator.folder.glob("*.json"))
    serial = sweep(evaluator, SweepConfig(ns=(2, 3), cs=(0.7,)))
    assert set(evaluator.folder.glob("*.json")) == made  # every point read from the memo
    assert [p["wmdp_all_accuracy"] for p in serial["points"]] == list(points["wmdp_all_accuracy"])
    assert [p["loss_added"] for p in serial["points"]] == list(points["loss_added"])
