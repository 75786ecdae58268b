"""The grid of a sweep over retain thresholds x number of features x clamp sizes x gate
(METHOD §4–§10): parsed from text, checked, and planned as one intervention per point, so
another engine (core.scale) can compute the points first and the sweep then reads them all
from the memo."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.features.stats import workspace_stats
from core.interventions.calibration import CALIBRATIONS, RETAIN_ROWS
from core.interventions.edits import Intervention, check_edit, make_intervention
from core.interventions.gate import Gate
from core.selection.frequency import SelectionConfig, select_features

GATE_OFF = ("off", "none", "ungated")


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
        gate_calibration: a key of `calibration.CALIBRATIONS`: what the gates' alpha is a
            percentile of rho on.
    """

    thresholds: tuple[float, ...] = (0.01,)
    ns: tuple[int, ...] = (10, 20)
    cs: tuple[float, ...] = (20.0, 50.0)
    variant: str = "saebench"
    method: str = "clamp"
    skip_bos: bool = True
    gates: tuple[float | None, ...] = (None,)
    gate_rule: str = "per feature"
    gate_calibration: str = RETAIN_ROWS

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
        check_edit(self.method, self.cs)
        if not self.gates:
            raise UserError('Give at least one gate setting ("off" for the ungated run).')
        for percentile in self.gates:
            if percentile is not None and not 0 < percentile < 100:
                raise UserError(
                    f"Gate percentiles must be strictly between 0 and 100, not {percentile:g}."
                )
        if any(p is not None for p in self.gates):
            Gate(0.0, self.gate_rule).check(self.method)
        if self.gate_calibration not in CALIBRATIONS:
            raise UserError(
                f"Unknown gate calibration '{self.gate_calibration}'; choose one of "
                f"{', '.join(CALIBRATIONS)}."
            )

    def points(self) -> list[tuple[float, int, float, float | None]]:
        return list(itertools.product(self.thresholds, self.ns, self.cs, self.gates))


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


def planned_runs(evaluator: Evaluator, config: SweepConfig) -> list[PlannedRun]:
    """The sweep's points in order, each with its intervention (gates calibrated on the
    point's features, on the text `config.gate_calibration` names for `evaluator`'s
    questions)."""
    config.check()
    ws = evaluator.ws
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
            on = config.gate_calibration
            gate, _ = evaluator.gate(features, percentile, config.gate_rule, on)
            point["gate_alpha"] = gate.alpha
        values = [c] * len(features)
        iv = make_intervention(
            ws, features, values, config.method, 1.0, config.skip_bos, table, gate
        )
        runs.append(PlannedRun(point, iv))
    return runs
