"""How often a gated run's edit touched each kind of sequence (METHOD §10), read from the
record its own hook kept during the scoring and loss passes (core.runtime.gate_record):
each rate with its n and Wilson 95% interval, and per question whether it was edited."""

from __future__ import annotations

import numpy as np

from core.base.uncertainty import wilson
from core.evaluation.settings import FORGET, SIDE

GATED_SETS = {FORGET: "wmdp", SIDE: "mmlu"}  # the name of each question set's on-rate


def on_rate(on: np.ndarray) -> dict:
    """The share of sequences the gate edited, with n and a 95% Wilson interval."""
    return {
        "n": len(on),
        "on": float(on.mean()) if len(on) else None,
        "on_ci": wilson(int(on.sum()), len(on)),
    }


def per_question(on: np.ndarray, questions: int) -> np.ndarray:
    """Whether the gate edited each question's prompt: letter scoring runs one sequence per
    question, choice likelihoods four (question i's are 4i..4i+3): edited when any was."""
    if not questions:
        return np.zeros(0, dtype=bool)
    return np.asarray(on, dtype=bool).reshape(questions, -1).any(axis=1)


def gate_rates(decisions: dict[str, list[bool]]) -> dict:
    """Per sequence kind (question set or loss text) its on-rate."""
    return {name: on_rate(np.asarray(on, dtype=bool)) for name, on in decisions.items()}


def mark_gated(records: list[dict], decisions: dict[str, list[bool]], sizes: dict) -> None:
    """Give each per-question record whether the gate edited its prompt (`gated`)."""
    each = {
        role: per_question(np.asarray(decisions[name], dtype=bool), sizes[role])
        for role, name in GATED_SETS.items()
    }
    for record in records:
        record["gated"] = bool(each[record["set"]][record["index"]])
