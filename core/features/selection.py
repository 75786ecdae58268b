"""The paper's frequency-threshold selection (METHOD §4), its config, and the record a
selection leaves with what it chose (the same from the page, the CLI and a saved set)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError
from core.features.stats import VARIANTS


@dataclass(frozen=True)
class SelectionConfig:
    """METHOD §4 selection: the top n features by forget frequency among those rare on the
    retain corpus.

    Args:
        threshold: retain frequency bound; a feature at or above it scores 0.
        n: how many features to keep at most.
        variant: how positions are counted, a key of `stats.VARIANTS` ("saebench" leaves
            BOS, EOS and PAD out; "authors" counts every position).
    """

    threshold: float = 0.01
    n: int = 20
    variant: str = "saebench"

    def check(self) -> None:
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise UserError(f"The retain threshold must be a number, not {self.threshold!r}.")
        if not 0 <= self.threshold <= 1:
            raise UserError(f"The retain threshold is a frequency in [0, 1], not {self.threshold}.")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise UserError(f"n (how many features) must be a whole number ≥ 1, not {self.n!r}.")
        if self.variant not in VARIANTS:
            raise UserError(
                f"The variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}."
            )


def select_features(table: pd.DataFrame, config: SelectionConfig) -> pd.DataFrame:
    """score = forget freq where retain freq < threshold, else 0; keep score > 0; the top n by
    score (ties: lower feature id first). Columns: rank, score, then the table's."""
    config.check()
    forget = table[f"forget_freq_{config.variant}"].to_numpy()
    retain = table[f"retain_freq_{config.variant}"].to_numpy()
    score = np.where(retain < config.threshold, forget, 0.0)
    order = np.lexsort((table["feature"].to_numpy(), -score))
    chosen = order[score[order] > 0][: config.n]
    selected = table.iloc[chosen].copy()
    selected.insert(0, "score", score[chosen])
    selected.insert(0, "rank", np.arange(1, len(chosen) + 1))
    return selected.reset_index(drop=True)


def selection_record(
    config: SelectionConfig,
    selected: list[int],
    statistics: dict[str, Any],
    features: list[int] | None = None,
) -> dict[str, Any]:
    """What a frequency selection chose and from what: its config verbatim, the tokens
    counted, the statistics' provenance; `features` when the final list differs from the
    selection (features added or removed by hand)."""
    final = list(selected if features is None else features)
    return {
        "mode": "frequency threshold (METHOD §4)",
        "config": asdict(config),
        "features": final,
        "selected": list(selected),
        "added_by_hand": sorted(set(final) - set(selected)),
        "removed_by_hand": sorted(set(selected) - set(final)),
        "tokens": {
            role: statistics[role]["tokens"][config.variant] for role in ("forget", "retain")
        },
        "provenance": statistics,
    }


def reselect(previous: list[int], current: list[int], selected: list[int]) -> list[int]:
    """The current set after the selection changes from `previous` to `selected`: the new
    selection, without the features removed by hand, then the ones added by hand."""
    removed = set(previous) - set(current)
    added = [f for f in current if f not in set(previous)]
    kept = [f for f in selected if f not in removed]
    return kept + [f for f in added if f not in set(kept)]
