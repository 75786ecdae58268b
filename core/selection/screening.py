"""The paper's screening of candidate features (METHOD §4, second mode): each candidate
clamped alone on the selection half, kept when the side effect stays within a tolerance,
then the kept ones added up."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

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
        check_edit(self.method, (self.c,))
        if not math.isfinite(self.tolerance) or not -1 <= self.tolerance <= 1:
            raise UserError(f"The tolerance is an accuracy drop in [-1, 1], not {self.tolerance}.")


def _metrics(
    evaluator: Evaluator, features: list[int], c: float, method: str, skip_bos: bool
) -> dict:
    """The metrics of one memoised evaluation: every feature edited by `method` at c."""
    iv = make_intervention(evaluator.ws, features, [c] * len(features), method, 1.0, skip_bos)
    return evaluator.evaluate(iv)["metrics"]


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
    refuse_report_split(evaluator.settings, "Screening")
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
        single |= point_metrics(metrics)
        single["kept"] = drop is not None and drop <= config.tolerance
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
