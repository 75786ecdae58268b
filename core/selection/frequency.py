"""Choosing features from the cached statistics: the paper's frequency threshold (METHOD §4)
and Dynamic SAE Guardrails' importance percentiles (METHOD §10), their configs, and the
record a selection leaves with what it chose (the same from the page, the CLI and a set)."""

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
    config: SelectionConfig | DSGSelectionConfig,
    selected: list[int],
    statistics: dict[str, Any],
    features: list[int] | None = None,
) -> dict[str, Any]:
    """What a frequency selection chose and from what: its config verbatim, the tokens
    counted, the statistics' provenance; `features` when the final list differs from the
    selection (features added or removed by hand)."""
    final = list(selected if features is None else features)
    dsg = isinstance(config, DSGSelectionConfig)
    return {
        "mode": "DSG importance percentiles (METHOD §10)"
        if dsg
        else "frequency threshold (METHOD §4)",
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


@dataclass(frozen=True)
class DSGSelectionConfig:
    """Dynamic SAE Guardrails' selection (METHOD §10), from the cached statistics alone.

    Per feature, its statistic on a corpus is its mean activation over the counted positions
    (mean where active × frequency); importance is the statistic squared, and the ratio is
    forget importance / (retain importance + 1e-21). A feature is kept when its forget
    importance is at least the `forget_percentile`-th percentile of all features', its retain
    importance at most the `retain_percentile`-th, and its ratio at least the
    `ratio_percentile`-th; kept features are ranked by forget importance.

    Args:
        forget_percentile: lower bound on forget importance, as a percentile (0-100).
        retain_percentile: upper bound on retain importance, as a percentile (0-100).
        ratio_percentile: lower bound on the ratio, as a percentile (0-100).
        n: how many features to keep at most (the paper: 20-200).
        variant: how positions are counted, a key of `stats.VARIANTS`.
    """

    forget_percentile: float = 5.0
    retain_percentile: float = 100.0
    ratio_percentile: float = 90.0
    n: int = 20
    variant: str = "saebench"

    def check(self) -> None:
        for name in ("forget_percentile", "retain_percentile", "ratio_percentile"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise UserError(f"The {name.replace('_', ' ')} must be in [0, 100], not {value!r}.")
        SelectionConfig(0.0, self.n, self.variant).check()


def select_dsg(table: pd.DataFrame, config: DSGSelectionConfig) -> pd.DataFrame:
    """METHOD §10's selection: columns rank, forget_importance, retain_importance, ratio,
    then the table's; at most n rows, highest forget importance first (ties: lower id)."""
    config.check()
    v = config.variant
    forget = (table[f"forget_mean_{v}"] * table[f"forget_freq_{v}"]).to_numpy() ** 2
    retain = (table[f"retain_mean_{v}"] * table[f"retain_freq_{v}"]).to_numpy() ** 2
    ratio = forget / (retain + 1e-21)
    keep = (
        (forget >= np.percentile(forget, config.forget_percentile))
        & (retain <= np.percentile(retain, config.retain_percentile))
        & (ratio >= np.percentile(ratio, config.ratio_percentile))
        & (forget > 0)
    )
    order = np.lexsort((table["feature"].to_numpy(), -forget))
    chosen = order[keep[order]][: config.n]
    selected = table.iloc[chosen].copy()
    selected.insert(0, "ratio", ratio[chosen])
    selected.insert(0, "retain_importance", retain[chosen])
    selected.insert(0, "forget_importance", forget[chosen])
    selected.insert(0, "rank", np.arange(1, len(chosen) + 1))
    return selected.reset_index(drop=True)
