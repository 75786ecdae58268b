"""The paper's screening of candidate features (METHOD §4, second mode): each candidate
clamped alone on the selection half, dropped when its side effect is shown (by its 95%
interval) to exceed a tolerance, then the kept ones added up."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core.base.uncertainty import paired_drop_interval
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.metrics import point_metrics
from core.evaluation.protocol import refuse_report_split
from core.interventions.edits import check_edit, make_intervention
from core.runtime.jobs import Progress


@dataclass(frozen=True)
class ScreenConfig:
    """The paper's screening (METHOD §4, second mode): each candidate alone, then the kept
    ones cumulatively.

    Args:
        candidates: feature ids, in the order they are added up.
        c: the clamp size (or scale m) every candidate gets.
        tolerance: the side-effect accuracy drop (a fraction) a feature alone must be shown
            to exceed (the lower end of its 95% interval above it) to be dropped.
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
        check_edit(self.method, (self.c,))
        if not math.isfinite(self.tolerance) or not -1 <= self.tolerance <= 1:
            raise UserError(f"The tolerance is an accuracy drop in [-1, 1], not {self.tolerance}.")


def _metrics(
    evaluator: Evaluator, features: list[int], c: float, method: str, skip_bos: bool
) -> dict:
    """The metrics of one memoised evaluation: every feature edited by `method` at c."""
    iv = make_intervention(evaluator.ws, features, [c] * len(features), method, 1.0, skip_bos)
    return evaluator.evaluate(iv)["metrics"]


def judged(metrics: dict, tolerance: float) -> dict:
    """How screening judges one candidate: its side-effect accuracy drop (on the known MMLU
    questions when their accuracy is measured, else on all) with its 95% paired interval;
    kept unless the whole interval is above the tolerance (a drop shown, not one flipped
    question). Not kept when the drop is not measured."""
    side = "known" if metrics["mmlu_known_accuracy"] is not None else "all"
    before, after = metrics[f"mmlu_{side}_baseline"], metrics[f"mmlu_{side}_accuracy"]
    if before is None or after is None:
        return {"side_questions": side, "side_drop": None, "side_drop_ci": None, "kept": False}
    interval = paired_drop_interval(*metrics[f"mmlu_{side}_flips"], metrics[f"mmlu_{side}_n"])
    return {
        "side_questions": side,
        "side_drop": before - after,
        "side_drop_ci": list(interval),
        "kept": interval[0] <= tolerance,
    }


def screen(evaluator: Evaluator, config: ScreenConfig, progress: Progress | None = None) -> dict:
    """Each candidate clamped alone, kept unless its side-effect accuracy drop (MMLU-4
    pooled, known questions when there are any) is shown above the tolerance (`judged`);
    then the kept ones added cumulatively in the candidates' order (first k, k = 1, 2, ...)."""
    config.check()
    refuse_report_split(evaluator.settings, "Screening")
    c, method, skip_bos = config.c, config.method, config.skip_bos
    candidates = list(config.candidates)
    make_intervention(evaluator.ws, candidates, [c] * len(candidates), method, 1.0, skip_bos)
    total = len(candidates)  # all checked above: a bad id or c fails before any run
    singles: list[dict] = []
    kept: list[int] = []
    for done, feature in enumerate(candidates, start=1):
        metrics = _metrics(evaluator, [feature], c, method, skip_bos)
        single = {"feature": feature} | judged(metrics, config.tolerance)
        single |= point_metrics(metrics)
        singles.append(single)
        if single["kept"]:
            kept.append(feature)
        if progress:
            progress(done, total, single)
    cumulative = []
    for k in range(1, len(kept) + 1):
        metrics = _metrics(evaluator, kept[:k], c, method, skip_bos)
        point = {"k": k, "features": kept[:k]} | point_metrics(metrics)
        cumulative.append(point)
        if progress:
            progress(k, len(kept), point)
    return {
        "kind": "unlearning-lens/screen",
        "version": 2,
        "provenance": evaluator.provenance(),
        "config": asdict(config),
        "questions": evaluator.settings.split,
        "question_ids": evaluator.protocol.split_ids(),
        "singles": singles,
        "kept": kept,
        "cumulative": cumulative,
    }
