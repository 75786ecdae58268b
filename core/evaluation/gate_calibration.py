"""What a gate is calibrated on besides the retain rows (`calibration.CALIBRATIONS`), taken
from an evaluation's questions, so that alpha is set on text like the prompts it decides on:
the token lengths of the sampled MMLU prompts (both splits, so a gate tuned on the selection
split is the one reported), or MMLU prompts of questions outside the sample, which no
evaluation with these settings scores. A run that would score a question its gate was
calibrated on is refused."""

from __future__ import annotations

import numpy as np

from core.errors import UserError
from core.evaluation.mcq import Scorer
from core.evaluation.protocol import QuestionProtocol, question_id
from core.evaluation.settings import SIDE
from core.interventions.calibration import CALIBRATIONS, RETAIN_ROWS, CalibrationText
from core.interventions.edits import Intervention

DEV_PROMPTS = 512  # MMLU prompts a gate is calibrated on, at most
DEV_STREAM = 3  # their random stream, apart from the sample's (0) and the k-shot examples' (2)


def calibration_text(
    protocol: QuestionProtocol, scorer: Scorer, on: str, most: int = DEV_PROMPTS
) -> CalibrationText | None:
    """The text a gate calibrated `on` (a key of CALIBRATIONS) reads for an evaluation's
    questions (`protocol`), at most `most` MMLU prompts; None for the retain rows. Prompts
    are encoded as the evaluation's `scorer` scores them (k = 0)."""
    if on not in CALIBRATIONS:
        raise UserError(
            f"Unknown gate calibration '{on}'; choose one of {', '.join(CALIBRATIONS)}."
        )
    if on == RETAIN_ROWS:
        return None  # the retain rows are the default: calibrate reads them itself
    if on == "prompt-windows":
        lengths = tuple(len(scorer.encode(q)) for q in protocol.sampled_questions[SIDE])
        said = f"lengths of the {len(lengths)} sampled MMLU prompts (both splits)"
        return CalibrationText(on, lengths=lengths, said=said)
    everything = protocol.ws.questions(SIDE)
    outside = np.setdiff1d(np.arange(len(everything)), protocol.sample[SIDE])
    if not len(outside):
        raise UserError(
            "Calibrating the gate on MMLU prompts needs questions outside the evaluated "
            f"sample, and it holds all {len(everything)}: set a question limit below that."
        )
    rng = np.random.default_rng([protocol.settings.seed, DEV_STREAM])
    questions = [everything[i] for i in np.sort(rng.permutation(outside)[:most])]
    return CalibrationText(
        on,
        sequences=tuple(tuple(scorer.encode(q)) for q in questions),
        questions=tuple(question_id(q) for q in questions),
        said=f"{len(questions)} of the {len(outside)} MMLU questions outside the sample of "
        f"{len(protocol.sample[SIDE])} (seed {protocol.settings.seed})",
    )


def refuse_scored_calibration(protocol: QuestionProtocol, iv: Intervention) -> None:
    """A UserError when `iv`'s gate was calibrated on a question this run scores (a gate
    kept from a run with another sample)."""
    ids = set(iv.gate.calibration.get("questions", ())) if iv.gate is not None else set()
    scored = ids & set(protocol.split_ids()[SIDE])
    if scored:
        raise UserError(
            f"The gate was calibrated on {len(scored)} of the MMLU questions this run scores: "
            "calibrate it again for these settings (its questions come from outside the "
            "sample)."
        )
