"""Sweeps over retain thresholds x number of features x clamp sizes (METHOD §4–§8), and the
paper's screening of candidate features (METHOD §4, second mode).

Each point is an `Evaluator.evaluate` run, memoised on disk, so a sweep that stops part way
resumes where it stopped and a repeated sweep costs nothing.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.metrics import held_out_score, pareto_axes, saebench_score
from core.evaluation.settings import refuse_report_split
from core.features.selection import SelectionConfig, select_features
from core.features.stats import workspace_stats
from core.interventions import METHODS, make_intervention

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
    "wmdp_known_n",
    "wmdp_all_n",
    "mmlu_known_n",
    "mmlu_all_n",
    "wmdp_known_accuracy_ci",
    "wmdp_all_accuracy_ci",
    "mmlu_known_accuracy_ci",
    "mmlu_all_accuracy_ci",
    "loss_added",
    "loss_added_se",
    "forget_loss_added",
    "retain_loss_added",
    "selectivity",
)


Progress = Callable[[int, int, dict], None]  # (done, total, the point just measured)


def parse_numbers(text: str, what: str, kind: type = float) -> tuple:
    """Numbers separated by commas or spaces ("0.001, 0.01"); a UserError naming `what`
    for anything else."""
    parts = [part for part in re.split(r"[,\s]+", text.strip()) if part]
    try:
        return tuple(kind(part) for part in parts)
    except ValueError as exc:
        kinds = "whole numbers" if kind is int else "numbers"
        raise UserError(f"{what} must be {kinds} separated by commas, not {text!r}.") from exc


def _check_edit(method: str, values: tuple[float, ...]) -> None:
    if method not in METHODS:
        raise UserError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
    if not values:
        raise UserError("Give at least one c value.")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise UserError(f"c must be a finite number ≥ 0, not {bad[0]!r}.")


@dataclass(frozen=True)
class SweepConfig:
    """A grid over the paper's selection and the clamp size (METHOD §4–§8).

    Args:
        thresholds: retain-frequency thresholds of the selection.
        ns: numbers of features selected.
        cs: clamp sizes c (or scale m), applied to every selected feature.
        variant: how positions are counted for the selection ("saebench" or "authors").
        method: a key of `interventions.METHODS`.
        skip_bos: leave position 0 alone (SAEBench) rather than edit it too (the authors).
    """

    thresholds: tuple[float, ...] = (0.01,)
    ns: tuple[int, ...] = (10, 20)
    cs: tuple[float, ...] = (20.0, 50.0)
    variant: str = "saebench"
    method: str = "clamp"
    skip_bos: bool = True

    @classmethod
    def from_text(cls, thresholds: str, ns: str, cs: str, **options) -> SweepConfig:
        """The grid as typed on the page or the command line: comma-separated lists."""
        return cls(
            parse_numbers(thresholds, "Retain thresholds"),
            parse_numbers(ns, "Numbers of features", int),
            parse_numbers(cs, "c values"),
            **options,
        )

    def check(self) -> None:
        if not self.thresholds or not self.ns:
            raise UserError("Give at least one retain threshold and one number of features.")
        for threshold, n in itertools.product(self.thresholds, self.ns):
            SelectionConfig(threshold, n, self.variant).check()
        _check_edit(self.method, self.cs)

    def points(self) -> list[tuple[float, int, float]]:
        return list(itertools.product(self.thresholds, self.ns, self.cs))


@dataclass(frozen=True)
class ScreenConfig:
    """The paper's screening (METHOD §4, second mode): each candidate alone, then the kept
    ones cumulatively.

    Args:
        candidates: feature ids, in the order they are added up.
        c: the clamp size (or scale m) every candidate gets.
        tolerance: the largest drop of side-effect accuracy (a fraction) a kept feature
            may cause alone.
        method: a key of `interventions.METHODS`.
        skip_bos: leave position 0 alone (SAEBench) rather than edit it too (the authors).
    """

    candidates: tuple[int, ...]
    c: float = 20.0
    tolerance: float = 0.0
    method: str = "clamp"
    skip_bos: bool = True

    def check(self) -> None:
        if not self.candidates:
            raise UserError("No candidate features to screen.")
        _check_edit(self.method, (self.c,))
        if not math.isfinite(self.tolerance) or not -1 <= self.tolerance <= 1:
            raise UserError(f"The tolerance is an accuracy drop in [-1, 1], not {self.tolerance}.")


def _metrics(
    evaluator: Evaluator, features: list[int], c: float, method: str, skip_bos: bool
) -> dict:
    """The metrics of one memoised evaluation: every feature edited by `method` at c."""
    iv = make_intervention(evaluator.ws, features, [c] * len(features), method, 1.0, skip_bos)
    return evaluator.evaluate(iv)["metrics"]


def _point(metrics: dict) -> dict:
    return {name: metrics.get(name) for name in POINT_METRICS}


def sweep(evaluator: Evaluator, config: SweepConfig, progress: Progress | None = None) -> dict:
    """Every (threshold, n, c) point's metrics on the evaluator's questions, the scores and
    the provenance. On the report split each point is also measured on the selection split
    (`point["selection"]`), so the best point is chosen there and scored on the report
    split (`held_out_score`); `saebench_score` is SAEBench's protocol, best of the points on
    the questions they are scored on (optimistic)."""
    config.check()
    ws = evaluator.ws
    chooser = None
    if evaluator.settings.split == "report":
        chooser = Evaluator(ws, replace(evaluator.settings, split="selection"))
    table, stats_record = workspace_stats(ws)
    grid = config.points()
    points = []
    for done, (threshold, n, c) in enumerate(grid, start=1):
        selection = SelectionConfig(threshold, n, config.variant)
        features = select_features(table, selection)["feature"].tolist()
        point = {"threshold": threshold, "n": n, "c": c, "features": features}
        if features:
            point |= _point(_metrics(evaluator, features, c, config.method, config.skip_bos))
            if chooser is not None:
                chosen = _metrics(chooser, features, c, config.method, config.skip_bos)
                point["selection"] = _point(chosen)
        else:
            point["skipped"] = f"no feature has retain frequency < {threshold}"
        points.append(point)
        if progress:
            progress(done, len(grid), point)
    return {
        "kind": "unlearning-lens/sweep",
        "version": 2,
        "provenance": evaluator.provenance() | {"statistics": stats_record},
        "config": asdict(config),
        "points": points,
        "questions": evaluator.settings.split,
        "saebench_score": saebench_score(points),
        "held_out_score": None if chooser is None else held_out_score(points),
        "reference": REFERENCE_POINTS.get(ws.name, []),
    }


def side_drop(metrics: dict) -> tuple[str, float | None]:
    """The side-effect accuracy drop screening judges by: on the known MMLU questions when
    their accuracy is measured (enough of them), else on all; None when neither is."""
    side = "known" if metrics["mmlu_known_accuracy"] is not None else "all"
    before, after = metrics[f"mmlu_{side}_baseline"], metrics[f"mmlu_{side}_accuracy"]
    return side, None if before is None or after is None else before - after


def screen(evaluator: Evaluator, config: ScreenConfig, progress: Progress | None = None) -> dict:
    """Each candidate clamped alone, kept when the side-effect accuracy (MMLU-4 pooled, known
    questions when there are any) drops by at most the tolerance; then the kept ones added
    cumulatively in the candidates' order (first k, k = 1, 2, ...)."""
    config.check()
    refuse_report_split(evaluator, "Screening")
    c, method, skip_bos = config.c, config.method, config.skip_bos
    candidates = list(config.candidates)
    make_intervention(evaluator.ws, candidates, [c] * len(candidates), method, 1.0, skip_bos)
    total = len(candidates)  # all checked above: a bad id or c fails before any run
    singles: list[dict] = []
    kept: list[int] = []
    for done, feature in enumerate(candidates, start=1):
        metrics = _metrics(evaluator, [feature], c, method, skip_bos)
        side, drop = side_drop(metrics)
        single = {"feature": feature, "side_questions": side, "side_drop": drop}
        single |= _point(metrics)
        single["kept"] = drop is not None and drop <= config.tolerance
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
        "version": 2,
        "provenance": evaluator.provenance(),
        "config": asdict(config),
        "questions": evaluator.settings.split,
        "singles": singles,
        "kept": kept,
        "cumulative": cumulative,
    }


