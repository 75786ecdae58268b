"""Throughput measured on this machine, kept so that a button can say how long its run will
take here instead of quoting a constant.

Runs that push many tokens through the model (a cache build, an SAE health measurement)
record the tokens, the seconds and the weights each token went through (the blocks up to
the SAE's hook, or the whole forward with the unembedding). An estimate divides the work to
do by the rate measured last: the same kind of run's when there is one, else any kind's
converted by weights per token. Nothing measured yet: no estimate, and the text says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from core.base.records import read_memo, write_json
from core.runtime.tl_compat import weight_counts

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

THROUGHPUT_FILE = "throughput.json"  # in the workspace's folder
NOT_MEASURED = "no run has been timed on this machine yet to estimate from"


@dataclass(frozen=True)
class Throughput:
    """One timed run.

    Args:
        kind: what ran ("cache build", "SAE health").
        tokens: tokens processed.
        seconds: wall-clock time they took.
        params_per_token: weights each token was multiplied through (summed over passes).
        hook_params: weights of the blocks up to the SAE's hook (one pass).
        full_params: weights of every block and the unembedding (one full forward).
        threads: torch threads at the time.
        device: where it ran.
        when: local time it ended.
    """

    kind: str
    tokens: int
    seconds: float
    params_per_token: int
    hook_params: int
    full_params: int
    threads: int
    device: str
    when: str

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def params_per_second(self) -> float:
        return self.tokens * self.params_per_token / max(self.seconds, 1e-9)


def forward_params(ws: Workspace) -> tuple[int, int]:
    """(weights up to the SAE's hook, weights of the whole forward with the unembedding)
    of the loaded model: what one token costs in each kind of pass."""
    return weight_counts(ws.model, ws.layer + 1)


def record_throughput(
    ws: Workspace, kind: str, tokens: int, seconds: float, hook_passes: int, full_passes: int
) -> Throughput:
    """Keep a run's rate (`hook_passes` passes up to the hook and `full_passes` full
    forwards per token) as the last of its kind on this machine."""
    hook, full = forward_params(ws)
    measured = Throughput(
        kind=kind,
        tokens=int(tokens),
        seconds=float(seconds),
        params_per_token=hook_passes * hook + full_passes * full,
        hook_params=hook,
        full_params=full,
        threads=torch.get_num_threads(),
        device=ws.device,
        when=time.strftime("%Y-%m-%d %H:%M"),
    )
    runs = {kind: asdict(run) for kind, run in measured_runs(ws).items() if kind != measured.kind}
    write_json(ws.folder / THROUGHPUT_FILE, {"runs": runs | {kind: asdict(measured)}}, indent=2)
    return measured


def measured_runs(ws: Workspace) -> dict[str, Throughput]:
    """The last timed run of each kind on this machine, on the workspace's device."""
    memo = read_memo(ws.folder / THROUGHPUT_FILE, {"runs": dict})
    if memo is None:
        return {}
    runs = {}
    for kind, record in memo["runs"].items():
        try:
            run = Throughput(**record)
        except TypeError:
            continue  # written by another version: not guessed at
        if run.device == ws.device:
            runs[kind] = run
    return runs


def estimate(ws: Workspace, kind: str, tokens: int, hook_passes: int, full_passes: int) -> str:
    """How long `tokens` tokens through `hook_passes` passes up to the hook and
    `full_passes` full forwards each should take here, and what that rests on; or that
    nothing has been measured yet."""
    runs = measured_runs(ws)
    if not runs:
        return NOT_MEASURED
    run = runs.get(kind) or max(runs.values(), key=lambda found: found.when)
    if run.kind == kind:
        seconds = tokens / run.tokens_per_second
    else:
        work = hook_passes * run.hook_params + full_passes * run.full_params
        seconds = tokens * work / run.params_per_second
    return (
        f"≈ {duration(seconds)} at the rate of the last {run.kind} here ({run.when}: "
        f"{run.tokens_per_second:,.0f} tokens/s, {run.threads} threads)"
    )


def duration(seconds: float) -> str:
    """Seconds said roughly: "40 s", "3 min", "1.5 h"."""
    if seconds < 60:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
