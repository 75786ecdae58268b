"""Sweeps over retain thresholds x number of features x clamp sizes x gate (METHOD §4–§10), and
the paper's screening of candidate features (METHOD §4, second mode).

Each point is an `Evaluator.evaluate` run, memoised on disk, so a sweep that stops part way
resumes where it stopped and a repeated sweep costs nothing. `planned_runs` lists the runs a
sweep makes, so another engine (core.scale) can compute them first and the sweep then reads
them all from the memo.
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
from core.evaluation.settings import EvalSettings, refuse_report_split
from core.features.selection import SelectionConfig, select_features
from core.features.stats import workspace_stats
from core.interventions import METHODS, Gate, Intervention, make_intervention
from core.workspace.workspace import Workspace

# METHOD §8: the authors' stored results for gemma-2-2b-it with Gemma Scope 16k, thr 0.01;
# METHOD §10: DSG's headline on the same model ("dsg": True), known questions.
REFERENCE_POINTS = {
    "gemma-2-2b-it-L3": [
        {"n": 10, "c": 50, "wmdp": 0.584, "mmlu": 0.963, "loss_added": -0.0035},
        {"n": 20, "c": 50, "wmdp": 0.475, "mmlu": 0.923, "loss_added": 0.021},
        {"n": None, "c": None, "wmdp": 0.441, "mmlu": 1.000, "loss_added": 0.011, "rmu": True},
        {"n": None, "c": None, "wmdp": 0.296, "mmlu": 0.993, "loss_added": None, "dsg": True},
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
    "forget_loss_added_se",
    "retain_loss_added",
    "retain_loss_added_se",
    "selectivity",
    "selectivity_ci",
    "gate",
)
GATE_OFF = ("off", "none", "ungated")


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


def parse_gates(text: str) -> tuple[float | None, ...]:
    """Gate percentiles as typed ("off, 95, 99"): "off" (or "none") is the ungated run."""
    parts = [part for part in re.split(r"[,\s]+", text.strip().lower()) if part]
    return tuple(
        None if part in GATE_OFF else parse_numbers(part, "Gate percentiles")[0] for part in parts
    )


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
        gates: gate percentiles (METHOD §10), each calibrated on the point's own features;
            None is the ungated run, so (None, 95.0) draws both families.
        gate_rule: a key of `interventions.GATE_RULES`, for the gated points.
    """

    thresholds: tuple[float, ...] = (0.01,)
    ns: tuple[int, ...] = (10, 20)
    cs: tuple[float, ...] = (20.0, 50.0)
    variant: str = "saebench"
    method: str = "clamp"
    skip_bos: bool = True
    gates: tuple[float | None, ...] = (None,)
    gate_rule: str = "per feature"

    @classmethod
    def from_text(
        cls, thresholds: str, ns: str, cs: str, gates: str = "off", **options
    ) -> SweepConfig:
        """The grid as typed on the page or the command line: comma-separated lists."""
        return cls(
            parse_numbers(thresholds, "Retain thresholds"),
            parse_numbers(ns, "Numbers of features", int),
            parse_numbers(cs, "c values"),
            gates=parse_gates(gates),
            **options,
        )

    def check(self) -> None:
        if not self.thresholds or not self.ns:
            raise UserError("Give at least one retain threshold and one number of features.")
        for threshold, n in itertools.product(self.thresholds, self.ns):
            SelectionConfig(threshold, n, self.variant).check()
        _check_edit(self.method, self.cs)
        if not self.gates:
            raise UserError('Give at least one gate setting ("off" for the ungated run).')
        for percentile in self.gates:
            if percentile is not None and not 0 < percentile < 100:
                raise UserError(
                    f"Gate percentiles must be strictly between 0 and 100, not {percentile:g}."
                )
        if any(p is not None for p in self.gates):
            Gate(0.0, self.gate_rule).check(self.method)

    def points(self) -> list[tuple[float, int, float, float | None]]:
        return list(itertools.product(self.thresholds, self.ns, self.cs, self.gates))


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


def sweep_settings(settings: EvalSettings) -> list[EvalSettings]:
    """The settings every sweep point is evaluated with: its own, and on the report split
    also the selection split, where the best point is chosen."""
    if settings.split == "report":
        return [settings, replace(settings, split="selection")]
    return [settings]


@dataclass(frozen=True)
class PlannedRun:
    """One sweep point: what it is (`point`: threshold, n, c, gate percentile, features) and
    the intervention evaluated there (None when the selection is empty)."""

    point: dict
    intervention: Intervention | None


