"""The DSG gate (METHOD §10): which sequences an edit touches, decided by rho, the fraction
of a sequence's positions where a selected feature fires."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.errors import UserError

GATE_RULES = {
    "per feature": "in a gated sequence, a_j ← −c where a_j > 0 (METHOD §5)",
    "any selected": "in a gated sequence, every selected a_j ← −c where any of them fires "
    "(DSG's code)",
}


@dataclass(frozen=True)
class Gate:
    """Dynamic gating (METHOD §10): edit only sequences whose rho, the fraction of their
    positions after BOS where any selected feature fires, exceeds `alpha`.

    Args:
        alpha: the threshold on rho (calibrated: a percentile of rho on retain text).
        rule: a key of GATE_RULES: how features are clamped inside a gated sequence.
        calibration: where alpha came from (corpus, rows, percentile, bootstrap, seed).
    """

    alpha: float
    rule: str = "per feature"
    calibration: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_record(cls, record: dict) -> Gate:
        """A gate as a set keeps it (`asdict` of one): alpha, rule and calibration."""
        return cls(record["alpha"], record["rule"], record["calibration"])

    def check(self, method: str) -> None:
        if self.rule not in GATE_RULES:
            raise UserError(
                f"Unknown gate rule '{self.rule}'; choose one of {', '.join(GATE_RULES)}."
            )
        if not 0 <= self.alpha <= 1 or not math.isfinite(self.alpha):
            raise UserError(f"The gate's alpha is a fraction of positions, not {self.alpha}.")
        if self.rule == "any selected" and method not in ("clamp", "random"):
            raise UserError("The 'any selected' gate rule clamps; use it with clamp or random.")


def sequence_rho(
    active: Bool[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"] | None = None,
    span: int | None = None,
) -> Float[Tensor, " batch"]:
    """The fraction of each sequence's counted positions where a selected feature fires:
    real tokens (`mask`), after BOS, and only the first `span` positions when given."""
    counted = torch.ones_like(active) if mask is None else mask.to(active.device).bool()
    counted = counted.clone()
    counted[:, 0] = False
    if span is not None:
        counted[:, span:] = False
    return (active & counted).sum(1) / counted.sum(1).clamp(min=1)
