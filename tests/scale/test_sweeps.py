"""Sweeps and screening on a local Ray cluster: every evaluation memoised as the serial path
does it, nothing recomputed, and the result equal to the serial one (computed again with
one torch thread, like each worker)."""

import json
import os
import shutil
import signal
from dataclasses import replace

import pytest
import torch

from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.features.stats import workspace_stats
from core.scale.sweeps import restarts_note, screen_on_ray, sweep_on_ray
from core.selection.frequency import SelectionConfig, select_features
from core.selection.screening import ScreenConfig, screen
from core.sweeps.grid import SweepConfig
from core.sweeps.run import sweep

pytestmark = pytest.mark.model


@pytest.fixture
def evaluator(small_app_ws) -> Evaluator:
    """Tiny settings of their own (loss_context 24), so every file they make is this test's."""
    settings = EvalSettings(question_limit=2, loss_rows=1, loss_context=24, known_filter=False)
    return Evaluator(small_app_ws, settings)


def evals(evaluator: Evaluator) -> set:
    return set(evaluator.folder.glob("*.json")) if evaluator.folder.exists() else set()


def as_written(result: dict) -> dict:
    """The result as its JSON file holds it (a fresh run has tuples where a read has lists)."""
    return json.loads(json.dumps(result))


def recomputed_serially(evaluator, made, tmp_path, serial):
    """Move the files the Ray run made aside, run `serial` with one thread; the result and
    the aside files (without their timestamps) against the serial run's files."""
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in made:
        shutil.move(path, aside / path.name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = serial()
    finally:
        torch.set_num_threads(threads)
    for path in made:
        ray_record, serial_record = (json.loads(p.read_text()) for p in (aside / path.name, path))
        for record in (ray_record, serial_record):
            record.pop("created_at", None)
        assert ray_record == serial_record, path.name
    return result


def untimed(result: dict) -> dict:
    """A sweep's result without the time it was kept at."""
    return {key: value for key, value in result.items() if key != "created_at"}


def test_ray_sweep_memoises_every_point_and_equals_the_serial_sweep(evaluator, pool, tmp_path):
    config = SweepConfig((0.01,), (2,), (30.0, 40.0))
    before = evals(evaluator)
    calls = []
    result = sweep_on_ray(evaluator, config, pool, lambda d, t, p: calls.append((d, t, p)))
    assert [(d, t) for d, t, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 points x 2 splits
    assert {(p["c"], p["questions"]) for _, _, p in calls} == {
        (c, split) for c in (30.0, 40.0) for split in ("report", "selection")
    }
    made = evals(evaluator) - before
    assert len([p for p in made if p.name.startswith("run-")]) == 4
    stamps = {path: path.stat().st_mtime_ns for path in made}
    calls.clear()
    again = sweep_on_ray(evaluator, config, pool, lambda *a: calls.append(a))
    assert untimed(again) == untimed(result)  # each sweep is kept with its own time
    assert calls == [(4, 4, {"memoised": 4})]  # nothing sent again
    assert {path: path.stat().st_mtime_ns for path in made} == stamps
    serial = recomputed_serially(evaluator, made, tmp_path, lambda: sweep(evaluator, config))
    assert untimed(as_written(serial)) == untimed(as_written(result))


def test_ray_screening_equals_the_serial_screening(evaluator, pool, tmp_path):
    chooser = Evaluator(evaluator.ws, replace(evaluator.settings, split="selection"))
    table, _ = workspace_stats(chooser.ws)
    candidates = select_features(table, SelectionConfig(0.01, 2))["feature"].tolist()
    config = ScreenConfig(tuple(candidates), c=25.0, tolerance=1.0)  # every feature kept
    before = evals(chooser)
    result = screen_on_ray(chooser, config, pool)
    assert result["kept"] == candidates and len(result["cumulative"]) == 2
    made = evals(chooser) - before
    assert len([p for p in made if p.name.startswith("run-")]) == 3  # k = 1 is the first single
    serial = recomputed_serially(chooser, made, tmp_path, lambda: screen(chooser, config))
    assert as_written(serial) == as_written(result)


def test_an_actor_killed_mid_sweep_is_restarted_its_points_retried_and_said(evaluator, pool):
    config = SweepConfig((0.01,), (2,), (31.0, 41.0, 51.0))
    before = pool.pids()
    calls = []

    def kill_once(done: int, total: int, point: dict) -> None:
        calls.append((done, total, point))
        if len(calls) == 1:  # both actors hold calls now
            os.kill(before[0], signal.SIGKILL)

    result = sweep_on_ray(evaluator, config, pool, kill_once)
    assert pool.pids()[0] != before[0]  # restarted by Ray
    assert [(d, t) for d, t, _ in calls] == [(i, 6) for i in range(1, 7)]  # every one retried
    said = [restarts_note(p) for _, _, p in calls if "restarts" in p]
    assert said and said[-1] == "; 1 worker restart, evaluations retried"
    assert len(result["points"]) == 3 and all("skipped" not in p for p in result["points"])
