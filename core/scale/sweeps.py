"""Sweeps and screening on Ray: every evaluation a sweep (or a screening) makes is computed
on the actors and memoised exactly as the serial path memoises it, then the serial `sweep`
or `screen` reads every point from the memo, so the result is the serial one.

The known filter and the clean baselines come first (once, fanned out), so actors never race
on them; evaluations already memoised (by any worker, any earlier run) are not sent again.
"""

from __future__ import annotations

from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.protocol import refuse_report_split
from core.interventions.edits import Intervention, make_intervention
from core.runtime.jobs import Progress
from core.scale.cluster import WorkerPool, connect
from core.scale.known import known_on_ray
from core.scale.worker import WorkspaceRef
from core.selection.screening import ScreenConfig, judged, screen
from core.sweeps.grid import SweepConfig, planned_runs, sweep_settings
from core.sweeps.run import sweep

Run = tuple[Evaluator, Intervention, dict]  # evaluated by, what, the point it belongs to


def sweep_on_ray(
    evaluator: Evaluator, config: SweepConfig, pool: WorkerPool, progress: Progress | None = None
) -> dict:
    """core.sweeps.run.sweep with its evaluations (each point on each split it is
    measured on) computed on `pool`; `progress` counts evaluations."""
    ws = evaluator.ws
    runs = planned_runs(evaluator, config)
    evaluators = [Evaluator(ws, settings) for settings in sweep_settings(evaluator.settings)]
    prepare(evaluators, pool)
    todo = [
        (ev, run.intervention, run.point | {"questions": ev.settings.split})
        for run in runs
        if run.intervention is not None
        for ev in evaluators
    ]
    evaluate_on_ray(todo, pool, progress)
    return sweep(evaluator, config)


def screen_on_ray(
    evaluator: Evaluator, config: ScreenConfig, pool: WorkerPool, progress: Progress | None = None
) -> dict:
    """core.selection.screening.screen with its evaluations computed on `pool`: the singles
    first, then the kept features' prefixes; `progress` counts each phase apart."""
    config.check()
    refuse_report_split(evaluator.settings, "Screening")
    ws, c, method, skip_bos = evaluator.ws, config.c, config.method, config.skip_bos
    candidates = list(config.candidates)
    make_intervention(ws, candidates, [c] * len(candidates), method, 1.0, skip_bos)  # checks

    def run(features: list[int], point: dict) -> Run:
        iv = make_intervention(ws, features, [c] * len(features), method, 1.0, skip_bos)
        return evaluator, iv, point

    prepare([evaluator], pool)
    singles = [run([f], {"feature": f}) for f in candidates]
    evaluate_on_ray(singles, pool, progress)
    kept = []
    for feature, (_, iv, _) in zip(candidates, singles, strict=True):
        if judged(evaluator.evaluate(iv)["metrics"], config.tolerance)["kept"]:  # the memo
            kept.append(feature)
    prefixes = [run(kept[:k], {"k": k, "features": kept[:k]}) for k in range(1, len(kept) + 1)]
    evaluate_on_ray(prefixes, pool, progress)
    return screen(evaluator, config)


def prepare(evaluators: list[Evaluator], pool: WorkerPool) -> None:
    """The known filter (when the settings run it) and each evaluator's clean baseline,
    before any evaluation needs them."""
    first = evaluators[0]
    if first.settings.known_filter:
        known_on_ray(first, pool)
    ref = WorkspaceRef.of(first.ws)
    calls = [
        ("baseline", (ref, ev.settings)) for ev in evaluators if not ev.baseline_path().exists()
    ]
    pool.run(calls, lambda *_: None)


def evaluate_on_ray(runs: list[Run], pool: WorkerPool, progress: Progress | None) -> None:
    """Evaluate (and memoise) every run not memoised yet; memoised ones count as done."""
    total = len(runs)
    todo = [run for run in runs if run[0].cached(run[1]) is None]
    done = total - len(todo)
    if progress is not None and done:
        progress(done, total, {"memoised": done})
    ref = WorkspaceRef.of(runs[0][0].ws) if runs else None

    restarts = 0

    def restarted(_: int) -> None:
        nonlocal restarts
        restarts += 1

    def finished(index: int, _: None) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            point = todo[index][2]
            progress(done, total, point | {"restarts": restarts} if restarts else point)

    calls = [("evaluate", (ref, ev.settings, iv)) for ev, iv, _ in todo]
    pool.run(calls, finished, restarted)
    if any(ev.cached(iv) is None for ev, iv, _ in todo):
        raise UserError(
            f"The workers' evaluations are not in {runs[0][0].folder} here: sweeps and "
            "screening on Ray need the cache folder shared by every node "
            "(docs/scale-out.md); the results are in the workers' cache folders."
        )


def restarts_note(point: dict) -> str:
    """What a progress line adds once workers were restarted (their calls retried)."""
    count = point.get("restarts", 0)
    return f"; {count} worker restart{'s' * (count > 1)}, evaluations retried" if count else ""


def sweep_at(
    address: str | None,
    evaluator: Evaluator,
    config: SweepConfig,
    progress: Progress | None = None,
) -> dict:
    """`sweep_on_ray` on the cluster at `address` (None: Ray on this machine) with a pool of
    its free workers, taken down after (what the page's "Run on Ray" does)."""
    connect(address)
    with WorkerPool() as pool:
        return sweep_on_ray(evaluator, config, pool, progress)
