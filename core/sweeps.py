"""Sweeps over retain thresholds x number of features x clamp sizes (METHOD §4–§8), and the
paper's screening of candidate features (METHOD §4, second mode).

Each point is an `Evaluator.evaluate` run, memoised on disk, so a sweep that stops part way
resumes where it stopped and a repeated sweep costs nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from core.evaluation import Evaluator, make_intervention, saebench_score
from core.stats import select_features, workspace_stats

# METHOD §8: the authors' stored results for gemma-2-2b-it with Gemma Scope 16k, thr 0.01.
REFERENCE_POINTS = {
    "gemma-2-2b-it-L3": [
        {"n": 10, "c": 50, "wmdp": 0.584, "mmlu": 0.963, "loss_added": -0.0035},
        {"n": 20, "c": 50, "wmdp": 0.475, "mmlu": 0.923, "loss_added": 0.021},
        {"n": None, "c": None, "wmdp": 0.441, "mmlu": 1.000, "loss_added": 0.011, "rmu": True},
    ],
    "gemma-2-2b-it-L7": [
        {"n": 10, "c": 50, "wmdp": 0.787, "mmlu": 0.997, "loss_added": -0.007},
        {"n": 20, "c": 100, "wmdp": 0.421, "mmlu": 0.957, "loss_added": 0.019},
    ],
}
POINT_METRICS = (
    "wmdp_known_accuracy",
    "wmdp_all_accuracy",
    "mmlu_known_accuracy",
    "mmlu_all_accuracy",
    "loss_added",
    "forget_loss_added",
    "retain_loss_added",
    "selectivity",
)


def _metrics(evaluator: Evaluator, features: list[int], c: float, method: str, skip_bos: bool):
    """The metrics of one memoised evaluation: every feature edited by `method` at c."""
    iv = make_intervention(evaluator.ws, features, [c] * len(features), method, 1.0, skip_bos)
    return evaluator.evaluate(iv)["metrics"]


def _point(metrics: dict) -> dict:
    return {name: metrics.get(name) for name in POINT_METRICS}


def sweep(
    evaluator: Evaluator,
    thresholds: list[float],
    ns: list[int],
    cs: list[float],
    variant: str = "saebench",
    method: str = "clamp",
    skip_bos: bool = True,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Every (threshold, n, c) point's metrics, the SAEBench score and the provenance."""
    ws = evaluator.ws
    table, stats_record = workspace_stats(ws)
    grid = list(itertools.product(thresholds, ns, cs))
    points = []
    for done, (threshold, n, c) in enumerate(grid, start=1):
        features = select_features(table, threshold, n, variant)["feature"].tolist()
        point = {"threshold": threshold, "n": n, "c": c, "features": features}
        if features:
            point |= _point(_metrics(evaluator, features, c, method, skip_bos))
        else:
            point["skipped"] = f"no feature has retain frequency < {threshold}"
        points.append(point)
        if progress:
            progress(done, len(grid), point)
    return {
        "kind": "unlearning-lens/sweep",
        "version": 1,
        "provenance": evaluator.provenance() | {"statistics": stats_record},
        "grid": {
            "thresholds": thresholds,
            "n": ns,
            "c": cs,
            "variant": variant,
            "method": method,
            "skip_bos": skip_bos,
        },
        "points": points,
        "saebench_score": saebench_score(points),
        "reference": REFERENCE_POINTS.get(ws.name, []),
    }


def screen(
    evaluator: Evaluator,
    candidates: list[int],
    c: float,
    tolerance: float = 0.0,
    method: str = "clamp",
    skip_bos: bool = True,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Each candidate clamped alone, kept when the side-effect accuracy (MMLU-4 pooled, known
    questions when there are any) drops by at most `tolerance`; then the kept ones added
    cumulatively in the candidates' order (first k, k = 1, 2, ...)."""
    make_intervention(evaluator.ws, candidates, [c] * len(candidates), method, 1.0, skip_bos)
    total = len(candidates)  # all checked above: a bad id or c fails before any run
    singles: list[dict] = []
    kept: list[int] = []
    for done, feature in enumerate(candidates, start=1):
        metrics = _metrics(evaluator, [feature], c, method, skip_bos)
        side = "known" if metrics["mmlu_known_n"] else "all"
        before, after = metrics[f"mmlu_{side}_baseline"], metrics[f"mmlu_{side}_accuracy"]
        drop = None if before is None or after is None else before - after
        single = {"feature": feature, "side_questions": side, "side_drop": drop}
        single |= _point(metrics)
        single["kept"] = drop is not None and drop <= tolerance
        singles.append(single)
        if single["kept"]:
            kept.append(feature)
        if progress:
            progress(done, total, single)
    cumulative = []
    for k in range(1, len(kept) + 1):
        metrics = _metrics(evaluator, kept[:k], c, method, skip_bos)
        point = {"k": k, "features": kept[:k]} | _point(metrics)
        cumulative.append(point)
        if progress:
            progress(k, len(kept), point)
    return {
        "kind": "unlearning-lens/screen",
        "version": 1,
        "provenance": evaluator.provenance(),
        "rule": {"c": c, "method": method, "tolerance": tolerance, "skip_bos": skip_bos},
        "singles": singles,
        "kept": kept,
        "cumulative": cumulative,
    }
