"""Feature effects against a bare forward of the same rows (issue 27 §1).

    python benchmarks/effects.py [--workspace offline-gemma3-270m] [--rows 64] [--context 128]
        [--top-k 100] [--c 2]

On --rows forget rows of --context tokens (training documents, as `effects` reads them):
the time of a bare full forward of the rows (logits and loss, no gradient), of the estimate
for every feature (one forward and backward pass per batch), and of the measured effect of
the top --top-k features by estimated forget effect (the blocks before the hook once per
batch, the blocks after it per feature on the rows it fires in); each as a ratio to the bare
forward, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from core.base.environment import configure_environment
from core.effects.compute import estimated_effects, measured_effects
from core.evaluation.loss import row_losses
from core.workspace.workspace import Workspace


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    found = work()
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="offline-gemma3-270m")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--c", type=float, default=2.0)
    args = parser.parse_args()
    configure_environment()
    ws = Workspace.open(args.workspace)
    train_docs, _ = ws.documents_split("forget_corpus")
    rows = ws.token_rows(train_docs, args.context, args.rows, ws.config.budgets.seed)
    row_losses(ws.model, rows[:2])  # warm-up
    print(
        f"{len(rows)} rows x {args.context} tokens, c = {args.c:g}, {torch.get_num_threads()} "
        f"threads, load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    bare, _ = timed(lambda: row_losses(ws.model, rows))
    print(f"bare forward (logits and loss): {bare:.1f} s", flush=True)
    estimate_s, estimate = timed(lambda: estimated_effects(ws, rows, args.c))
    width = estimate.shape[1]
    said = f"{estimate_s:.1f} s = {estimate_s / bare:.2f}x bare"
    print(f"estimate, all {width} features: {said}", flush=True)
    top = np.argsort(-estimate.mean(0))[: args.top_k].tolist()
    measured_s, _ = timed(lambda: measured_effects(ws, rows, top, args.c))
    print(
        f"measured, top {len(top)}: {measured_s:.1f} s = {measured_s / bare:.2f}x bare "
        f"({measured_s / len(top) / bare:.3f}x bare per feature)",
        flush=True,
    )
    again, _ = timed(lambda: row_losses(ws.model, rows))  # a machine whose load moved says so
    print(
        f"bare forward again: {again:.1f} s; against the mean of both bare runs: estimate "
        f"{2 * estimate_s / (bare + again):.2f}x, measured {2 * measured_s / (bare + again):.2f}x "
        f"bare; load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
