"""Where an intervention's features come from (the paper's selection, gradient attribution,
a saved set, the search page's current list, ids typed in), and the per-feature value
rule: each feature's c is the base value times its multiplier (a saved set's, else 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.errors import UserError
from core.selection.frequency import SelectionConfig, select_features

if TYPE_CHECKING:
    from core.labels.sets import FeatureSet
    from core.selection.attribution import Attribution

SOURCES = {
    "selection": "Top-n selection",
    "attribution": "Gradient attribution",
    "set": "A saved set",
    "search": "The search page's selection",
    "ids": "Ids typed in",
}


@dataclass(frozen=True)
class FeatureChoice:
    """Features in order, each once, with a multiplier each; `source` a key of SOURCES;
    `chosen_on` per role the ids of the questions that chose them (a report run on any of
    them is refused, see `protocol.overlap_note`)."""

    features: tuple[int, ...]
    multipliers: tuple[float, ...]
    source: str
    chosen_on: dict[str, list[str]] = field(default_factory=dict)

    def values(self, base: float) -> list[float]:
        """Each feature's value (c, or m for scale): base × its multiplier."""
        return [float(base) * m for m in self.multipliers]

    def within(self, d_sae: int) -> tuple[FeatureChoice, list[int]]:
        """(the choice without ids outside 0..d_sae-1, those ids)."""
        keep = [i for i, f in enumerate(self.features) if 0 <= f < d_sae]
        dropped = [f for f in self.features if not 0 <= f < d_sae]
        kept = FeatureChoice(
            tuple(self.features[i] for i in keep),
            tuple(self.multipliers[i] for i in keep),
            self.source,
            self.chosen_on,
        )
        return kept, dropped


def choice(
    features: list[int],
    source: str,
    multipliers: list[float] | None = None,
    chosen_on: dict[str, list[str]] | None = None,
) -> FeatureChoice:
    """A FeatureChoice of `features` in order, repeats dropped (the first one kept)."""
    weights = multipliers if multipliers is not None else [1.0] * len(features)
    first: dict[int, float] = {}
    for feature, weight in zip(features, weights, strict=True):
        first.setdefault(int(feature), float(weight))
    return FeatureChoice(tuple(first), tuple(first.values()), source, chosen_on or {})


def parse_feature_ids(text: str) -> list[int]:
    """Ids separated by commas or spaces ("12, 40 311"); a UserError for anything else."""
    parts = [part for part in re.split(r"[,\s]+", text.strip()) if part]
    try:
        return [int(part) for part in parts]
    except ValueError as exc:
        raise UserError(f"Feature ids must be integers separated by commas: {text!r}") from exc


def from_ids(text: str) -> FeatureChoice:
    return choice(parse_feature_ids(text), "ids")


def from_list(features: list[int]) -> FeatureChoice:
    return choice(features, "search")


def from_set(feature_set: FeatureSet) -> FeatureChoice:
    features, multipliers = list(feature_set.features), list(feature_set.multipliers)
    return choice(features, "set", multipliers, feature_set.chosen_on)


def from_selection(table: pd.DataFrame, config: SelectionConfig) -> FeatureChoice:
    return choice(select_features(table, config)["feature"].tolist(), "selection")


def from_attribution(found: Attribution, n: int) -> FeatureChoice:
    return choice(found.top(n), "attribution", chosen_on=found.question_ids)


def typical_clamp(table: pd.DataFrame, features: list[int], variant: str = "saebench") -> float:
    """A starting c on the features' own scale: twice the median of their largest activation
    on forget text (two significant digits; 1.0 when none fires). The paper's c of 20-100
    fits SAEs whose activations run to tens; clamps far beyond a feature's own size destroy
    the answer format instead of the knowledge."""
    peaks = table.set_index("feature").loc[features, f"forget_max_{variant}"].to_numpy()
    peaks = peaks[peaks > 0]
    if not len(peaks):
        return 1.0
    value = 2 * float(np.median(peaks))
    return float(f"{value:.2g}")
