"""Running a sweep: every planned point evaluated (memoised on disk, so a stopped sweep
resumes and a repeated one costs nothing), the best point chosen on the selection split
and scored on the report split; the sweep kept in the workspace's `sweeps/` for its run
history."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from core.base.records import record_key, write_json
from core.evaluation.evaluator import Evaluator
from core.evaluation.metrics import held_out_score, point_metrics, saebench_score
from core.features.stats import workspace_stats
from core.runtime.jobs import Progress
from core.sweeps.grid import SweepConfig, planned_runs, sweep_settings
from core.sweeps.references import REFERENCE_POINTS
from core.workspace.workspace import Workspace

SWEEP_KIND, SWEEP_VERSION = "unlearning-lens/sweep", 3
SWEEP_FIELDS = {"kind": str, "provenance": dict, "config": dict, "points": list, "questions": str}


def sweep_folder(ws: Workspace) -> Path:
    """Where a workspace keeps its sweeps (for the run history, core.sweeps.history)."""
    return ws.folder / "sweeps"


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
    result = {
        "kind": SWEEP_KIND,
        "version": SWEEP_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": evaluator.provenance() | {"statistics": stats_record},
        "config": asdict(config),
        "points": points,
        "questions": evaluator.settings.split,
        "saebench_score": saebench_score(points),
        "held_out_score": None if chooser is None else held_out_score(points),
        "question_ids": (chooser or evaluator).protocol.split_ids(),
        "reference": REFERENCE_POINTS.get(ws.name, []),
    }
    key = record_key([result["provenance"], result["config"], result["questions"]])
    write_json(sweep_folder(ws) / f"sweep-{key}.json", result)  # the same sweep: one file
    return result
