"""The question protocol: which questions an evaluation scores. Each set is a seeded sample,
split into a selection part (what attribution, screening and sweeps choose on) and a report
part (what results are shown on); what chooses never runs on the report part.

A question's split follows from its content and the seed alone (a salted hash, as
`data.split_heldout` splits documents), never from the sample it is in: the selection part
of a 100-question sample and the report part of the whole set share no question. What
chooses features records the ids of the questions it chose on (`question_id`), and a report
run of those features on any of them is refused unless allowed (`overlap_note`).

Moving sliders until WMDP drops is choosing too: tuning runs on the selection split, and
every result a person sees is entered in the workspace's `LookLedger`, so a look at the
report split says after how many selection runs of its features it came ("chosen after N
selection runs; report look k")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.base.locks import file_lock
from core.errors import UserError
from core.evaluation.settings import FORGET, SET_NAMES, SIDE, EvalSettings
from core.loading.data import Question, seeded_bucket

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

ID_CHARS = 16  # hex characters of a question id: 64 bits


def _content(q: Question) -> str:
    return json.dumps([q.question, list(q.choices), q.answer, q.subject], ensure_ascii=False)


def question_id(q: Question) -> str:
    """A question's id: a short hash of its text, choices, answer and subject."""
    return hashlib.sha256(_content(q).encode()).hexdigest()[:ID_CHARS]


def in_report(q: Question, settings: EvalSettings) -> bool:
    """Whether a question is in the report split: its content's hash salted with the seed,
    as a fraction, under the report fraction (whatever sample it is drawn in)."""
    return seeded_bucket(_content(q), settings.seed) < settings.report_fraction


def sample_positions(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions in a set of `n` questions of its seeded sample of `limit` (all when None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:limit])


def split_positions(questions: Sequence[Question], settings: EvalSettings) -> np.ndarray:
    """Positions in `questions` of the settings' split (all of them for "all")."""
    if settings.split == "all":
        return np.arange(len(questions))
    report = settings.split == "report"
    return np.array(
        [i for i, q in enumerate(questions) if in_report(q, settings) == report], dtype=np.int64
    )


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
        return split_positions(self.sampled_questions[role], self.settings)

    @cached_property
    def split_questions(self) -> dict[str, list[Question]]:
        """Per role the split's questions, in the sample's order: the ones scored. A
        UserError when a split of a small sample holds none."""
        found = {}
        for role in (FORGET, SIDE):
            found[role] = [self.sampled_questions[role][i] for i in self.split_indices(role)]
            if not found[role]:
                sampled = len(self.sampled_questions[role])
                raise UserError(
                    f"The {self.settings.split} split of the {sampled} sampled {SET_NAMES[role]} "
                    "questions holds none (each question's split follows from its content): "
                    "sample more questions."
                )
        return found

    def split_ids(self) -> dict[str, list[str]]:
        """Per role the ids of the split's questions: what a choice made on them records."""
        return {role: [question_id(q) for q in qs] for role, qs in self.split_questions.items()}


def overlap_note(
    protocol: QuestionProtocol, chosen_on: dict[str, list[str]] | None, allow: bool
) -> str | None:
    """Before a report run ("report" or "all" split) of features chosen on the questions
    `chosen_on` (per role their ids, as a set's selection record keeps them): a UserError
    when it would score any of them, unless `allow`; then the label of its optimistic
    result. None when nothing overlaps (or the run is on the selection split)."""
    if not chosen_on or protocol.settings.split == "selection":
        return None
    scored = protocol.split_ids()
    overlap = sum(len(set(scored.get(role, ())) & set(ids)) for role, ids in chosen_on.items())
    if not overlap:
        return None
    if not allow:
        total = sum(len(ids) for ids in scored.values())
        raise UserError(
            f"{overlap} of the {total} questions this run scores chose its features (their "
            "ids are in the set's selection record): report on other questions (the report "
            "split with the seed they were chosen with), or pass --allow-overlap (on the "
            "page: 'Allow overlap') to run it labelled optimistic."
        )
    return f"scored on {overlap} questions that chose its features"


