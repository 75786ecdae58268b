"""The gate's on-rate on question prompts by what its alpha is calibrated on (issue 24).

    python benchmarks/gate_calibration.py [--workspace offline-gemma3-270m] [--questions 360]
        [--features 3080,1387,...] [--percentile 95]

For one feature set, a gate at the percentile calibrated on each of
`calibration.CALIBRATIONS` (the retain rows, retain windows of the MMLU prompts' lengths,
MMLU prompts outside the sample), as `eval --gate P --gate-calibration ON` calibrates it;
then per gate the share of the scored prompts it edits (report split of a sample of
--questions per set), with n and the Wilson 95% interval. A prompt's decision is taken on
the prompt alone, which is what the hook decides inside a padded batch
(tests/evaluation/test_gate_rates.py), so no clamp needs to run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.base.environment import configure_environment
from core.evaluation.evaluator import Evaluator
from core.evaluation.gate_rates import on_rate
from core.evaluation.settings import FORGET, SET_NAMES, SIDE, EvalSettings
from core.interventions.calibration import CALIBRATIONS, describe
from core.interventions.rho import prompt_rho
from core.workspace.workspace import Workspace

# docs/dsg-offline.md's frequency selection (retain threshold 0.01, n = 20)
FREQUENCY_20 = "3080,1387,580,1576,2795,44,763,1907,3377,3150,3518,1921,54,688,1605,3460,434,2220"
FREQUENCY_20 += ",742,3763"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="offline-gemma3-270m")
    parser.add_argument("--questions", type=int, default=360)
    parser.add_argument("--features", default=FREQUENCY_20)
    parser.add_argument("--percentile", type=float, default=95.0)
    args = parser.parse_args()
    configure_environment()
    ws = Workspace.open(args.workspace)
    features = [int(f) for f in args.features.split(",")]
    settings = EvalSettings(question_limit=args.questions, known_filter=False)
    evaluator = Evaluator(ws, settings)
    rho = {
        role: prompt_rho(
            ws, features, [evaluator.scorer.encode(q) for q in evaluator.questions(role)]
        )
        for role in (SIDE, FORGET)
    }
    print(
        f"{len(features)} features, gate at the {args.percentile:g}th percentile, "
        "rule 'per feature'"
    )
    for on in CALIBRATIONS:
        gate, _ = evaluator.gate(features, args.percentile, "per feature", on)
        print(f"{on}: {describe(gate)}")
        for role, values in rho.items():
            rate = on_rate(values > gate.alpha)
            low, high = rate["on_ci"]
            print(
                f"  on for {rate['on']:.1%} [{low:.1%}, {high:.1%}] of {rate['n']} "
                f"{SET_NAMES[role]} prompts (report split, Wilson 95%)"
            )


if __name__ == "__main__":
    main()
