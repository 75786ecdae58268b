"""Known questions (METHOD §6): those the unmodified model answers right in all 24 orderings.

The 24 orderings of one question share every token up to the first choice, and orderings
with the same first choices share more: their token trie runs as trees (core.runtime.prefix_tree),
each shared token once, instead of 24 full prompts.
Results are cached on disk, one record per (model, dtype, device, chat, scoring, question set):
samples of other sizes keep their own; the variants are computed from the cached counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Int

from core.base.records import read_memo, write_json
from core.errors import UserError
from core.evaluation.mcq import PERMUTATIONS, Scorer
from core.loading.data import Question
from core.runtime.prefix_tree import TreeUnavailable, tree_resid

VARIANTS = {
    "correct": "right in all 24 orderings",
    "correct-iff-question": "right in all 24 orderings, and not right in all 24 without the "
    "question text",
    "correct-no-tricks": "right in all 24 orderings, and no choice is exactly 'All of the above' "
    "or '[Both ]X and|& Y' with X, Y letters A-D (SAEBench's rule)",
}
TRICK_CHOICE = re.compile(r"^(Both )?(A|B|C|D) (and|&) (A|B|C|D)$")  # SAEBench's pattern
CACHE_VERSION = 1
# The no-question pass, stored under the name of its prompt (choices only, as SAEBench), so a
# record of the earlier prompt (lead-in line kept) is recomputed, not read.
WITHOUT_QUESTION = "without_question_choices_only"
QUESTIONS_PER_CALL = 8  # their trees' rows batch together


def question_set_hash(questions: Sequence[Question]) -> str:
    blob = json.dumps([[q.question, list(q.choices), q.answer, q.subject] for q in questions])
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def has_tricks(question: Question) -> bool:
    """SAEBench's `_find_correct_no_tricks` rule, exactly (case and spaces matter)."""
    return any(
        TRICK_CHOICE.match(choice) or choice == "All of the above" for choice in question.choices
    )


@torch.no_grad()
def permutation_correct(
    scorer: Scorer,
    questions: Sequence[Question],
    with_question: bool = True,
    reuse_prefix: bool = True,
) -> Bool[np.ndarray, "n 24"]:
    """Whether each ordering of each question's choices is answered right, with the
    scorer's scoring. `reuse_prefix=False` scores every prompt in full (batched by length)."""
    answers = np.array([[o.index(q.answer) for o in PERMUTATIONS] for q in questions])
    sequences, starts = [], []
    for question in questions:
        tails = [scorer.choice_tokens(choice) for choice in question.choices]
        for order in PERMUTATIONS:
            context = scorer.encode(question, order, with_question)
            if scorer.scoring == "letter":
                sequences.append(context)
            else:
                sequences += [context + tails[j] for j in order]
                starts += [len(context)] * 4
    starts_or_none = starts or None
    try:
        if not reuse_prefix:
            raise TreeUnavailable
        resid = tree_resid(scorer.model, sequences, scorer.pad)
        scores = scorer.scores_from_resid(resid, sequences, starts_or_none)
    except TreeUnavailable:
        scores = scorer.score_sequences(sequences, starts_or_none)
    if starts:
        choices = [[q.choices[j] for j in order] for q in questions for order in PERMUTATIONS]
        scores = scorer.choice_probs(scores.reshape(-1, 4), choices)
    return scores.reshape(len(questions), len(PERMUTATIONS), 4).argmax(axis=2) == answers


@dataclass
class KnownSet:
    """Per question of a set: how many of the 24 orderings were right, with and without the
    question text, and the indices each variant keeps."""

    questions: list[Question]
    right: Int[np.ndarray, " n"]  # orderings right, of 24
    right_without_question: Int[np.ndarray, " n"] | None
    provenance: dict

    def indices(self, variant: str = "correct") -> np.ndarray:
        keep = self.right == len(PERMUTATIONS)
        if variant == "correct-iff-question":
            if self.right_without_question is None:
                raise UserError("Build the set with the no-question pass for this variant.")
            keep &= self.right_without_question < len(PERMUTATIONS)
        elif variant == "correct-no-tricks":
            keep &= ~np.array([has_tricks(q) for q in self.questions], dtype=bool)
        elif variant != "correct":
            raise UserError(f"variant must be one of {', '.join(VARIANTS)}")
        return np.flatnonzero(keep)


def known_key(questions: Sequence[Question], key_record: dict) -> dict:
    """The key of the known record of exactly `questions` under `key_record`."""
    return {**key_record, "questions": question_set_hash(questions), "version": CACHE_VERSION}


def stored_known(questions: list[Question], cache_path: Path, key_record: dict) -> dict:
    """The record kept at `cache_path` when it is of these questions and `key_record`, else
    a new one holding only its key; passes already made are lists of counts by name."""
    key = known_key(questions, key_record)

    def problem(memo: dict) -> str | None:
        passes = ("with_question", WITHOUT_QUESTION)
        bad = [name for name in passes if name in memo and not _counts(memo[name], questions)]
        return f"{', '.join(bad)} not {len(questions)} counts" if bad else None

    stored = read_memo(cache_path, {"key": dict}, problem) or {}
    return stored if stored.get("key") == key else {"key": key}


def _counts(counts: object, questions: list[Question]) -> bool:
    """Whether `counts` is a pass over `questions`: orderings right (0 to 24) per question."""
    return (
        isinstance(counts, list)
        and len(counts) == len(questions)
        and all(type(n) is int and 0 <= n <= len(PERMUTATIONS) for n in counts)
    )


def build_known(
    scorer: Scorer,
    questions: list[Question],
    cache_path: Path,
    key_record: dict,
    without_question: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> KnownSet:
    """Score every question in all 24 orderings (and without the question text when asked),
    reading and writing the on-disk cache at `cache_path`."""
    stored = stored_known(questions, cache_path, key_record)
    record = stored["key"]
    passes = [("with_question", True)] + ([(WITHOUT_QUESTION, False)] * without_question)
    total = len(questions) * len(passes)
    done = 0
    for name, with_question in passes:
        if name not in stored:
            counts: list[int] = []
            for first in range(0, len(questions), QUESTIONS_PER_CALL):
                chunk = questions[first : first + QUESTIONS_PER_CALL]
                counts += permutation_correct(scorer, chunk, with_question).sum(axis=1).tolist()
                done += len(chunk)
                if progress:
                    progress(done, total)
            stored[name] = counts
            write_json(cache_path, stored)
        else:
            done += len(questions)
    without = stored.get(WITHOUT_QUESTION)
    return KnownSet(
        questions=questions,
        right=np.array(stored["with_question"]),
        right_without_question=None if without is None else np.array(without),
        provenance=record,
    )