def refuse_report_split(settings: EvalSettings, what: str) -> None:
    """What chooses features or settings never sees the questions results are shown on."""
    if settings.split == "report":
        raise UserError(
            f"{what} chooses features, so it runs on the selection split (--split selection), "
            "never on the report split its results are shown on; 'all' is allowed and "
            "labelled optimistic."
        )


class LookLedger:
    """The results a person has seen, per workspace: one JSON line per result key (first
    sight only) with its features and split, appended under a lock (two processes looking
    at once both count, once each); an unreadable line is skipped."""

    FILE = "looks.jsonl"

    def __init__(self, folder: Path):
        self.path = folder / self.FILE

    def seen(self) -> list[dict]:
        """Every entry, oldest first; a damaged line (cut short, not an entry, a field of
        the wrong type) is skipped."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(errors="replace").splitlines()
        return [entry for line in lines if (entry := _entry(line)) is not None]

    def look(self, features: Sequence[int], split: str, key: str) -> dict:
        """Enter the result `key` (of `features`, on `split`) as seen, once; its stamp:
        on the selection split which selection run of these features it is, else how many
        selection runs of them preceded it and which look at held-out questions it is. A
        ledger that cannot be read or written (a full disk) is a UserError naming it."""
        chosen = sorted(int(f) for f in features)
        try:
            with file_lock(self.path.with_name(self.FILE + ".lock"), "the look ledger"):
                entries = self.seen()
                if not any(e["key"] == key for e in entries):
                    entry = {"key": key, "features": chosen, "split": split}
                    self._append(entry)
                    entries.append(entry)
        except OSError as exc:
            raise UserError(
                f"The look ledger {self.path} cannot be kept ({exc.strerror or exc}): results "
                "are shown only once it counts them. Free space or fix the file, then rerun."
            ) from exc
        return _stamp(entries, key)

    def stamp(self, key: str) -> dict | None:
        """The stamp `look` gave the result `key`, without counting a look; None when no
        one has seen it."""
        entries = self.seen()
        return _stamp(entries, key) if any(e["key"] == key for e in entries) else None

    def _append(self, entry: dict) -> None:
        line = (json.dumps(entry) + "\n").encode()
        if self.path.exists() and not self.path.read_bytes().endswith(b"\n"):
            line = b"\n" + line  # after a line cut short by a killed writer
        with self.path.open("ab") as f:
            f.write(line)


def _stamp(entries: list[dict], key: str) -> dict:
    """The stamp of the seen result `key` among the ledger's `entries` (see `look`)."""
    entry = next(e for e in entries if e["key"] == key)
    split = entry["split"]
    mine = [e for e in entries if e["features"] == entry["features"]]
    before = mine[: next(i for i, e in enumerate(mine) if e["key"] == key)]
    selection = len({e["key"] for e in before if e["split"] == "selection"})
    if split == "selection":
        return {"split": split, "selection_run": selection + 1}
    looks = len({e["key"] for e in before if e["split"] != "selection"})
    return {"split": split, "selection_runs_before": selection, "report_look": looks + 1}


def _entry(line: str) -> dict | None:
    """A ledger line's entry, or None when the line is damaged."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    whole = (
        isinstance(entry, dict)
        and isinstance(entry.get("key"), str)
        and isinstance(entry.get("split"), str)
        and isinstance(entry.get("features"), list)
        and all(isinstance(f, int) and not isinstance(f, bool) for f in entry["features"])
    )
    return entry if whole else None


def look_note(stamp: dict) -> str:
    """A result's look stamp as read beside it."""
    if stamp["split"] == "selection":
        return (
            f"Selection run {stamp['selection_run']} of these features (tuning: the report "
            "split is not shown)"
        )
    return (
        f"Chosen after {stamp['selection_runs_before']} selection runs of these features; "
        f"look {stamp['report_look']} at the {stamp['split']} split"
    )
