"""How an evaluation scores and which questions and text it uses: the settings recorded
with, and keying, every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import UserError
from core.evaluation.known import VARIANTS
from core.evaluation.mcq import SCORINGS

MIN_KNOWN = 20  # fewer known questions: their accuracy is "not measured"
MAX_SHOTS = 10
SHOTS_RULE = (
    "k solved examples of the question's subject before it, the same for every question of "
    "the subject: a seeded draw from the set's questions outside the evaluated sample (both "
    "splits), or, when the sample is the whole set, from the selection split (report split "
    "only)"
)
SPLITS = {
    "report": "the report split: what results are shown on",
    "selection": "the selection split: what attribution, screening and sweeps choose on",
    "all": "selection = report (optimistic: whatever chose the settings also scores them)",
}
FORGET, SIDE = "forget_questions", "side_effect_questions"
SET_NAMES = {FORGET: "WMDP-bio", SIDE: "MMLU"}
LOSS_SETS = {
    "general": ("loss_text", "packed general text (METHOD §7)"),
    "forget": ("forget_corpus", "held-out forget text"),
    "retain": ("retain_corpus", "held-out retain text"),
}


@dataclass(frozen=True)
class EvalSettings:
    """How questions are scored and which are used; recorded with every result.

    Args:
        scoring: a key of `SCORINGS` (letter probabilities or choice likelihoods).
        known_variant: a key of `known.VARIANTS`: which questions count as known.
        split: which questions of the sample are used, a key of SPLITS: a seeded "report" or
            "selection" part (disjoint; known questions are the filter's known ones in it),
            or "all" of them.
        report_fraction: the share of the sample in the report split.
        seed: the seed of the question sample and of the split.
        question_limit: questions per set, a seeded sample; None for all.
        loss_rows: rows of text per loss set (general, forget, retain).
        loss_context: tokens per loss row, BOS first.
        known_filter: run the 24-ordering filter when needed; False reports known-question
            metrics only when the filter's result is already cached.
        min_known: a known-question accuracy on fewer questions is "not measured".
        shots: k > 0 also scores every question after k solved examples of its subject
            (METHOD §12), baseline and intervened, reported beside the k = 0 accuracies;
            the known filter stays at k = 0.
    """

    scoring: str = "letter"
    known_variant: str = "correct"
    split: str = "report"
    report_fraction: float = 0.5
    seed: int = 42
    question_limit: int | None = None
    loss_rows: int = 16
    loss_context: int = 128
    known_filter: bool = True
    min_known: int = MIN_KNOWN
    shots: int = 0

    @classmethod
    def for_device(cls, device: str, **overrides) -> EvalSettings:
        """Defaults that finish in about a minute a run on a CPU (100 questions a set, 64
        rows of loss text); METHOD §7's 50 × 32 rows of loss text elsewhere."""
        cpu = device == "cpu"
        defaults = {"question_limit": 100 if cpu else None, "loss_rows": 64 if cpu else 1600}
        return cls(**(defaults | overrides))

    def check(self) -> None:
        if self.scoring not in SCORINGS:
            raise UserError(f"scoring must be one of {', '.join(SCORINGS)}")
        if self.known_variant not in VARIANTS:
            raise UserError(f"known variant must be one of {', '.join(VARIANTS)}")
        if self.split not in SPLITS:
            raise UserError(f"split must be one of {', '.join(SPLITS)}")
        if not 0 < self.report_fraction < 1:
            raise UserError("the report fraction must be between 0 and 1")
        if self.question_limit is not None and self.question_limit < 1:
            raise UserError("question limit must be at least 1")
        if self.loss_rows < 1 or self.loss_context < 8:
            raise UserError("loss rows must be ≥ 1 and loss context ≥ 8 tokens")
        if self.min_known < 1:
            raise UserError("the minimum number of known questions must be at least 1")
        if not 0 <= self.shots <= MAX_SHOTS:
            raise UserError(f"k (shots) must be between 0 and {MAX_SHOTS}, not {self.shots}")

    def key(self) -> dict:
        """What keys results: every setting, `shots` only when used (so results measured
        before k-shot scoring existed keep their keys)."""
        record = asdict(self)
        if not self.shots:
            del record["shots"]
        return record
