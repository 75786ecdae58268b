"""Speed of dynamic gating and k-shot scoring (issue 14).

    python benchmarks/dsg.py [--workspace offline-gemma3-270m] [--questions 12]

1. A gated forward vs the same clamp ungated, on one batch (8 rows × 256 tokens) through the
   workspace's model with its SAE: target ≤ 1.05× (the gate is one reduction over
   activations the clamp computes anyway). Best of 5, alternating.
2. Calibrating alpha from a cache: rho of 200 selected features over a synthetic cache of
   1,024 rows × 1,024 tokens of a 16,384-feature SAE, then the 100-resample bootstrap:
   target < 2 s.
3. 5-shot MMLU letter scoring of N questions of one subject, the shared 5-shot block run once
   as a key-value cache vs every prompt whole; the two must agree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cache_build import synthetic_cache
from core.base.environment import configure_environment
from core.evaluation.mcq import Scorer
from core.evaluation.settings import SIDE
from core.interventions.calibration import bootstrapped_percentile
from core.interventions.edits import Intervention, applied
from core.interventions.gate import Gate
from core.interventions.rho import cached_fires
from core.runtime.forward import final_resid
from core.workspace.workspace import Workspace


def best(seconds: list[float]) -> float:
    return min(seconds)


def gated_forward(ws: Workspace) -> None:
    rows = ws.token_rows(ws.documents("retain_corpus")[:200], 256, 8, 0)
    tokens = torch.from_numpy(rows)
    features = tuple(range(20))
    plain = Intervention(features, (0.5,) * 20)
    gate = Intervention(features, (0.5,) * 20, gate=Gate(0.05))
    times: dict[str, list[float]] = {"ungated": [], "gated": []}
    for _ in range(5):
        for name, iv in (("ungated", plain), ("gated", gate)):
            started = time.perf_counter()
            with applied(ws.model, ws.sae, ws.hook, iv):
                final_resid(ws.model, tokens)
            times[name].append(time.perf_counter() - started)
    ratio = best(times["gated"]) / best(times["ungated"])
    print(
        f"gated forward {best(times['gated']):.3f} s vs ungated {best(times['ungated']):.3f} s "
        f"(8 × 256 tokens, best of 5): {ratio:.3f}× (target ≤ 1.05×)"
    )


def calibration_speed(ws: Workspace) -> None:
    with tempfile.TemporaryDirectory() as root:
        cache = synthetic_cache(ws, Path(root), 1024 * 1024, 16_384, 60)
        cache.csc()  # opening the feature-major copy is not the calibration's cost
        started = time.perf_counter()
        fires = cached_fires(cache, list(range(1_000, 16_384, 76))[:200])  # the tail
        rho = fires[:, 1:].mean(axis=1)
        alpha = bootstrapped_percentile(rho, 95.0, 0)
        seconds = time.perf_counter() - started
    print(
        f"calibration: rho of 200 features over {len(rho)} rows × 1,024 tokens + bootstrap: "
        f"{seconds:.2f} s, alpha {alpha:.4f} (target < 2 s)"
    )


def k_shot_reuse(ws: Workspace, n: int) -> None:
    questions = [q for q in ws.questions(SIDE) if q.subject == "college_biology"]
    shots = {"college_biology": questions[:5]}
    scored = questions[5 : 5 + n]
    scorer = Scorer(ws.model, ws.tokenizer, ws.config.model.chat_template)
    lengths = [len(scorer.encode(q, shots=shots["college_biology"])) for q in scored]
    times: dict[bool, list[float]] = {True: [], False: []}
    probs = {}
    for _ in range(2):
        for reuse in (True, False):
            started = time.perf_counter()
            with applied(ws.model, ws.sae, ws.hook, None):
                probs[reuse] = scorer.score(scored, shots=shots, reuse=reuse).probs
            times[reuse].append(time.perf_counter() - started)
    gap = float(np.abs(probs[True] - probs[False]).max())
    speedup = best(times[False]) / best(times[True])
    print(
        f"5-shot scoring of {n} college biology questions (prompts {min(lengths)}–"
        f"{max(lengths)} tokens): shared block once {best(times[True]):.2f} s vs whole prompts "
        f"{best(times[False]):.2f} s: {speedup:.2f}×; largest probability gap {gap:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", default="offline-gemma3-270m")
    parser.add_argument("--questions", type=int, default=12)
    args = parser.parse_args()
    configure_environment()
    ws = Workspace.open(args.workspace)
    calibration_speed(ws)
    gated_forward(ws)
    k_shot_reuse(ws, args.questions)


if __name__ == "__main__":
    main()
