"""Running a sweep: every planned point evaluated (memoised on disk, so a stopped sweep
resumes and a repeated one costs nothing), the best point chosen on the selection split
and scored on the report split."""

from __future__ import annotations

from dataclasses import asdict

from core.evaluation.evaluator import Evaluator
from core.evaluation.metrics import held_out_score, point_metrics, saebench_score
from core.features.stats import workspace_stats
from core.runtime.jobs import Progress
from core.sweeps.grid import SweepConfig, planned_runs, sweep_settings
from core.sweeps.references import REFERENCE_POINTS


def sweep(evaluator: Evaluator, config: SweepConfig, progress: Progress | None = None) -> dict:
    """Every (threshold, n, c, gate) point's metrics on the evaluator's questions, the scores
    and the provenance. On the report split each point is also measured on the selection
    split (`point["selection"]`), so the best point is chosen there and scored on the report
    split (`held_out_score`); `saebench_score` is SAEBench's protocol, best of the points on
    the questions they are scored on (optimistic). `question_ids` are those the best point
    is chosen on."""
    ws = evaluator.ws
    runs = planned_runs(evaluator, config)
    chooser = None
    if evaluator.settings.split == "report":
        chooser = Evaluator(ws, sweep_settings(evaluator.settings)[1])
    _, stats_record = workspace_stats(ws)
    points = []
    for done, run in enumerate(runs, start=1):
        point = dict(run.point)
        if run.intervention is not None:
            point |= point_metrics(evaluator.evaluate(run.intervention)["metrics"])
            if chooser is not None:
                point["selection"] = point_metrics(chooser.evaluate(run.intervention)["metrics"])
        points.append(point)
        if progress:
            progress(done, len(runs), point)
    return {
        "kind": "unlearning-lens/sweep",
        "version": 3,
        "provenance": evaluator.provenance() | {"statistics": stats_record},
        "config": asdict(config),
        "points": points,
        "questions": evaluator.settings.split,
        "saebench_score": saebench_score(points),
        "held_out_score": None if chooser is None else held_out_score(points),
        "question_ids": (chooser or evaluator).protocol.split_ids(),
        "reference": REFERENCE_POINTS.get(ws.name, []),
    }
