"""The solved examples of k-shot scoring (METHOD §12, SHOTS_RULE): per question set and
subject, k questions the evaluation never scores, and on the report split never reports."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.errors import UserError
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.settings import FORGET, SET_NAMES, SIDE
from core.loading.data import Question

SHOT_STREAM = 2  # the k-shot examples' random stream, apart from the sample's


def shot_examples(protocol: QuestionProtocol) -> dict[str, dict[str, list[Question]]]:
    """Per role and subject of the scored questions its k examples: a seeded draw from the
    set outside the sample, or from the selection split when the sample is the whole set
    (report split only). Empty when k = 0; a k the examples cannot serve is refused."""
    ws, settings = protocol.ws, protocol.settings
    k = settings.shots
    found: dict[str, dict[str, list[Question]]] = {}
    if not k:
        return found
    for role in (FORGET, SIDE):
        everything = ws.questions(role)
        outside = np.setdiff1d(np.arange(len(everything)), protocol.sample[role])
        if not len(outside):
            if settings.split != "report":
                raise UserError(
                    f"k-shot scoring needs examples outside the scored questions, and the "
                    f"{settings.split!r} split uses every {SET_NAMES[role]} question: "
                    "set a question limit below the set's size."
                )
            selection = QuestionProtocol(ws, replace(settings, split="selection"))
            outside = protocol.sample[role][selection.split_indices(role)]
        rng = np.random.default_rng([settings.seed, SHOT_STREAM])
        outside = outside[rng.permutation(len(outside))]
        found[role] = {}
        for subject in dict.fromkeys(q.subject for q in protocol.split_questions[role]):
            examples = [everything[i] for i in outside if everything[i].subject == subject]
            if len(examples) < k:
                raise UserError(
                    f"k = {k} is more than the {len(examples)} {SET_NAMES[role]} "
                    f"examples of {subject!r} outside the scored questions."
                )
            found[role][subject] = examples[:k]
    return found
