"""The question protocol: which questions an evaluation scores. Each set is a seeded sample,
split into a selection part (what attribution, screening and sweeps choose on) and a report
part (what results are shown on); what chooses never runs on the report part."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from core.errors import UserError
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.loading.data import Question

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

SPLIT_STREAM = 1  # the split's random stream, apart from the sample's


def sample_positions(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions in a set of `n` questions of its seeded sample of `limit` (all when None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:limit])


def split_positions(n: int, settings: EvalSettings) -> np.ndarray:
    """Positions in a sample of `n` of the settings' split: a seeded permutation puts the
    first `1 − report_fraction` of it in "selection" and the rest in "report"."""
    if settings.split == "all":
        return np.arange(n)
    order = np.random.default_rng([settings.seed, SPLIT_STREAM]).permutation(n)
    cut = n - round(n * settings.report_fraction)
    return np.sort(order[:cut] if settings.split == "selection" else order[cut:])


class QuestionProtocol:
    """The questions of each set an evaluation with `settings` scores on `ws`."""

    def __init__(self, ws: Workspace, settings: EvalSettings):
        self.ws = ws
        self.settings = settings

    @cached_property
    def sample(self) -> dict[str, np.ndarray]:
        """Per role the positions in the whole set of its sample."""
        limit, seed = self.settings.question_limit, self.settings.seed
        return {
            role: sample_positions(len(self.ws.questions(role)), limit, seed)
            for role in (FORGET, SIDE)
        }

    @cached_property
    def sampled_questions(self) -> dict[str, list[Question]]:
        """Per role the sample's questions (both splits), in the set's order."""
        found = {}
        for role in (FORGET, SIDE):
            everything = self.ws.questions(role)  # loaded once per role, not per question
            found[role] = [everything[i] for i in self.sample[role]]
        return found

    def split_indices(self, role: str) -> np.ndarray:
        """Positions in the sample of the split's questions."""
        return split_positions(len(self.sampled_questions[role]), self.settings)

    @cached_property
    def split_questions(self) -> dict[str, list[Question]]:
        """Per role the split's questions, in the sample's order: the ones scored."""
        return {
            role: [self.sampled_questions[role][i] for i in self.split_indices(role)]
            for role in (FORGET, SIDE)
        }


def refuse_report_split(settings: EvalSettings, what: str) -> None:
    """What chooses features or settings never sees the questions results are shown on."""
    if settings.split == "report":
        raise UserError(
            f"{what} chooses features, so it runs on the selection split (--split selection), "
            "never on the report split its results are shown on; 'all' is allowed and "
            "labelled optimistic."
        )
