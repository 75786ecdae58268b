"""What a relearning run (core.relearning.run) says: per arm and measured step the loss each
held-out text gained over the clean model (mean per row ± SE, n rows), the share of the
edit's forget loss that survives (a paired bootstrap interval over rows), and question
accuracies before and after with Wilson intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.base.uncertainty import (
    mean_se,
    paired_drop_interval,
    paired_ratio_interval,
    wilson,
)
from core.evaluation.settings import FORGET, SIDE
from core.relearning.run import ROLES

SURVIVES = (
    "forget loss the edit adds after fine-tuning, as a share of what it added before "
    "(mean over held-out rows; 95% paired bootstrap interval)"
)
SURVIVES_VS_REFERENCE = (
    "the edited model's forget loss above the reference arm's (the same fine-tuning without "
    "the edit), as a share of what the edit added before fine-tuning"
)


def loss_table(result: dict) -> pd.DataFrame:
    """Per arm and measured step: each text's loss added over the clean model (mean, SE,
    n) and, for the edited arms, the share of the forget loss added that survives (with its
    interval); the relearning arm also against the reference arm."""
    clean = {name: np.asarray(v) for name, v in result["clean"]["losses"].items()}
    arms = result["arms"]
    seed = result["settings"]["seed"]
    out = []
    for arm, curve in arms.items():
        losses = {name: np.asarray(v) for name, v in curve["losses"].items()}
        for i, step in enumerate(result["steps"]):
            row: dict = {"arm": arm, "step": step}
            for name in ROLES:
                added = losses[name][i] - clean[name]
                row[f"{name}_added"], row[f"{name}_added_se"] = mean_se(added)
                row[f"{name}_n"] = len(added)
            if curve["edit"]:
                now, before = losses["forget"][i] - clean["forget"], _before(arms, clean)
                row["survives"] = _share(now, before)
                row["survives_ci"] = paired_ratio_interval(now, before, seed)
            if arm == "relearn" and "reference" in arms:
                gap = losses["forget"][i] - np.asarray(arms["reference"]["losses"]["forget"][i])
                before = _before(arms, clean)
                row["survives_vs_reference"] = _share(gap, before)
                row["survives_vs_reference_ci"] = paired_ratio_interval(gap, before, seed)
            out.append(row)
    return pd.DataFrame(out)


def _before(arms: dict, clean: dict) -> np.ndarray:
    """Per held-out forget row, the loss the edit adds before any fine-tuning."""
    return np.asarray(arms["relearn"]["losses"]["forget"][0]) - clean["forget"]


def _share(now: np.ndarray, before: np.ndarray) -> float | None:
    return float(now.mean() / before.mean()) if before.mean() > 0 else None


def accuracy_table(result: dict) -> pd.DataFrame | None:
    """Per arm and question set: accuracy before and after fine-tuning with Wilson
    intervals and n, and the change with its paired interval; None when not scored."""
    if "scores_before" not in next(iter(result["arms"].values())):
        return None
    out = []
    for arm, curve in result["arms"].items():
        for role, label in ((FORGET, "WMDP-bio"), (SIDE, "MMLU")):
            before = np.asarray(curve["scores_before"][role], dtype=bool)
            after = np.asarray(curve["scores_after"][role], dtype=bool)
            n = len(before)
            lost, gained = int((before & ~after).sum()), int((~before & after).sum())
            out.append(
                {
                    "arm": arm,
                    "questions": label,
                    "n": n,
                    "before": before.mean() if n else None,
                    "before_ci": wilson(int(before.sum()), n),
                    "after": after.mean() if n else None,
                    "after_ci": wilson(int(after.sum()), n),
                    "gained": (gained - lost) / n if n else None,
                    "gained_ci": _flip(paired_drop_interval(lost, gained, n)) if n else None,
                }
            )
    return pd.DataFrame(out)


def _flip(interval: tuple[float, float]) -> tuple[float, float]:
    """A drop's interval as the interval of the gain."""
    return -interval[1], -interval[0]