def planned_runs(ws: Workspace, config: SweepConfig) -> list[PlannedRun]:
    """The sweep's points in order, each with its intervention (gates calibrated on the
    point's features from the retain cache)."""
    from core.features.gate import calibrate

    config.check()
    table, _ = workspace_stats(ws)
    runs = []
    for threshold, n, c, percentile in config.points():
        selection = SelectionConfig(threshold, n, config.variant)
        features = select_features(table, selection)["feature"].tolist()
        point = {"threshold": threshold, "n": n, "c": c, "gate_percentile": percentile}
        point["features"] = features
        if not features:
            point["skipped"] = f"no feature has retain frequency < {threshold}"
            runs.append(PlannedRun(point, None))
            continue
        gate = None
        if percentile is not None:
            gate = calibrate(ws, features, percentile, config.gate_rule)
            point["gate_alpha"] = gate.alpha
        values = [c] * len(features)
        iv = make_intervention(
            ws, features, values, config.method, 1.0, config.skip_bos, None, gate
        )
        runs.append(PlannedRun(point, iv))
    return runs


def sweep(evaluator: Evaluator, config: SweepConfig, progress: Progress | None = None) -> dict:
    """Every (threshold, n, c, gate) point's metrics on the evaluator's questions, the scores
    and the provenance. On the report split each point is also measured on the selection
    split (`point["selection"]`), so the best point is chosen there and scored on the report
    split (`held_out_score`); `saebench_score` is SAEBench's protocol, best of the points on
    the questions they are scored on (optimistic)."""
    ws = evaluator.ws
    runs = planned_runs(ws, config)
    chooser = None
    if evaluator.settings.split == "report":
        chooser = Evaluator(ws, sweep_settings(evaluator.settings)[1])
    _, stats_record = workspace_stats(ws)
    points = []
    for done, run in enumerate(runs, start=1):
        point = dict(run.point)
        if run.intervention is not None:
            point |= _point(evaluator.evaluate(run.intervention)["metrics"])
            if chooser is not None:
                point["selection"] = _point(chooser.evaluate(run.intervention)["metrics"])
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


def _family(points: list[dict]) -> str:
    percentile = points[0].get("gate_percentile")
    return "ungated" if percentile is None else f"gated at the {percentile:g}th percentile"


def _point_text(point: dict) -> str:
    text = f"thr {point['threshold']}, n {point['n']}, c {point['c']}"
    if point.get("gate_percentile") is not None:
        on = (point.get("gate") or {}).get("wmdp") or {}
        text += f", gate p{point['gate_percentile']:g} alpha {point['gate_alpha']:.3f}"
        if on.get("on") is not None:
            text += f", on for {on['on']:.0%} of WMDP prompts"
    return text


REFERENCE_SERIES = (  # name, which reference points, marker
    ("paper's SAE clamp (METHOD §8)", "clamp", "x"),
    ("RMU (METHOD §8)", "rmu", "star"),
    ("DSG (METHOD §10)", "dsg", "diamond"),
)


def _reference_kind(point: dict) -> str:
    return "rmu" if point.get("rmu") else "dsg" if point.get("dsg") else "clamp"


def pareto_plot(result: dict, against: str) -> dict:
    """What a sweep's Pareto plot draws, `against` "side effect" or "loss added": forget
    accuracy (known questions when any point has them) with 95% intervals, one series per
    gate setting (ungated and each gate percentile) on the same axes; the published reference
    points (METHOD §8 and §10, known questions, labelled by method) only on known-question
    axes, and only those that report the x measure."""
    points = [p for p in result["points"] if "skipped" not in p]
    side_key, y_key = pareto_axes(points)
    x_key = side_key if against == "side effect" else "loss_added"
    families: dict[object, list[dict]] = {}
    for point in points:
        families.setdefault(point.get("gate_percentile"), []).append(point)
    series = []
    for family in families.values():
        if x_key == "loss_added":
            ses = [p.get("loss_added_se") for p in family]
            x_error = None if None in ses else {"array": ses, "arrayminus": ses}
        else:
            x_error = _interval_error(family, x_key)
        series.append(
            {
                "name": f"this workspace, {_family(family)}",
                "x": [p[x_key] for p in family],
                "y": [p[y_key] for p in family],
                "x_error": x_error,
                "y_error": _interval_error(family, y_key),
                "text": [_point_text(p) for p in family],
                "symbol": "circle" if family[0].get("gate_percentile") is None else "square",
            }
        )
    known = y_key.startswith("wmdp_known")
    reference_x = "mmlu" if x_key != "loss_added" else "loss_added"
    for name, kind, symbol in REFERENCE_SERIES:
        chosen = [
            r
            for r in result["reference"]
            if _reference_kind(r) == kind and r.get(reference_x) is not None
        ]
        if known and chosen:
            series.append(
                {
                    "name": name,
                    "x": [r[reference_x] for r in chosen],
                    "y": [r["wmdp"] for r in chosen],
                    "x_error": None,
                    "y_error": None,
                    "text": [f"n {r['n']}, c {r['c']}" if r["n"] else name for r in chosen],
                    "symbol": symbol,
                }
            )
    note = "Bars: 95% Wilson intervals (accuracy), ± one SE over rows (loss added)."
    if result["reference"] and not known:
        note += (
            " The published points are on known questions and are not drawn on these "
            "all-question axes."
        )
    titles = {"loss_added": "loss added (nats)"}
    return {
        "series": series,
        "x_title": titles.get(x_key, x_key.replace("_", " ")),
        "y_title": y_key.replace("_", " "),
        "note": note,
    }
