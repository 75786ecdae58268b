"""The known-question filter (METHOD §6) on Ray: chunks of questions scored in all 24
orderings on the actors, the counts joined on the driver into the same record the serial
`Evaluator.known` writes (same chunks of core.evaluation.known.QUESTIONS_PER_CALL, so the
same batches), which then reads it."""

from __future__ import annotations

from collections.abc import Callable

from core.base.records import write_json
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import QUESTIONS_PER_CALL, WITHOUT_QUESTION, KnownSet, stored_known
from core.evaluation.settings import FORGET, SIDE
from core.scale.cluster import WorkerPool
from core.scale.worker import WorkspaceRef

Progress = Callable[[int, int], None]  # (questions done, questions to do)


def known_on_ray(
    evaluator: Evaluator, pool: WorkerPool, progress: Progress | None = None
) -> dict[str, KnownSet]:
    """Both question sets' known records (missing passes computed on the actors)."""
    ref = WorkspaceRef.of(evaluator.ws)
    without = evaluator.settings.known_variant == "correct-iff-question"
    passes = [("with_question", True)] + ([(WITHOUT_QUESTION, False)] * without)
    records, calls, slots = {}, [], []
    for role in (FORGET, SIDE):
        questions = evaluator.protocol.sampled_questions[
            role
        ]  # the whole sample, as `known` scores it
        path, key = evaluator.known_path(role), evaluator.known_key_record(role)
        records[role] = stored_known(questions, path, key)
        for name, with_question in passes:
            if name in records[role]:
                continue
            records[role][name] = [0] * len(questions)
            for first in range(0, len(questions), QUESTIONS_PER_CALL):
                chunk = questions[first : first + QUESTIONS_PER_CALL]
                calls.append(("known_counts", (ref, evaluator.settings, chunk, with_question)))
                slots.append((role, name, first))
    total = sum(len(args[2]) for _, args in calls)
    done = 0

    def counted(index: int, counts: list[int]) -> None:
        nonlocal done
        role, name, first = slots[index]
        records[role][name][first : first + len(counts)] = counts
        done += len(counts)
        if progress is not None:
            progress(done, total)

    pool.run(calls, counted)
    for role in (FORGET, SIDE):
        if any(slot[0] == role for slot in slots):
            write_json(evaluator.known_path(role), records[role])
    return {role: evaluator.known(role) for role in (FORGET, SIDE)}