def _interval_error(points: list[dict], key: str) -> dict | None:
    """Plotly-style asymmetric error bars from each point's 95% interval."""
    intervals = [p.get(f"{key}_ci") for p in points]
    if any(i is None for i in intervals):
        return None
    return {
        "array": [hi - p[key] for p, (_, hi) in zip(points, intervals, strict=True)],
        "arrayminus": [p[key] - lo for p, (lo, _) in zip(points, intervals, strict=True)],
    }


def pareto_plot(result: dict, against: str) -> dict:
    """What a sweep's Pareto plot draws, `against` "side effect" or "loss added": forget
    accuracy (known questions when any point has them) with 95% intervals; the paper's
    reference points (METHOD §8, known questions) only on known-question axes, RMU apart."""
    points = [p for p in result["points"] if "skipped" not in p]
    side_key, y_key = pareto_axes(points)
    x_key = side_key if against == "side effect" else "loss_added"
    if x_key == "loss_added":
        ses = [p.get("loss_added_se") for p in points]
        x_error = None if None in ses else {"array": ses, "arrayminus": ses}
    else:
        x_error = _interval_error(points, x_key)
    series = [
        {
            "name": "this workspace",
            "x": [p[x_key] for p in points],
            "y": [p[y_key] for p in points],
            "x_error": x_error,
            "y_error": _interval_error(points, y_key),
            "text": [f"thr {p['threshold']}, n {p['n']}, c {p['c']}" for p in points],
            "symbol": "circle",
        }
    ]
    known = y_key.startswith("wmdp_known")
    reference_x = "mmlu" if x_key != "loss_added" else "loss_added"
    for name, rmu, symbol in (("paper's SAE clamp (METHOD §8)", False, "x"), ("RMU", True, "star")):
        chosen = [r for r in result["reference"] if bool(r.get("rmu")) == rmu]
        if known and chosen:
            series.append(
                {
                    "name": name,
                    "x": [r[reference_x] for r in chosen],
                    "y": [r["wmdp"] for r in chosen],
                    "x_error": None,
                    "y_error": None,
                    "text": [f"n {r['n']}, c {r['c']}" if r["n"] else "RMU" for r in chosen],
                    "symbol": symbol,
                }
            )
    note = "Bars: 95% Wilson intervals (accuracy), ± one SE over rows (loss added)."
    if result["reference"] and not known:
        note += (
            " The paper's points are on known questions and are not drawn on these "
            "all-question axes."
        )
    titles = {"loss_added": "loss added (nats)"}
    return {
        "series": series,
        "x_title": titles.get(x_key, x_key.replace("_", " ")),
        "y_title": y_key.replace("_", " "),
        "note": note,
    }
