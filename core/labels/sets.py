"""Feature sets: a named, ordered list of features with a multiplier and a note each, the
selection that produced it and the results measured with it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from core.evaluation.protocol import ID_CHARS
from core.evaluation.settings import FORGET, SIDE
from core.interventions.gate import GATE_RULES
from core.labels.text import LabelStoreError, check_text


@dataclass(frozen=True)
class FeatureSet:
    name: str
    features: tuple[int, ...]
    multipliers: tuple[float, ...]
    notes: tuple[str, ...] = ()
    note: str = ""
    selection: dict = field(default_factory=dict)
    results: list = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    def multiplier(self, feature: int) -> float:
        return self.multipliers[self.features.index(feature)]

    @property
    def gate(self) -> dict | None:
        """The gate kept with the set (see `LabelStore.set_gate`), if any."""
        return self.selection.get("gate")

    @property
    def chosen_on(self) -> dict[str, list[str]]:
        """Per role the ids of the questions that chose the set's features (none known: {})."""
        return self.selection.get("question_ids") or {}


def check_question_ids(ids: object) -> dict:
    """The ids of the questions that chose a set, as its selection record keeps them: per
    question set ("forget_questions", "side_effect_questions") a list of question ids; a
    LabelStoreError naming what is wrong."""
    if not isinstance(ids, dict):
        raise LabelStoreError(f"The selection's question_ids must be an object, not {ids!r:.60}.")
    for role, found in ids.items():
        if role not in (FORGET, SIDE):
            raise LabelStoreError(
                f"The selection's question_ids are per {FORGET} or {SIDE}, not {role!r:.60}."
            )
        if not isinstance(found, list) or not all(
            isinstance(i, str) and re.fullmatch(f"[0-9a-f]{{{ID_CHARS}}}", i) for i in found
        ):
            raise LabelStoreError(
                f"The selection's question_ids of {role} must be a list of {ID_CHARS}-digit hex "
                f"question ids, not {found!r:.60}."
            )
    return ids


def check_gate_record(gate: object) -> dict:
    """A gate as sets keep it and exports carry it: {"alpha", "rule", "calibration"}, with
    the calibration's percentile; a LabelStoreError naming what is wrong."""
    if not isinstance(gate, dict):
        raise LabelStoreError(f"A gate must be an object, not {gate!r:.60}.")
    alpha, rule, calibration = gate.get("alpha"), gate.get("rule"), gate.get("calibration")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise LabelStoreError(f"The gate's alpha must be a fraction in [0, 1], not {alpha!r:.60}.")
    if rule not in GATE_RULES:
        raise LabelStoreError(
            f"The gate's rule must be one of {', '.join(GATE_RULES)}, not {rule!r:.60}."
        )
    if not isinstance(calibration, dict):
        raise LabelStoreError("The gate has no calibration record (where alpha came from).")
    percentile = calibration.get("percentile")
    if (
        isinstance(percentile, bool)
        or not isinstance(percentile, (int, float))
        or not (0 < percentile < 100)
    ):
        raise LabelStoreError(
            f"The gate's percentile must be strictly between 0 and 100, not {percentile!r:.60}."
        )
    return gate


def check_members(
    name: str,
    features: list[int],
    multipliers: list[float] | None,
    notes: list[str] | None,
    check_feature: Callable[[int], int],
) -> list[tuple[int, float, str]]:
    """(feature, multiplier, note) per member, or a LabelStoreError naming what is wrong."""
    if len(set(features)) != len(features):
        duplicate = next(f for f in features if features.count(f) > 1)
        raise LabelStoreError(f"Feature {duplicate} appears twice in set '{name}'.")
    for feature in features:
        check_feature(feature)
    multipliers = list(multipliers) if multipliers is not None else [1.0] * len(features)
    notes = list(notes) if notes is not None else [""] * len(features)
    if len(multipliers) != len(features) or len(notes) != len(features):
        raise LabelStoreError("Give one multiplier and one note per feature.")
    for value in multipliers:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LabelStoreError(f"Multiplier {value!r} is not a number.")
        if not math.isfinite(value) or abs(value) > 1e6:
            raise LabelStoreError(f"Multiplier {value!r} is not a finite number.")
    return [
        (feature, float(m), check_text("Feature note", n))
        for feature, m, n in zip(features, multipliers, notes, strict=True)
    ]


def compare_sets(first: FeatureSet, second: FeatureSet) -> dict[str, list]:
    """Features only in the first, only in the second, and in both with their multipliers."""
    a, b = set(first.features), set(second.features)
    return {
        "only_first": sorted(a - b),
        "only_second": sorted(b - a),
        "both": [(f, first.multiplier(f), second.multiplier(f)) for f in sorted(a & b)],
    }
