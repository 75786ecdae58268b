"""The gate's decisions as the hooked edit makes them (METHOD §10): inside `recording`, the
edit notes for every sequence of every pass whether it edited it, by the caller's index of
the sequence (`run_rows`), so an evaluation's on-rates come from the passes that scored
and measured loss, not from another pass.

    with recording() as record:
        for group in batches(lengths):
            with run_rows(group):
                model(tokens[group])  # the gated edit notes each row's decision
    record.decisions(len(lengths))  # per sequence, in the caller's order
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from jaxtyping import Bool
from torch import Tensor

_RUN = threading.local()  # hooks run in the thread of their forward pass


class GateRecord:
    """Per sequence index, whether the gate edited that sequence."""

    def __init__(self) -> None:
        self._on: dict[int, bool] = {}

    def add(self, rows: Sequence[int], on: Bool[Tensor, " batch"]) -> None:
        for row, decision in zip(rows, on.tolist(), strict=True):
            self._on[int(row)] = bool(decision)

    def decisions(self, n: int) -> Bool[np.ndarray, " n"]:
        """The decisions of sequences 0..n-1; every one must have been run."""
        missing = [i for i in range(n) if i not in self._on]
        assert not missing, f"no gate decision recorded for sequences {missing[:5]}"
        return np.array([self._on[i] for i in range(n)], dtype=bool)


@contextmanager
def recording() -> Iterator[GateRecord]:
    """A fresh record of the gate decisions of the passes run inside (in this thread)."""
    previous = getattr(_RUN, "record", None)
    _RUN.record = GateRecord()
    try:
        yield _RUN.record
    finally:
        _RUN.record = previous


@contextmanager
def run_rows(rows: Sequence[int]) -> Iterator[None]:
    """Say which of the caller's sequences the rows of the passes run inside are."""
    previous = getattr(_RUN, "rows", None)
    _RUN.rows = list(rows)
    try:
        yield
    finally:
        _RUN.rows = previous


def note_decisions(on: Bool[Tensor, " batch"]) -> None:
    """Called by the gated edit: enter its decisions in the active record, if any."""
    record = getattr(_RUN, "record", None)
    if record is None:
        return
    rows = getattr(_RUN, "rows", None)
    assert rows is not None, "a recorded pass must say its rows (run_rows)"
    record.add(rows, on)
