"""The question protocol: a seeded sample of each set, split into disjoint selection and
report parts by each question's content (not its sample), what chooses refused on the report
part, and a report run on the questions that chose the features refused unless allowed."""

import math
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from core.base.paths import REPO_ROOT
from core.errors import UserError
from core.evaluation.protocol import (
    LookLedger,
    QuestionProtocol,
    look_note,
    overlap_note,
    question_id,
    refuse_report_split,
    sample_positions,
    split_positions,
)
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.workspace.workspace import Workspace


def test_the_sample_is_seeded_sorted_and_all_without_a_limit():
    sample = sample_positions(50, 10, seed=42)
    assert len(sample) == 10 and (np.diff(sample) > 0).all()
    assert np.array_equal(sample, sample_positions(50, 10, seed=42))
    assert not np.array_equal(sample, sample_positions(50, 10, seed=43))
    assert np.array_equal(sample_positions(5, None, seed=42), np.arange(5))
    assert np.array_equal(sample_positions(5, 9, seed=42), np.arange(5))


@pytest.fixture(scope="module")
def ws() -> Workspace:
    """The offline workspace's real questions (1,273 WMDP-bio, MMLU-4); no model loaded."""
    return Workspace.open("offline-gemma3-270m")


def _ids(ws: Workspace, split: str, limit: int | None, **settings) -> dict[str, list[str]]:
    return QuestionProtocol(
        ws, EvalSettings(question_limit=limit, split=split, **settings)
    ).split_ids()


@pytest.mark.parametrize("limit", [200, 500, None])
def test_what_chose_on_a_small_sample_is_never_reported_on_a_larger_one(ws, limit):
    chose = _ids(ws, "selection", 100)  # `attribute --questions 100`
    reported = _ids(ws, "report", limit)  # `eval --questions 200 / 500 / 0`
    for role in (FORGET, SIDE):
        assert len(chose[role]) > 30 and len(reported[role]) > 80
        assert not set(chose[role]) & set(reported[role])


def test_a_questions_split_depends_on_neither_the_sample_nor_its_order(ws):
    questions = ws.questions(FORGET)
    every = {
        split: {
            question_id(questions[i]) for i in split_positions(questions, EvalSettings(split=split))
        }
        for split in ("selection", "report", "all")
    }
    assert (
        every["selection"] | every["report"] == every["all"] == {question_id(q) for q in questions}
    )
    assert not every["selection"] & every["report"]
    rng = np.random.default_rng(0)
    for size in (1, 7, 100, 500):
        part = [questions[i] for i in rng.permutation(len(questions))[:size]]
        for split in ("selection", "report"):
            got = {question_id(part[i]) for i in split_positions(part, EvalSettings(split=split))}
            assert got == every[split] & {question_id(q) for q in part}
    other_seed = {
        question_id(questions[i]) for i in split_positions(questions, EvalSettings(seed=7))
    }
    assert other_seed != every["report"]


@pytest.mark.parametrize("fraction", [0.3, 0.5])
@pytest.mark.parametrize("seed", [42, 7])
def test_the_report_fraction_holds_within_a_binomial_interval(ws, fraction, seed):
    settings = EvalSettings(report_fraction=fraction, seed=seed)
    for role in (FORGET, SIDE):
        questions = ws.questions(role)
        n, k = len(questions), len(split_positions(questions, settings))
        assert abs(k - n * fraction) <= 3.29 * math.sqrt(n * fraction * (1 - fraction))  # 99.9%


def test_question_ids_are_short_content_hashes(ws):
    first = ws.questions(FORGET)[0]
    assert re.fullmatch(r"[0-9a-f]{16}", question_id(first))
    assert question_id(replace(first, answer=3 - first.answer)) != question_id(first)
    assert question_id(replace(first)) == question_id(first)


def test_a_report_run_on_questions_that_chose_the_features_is_refused_unless_allowed(ws):
    chose = _ids(ws, "selection", 100)
    for limit in (200, None):  # the report split never holds them
        assert (
            overlap_note(QuestionProtocol(ws, EvalSettings(question_limit=limit)), chose, False)
            is None
        )
    everything = QuestionProtocol(ws, EvalSettings(question_limit=200, split="all"))
    scored = everything.split_ids()
    n = sum(len(set(scored[role]) & set(ids)) for role, ids in chose.items())
    assert n > 0
    with pytest.raises(UserError, match=rf"^{n} of the 400 questions .*--allow-overlap"):
        overlap_note(everything, chose, False)
    assert (
        overlap_note(everything, chose, True) == f"scored on {n} questions that chose its features"
    )
    other_seed = QuestionProtocol(ws, EvalSettings(question_limit=200, seed=7))
    with pytest.raises(UserError, match="--allow-overlap"):
        overlap_note(other_seed, chose, False)
    choosing = QuestionProtocol(ws, EvalSettings(question_limit=100, split="selection"))
    assert overlap_note(choosing, chose, False) is None  # what chooses runs on its own questions
    assert overlap_note(everything, {}, False) is None


@pytest.mark.parametrize("split", ["selection", "all"])
def test_only_the_report_split_is_refused_to_what_chooses(split):
    refuse_report_split(EvalSettings(split=split), "Screening")
    with pytest.raises(UserError, match="Screening chooses features"):
        refuse_report_split(EvalSettings(split="report"), "Screening")


def test_the_look_ledger_counts_each_result_once_and_stamps_report_looks(tmp_path):
    ledger = LookLedger(tmp_path)
    assert ledger.look([12, 3], "selection", "a") == {"split": "selection", "selection_run": 1}
    assert ledger.look([3, 12], "selection", "b")["selection_run"] == 2  # order of ids aside
    assert ledger.look([3, 12], "selection", "a")["selection_run"] == 1  # seen before
    assert ledger.look([7], "selection", "c")["selection_run"] == 1  # other features apart
    first = {"split": "report", "selection_runs_before": 2, "report_look": 1}
    assert ledger.look([3, 12], "report", "r1") == first
    ledger.look([3, 12], "selection", "d")
    assert ledger.look([3, 12], "report", "r1") == first  # the same look, shown again
    assert ledger.look([3, 12], "all", "r2")["report_look"] == 2
    assert ledger.look([3, 12], "report", "r3")["selection_runs_before"] == 3
    assert look_note(first) == (
        "Chosen after 2 selection runs of these features; look 1 at the report split"
    )


def test_two_writers_at_once_lose_no_look_and_a_cut_line_is_skipped(tmp_path):
    ledger = LookLedger(tmp_path)
    ledger.look([1], "selection", "kept")
    with ledger.path.open("a") as f:
        f.write('{"key": "cut sh')  # a writer killed mid-line
    keys = [f"k{i}" for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda key: LookLedger(tmp_path).look([1], "selection", key), keys))
    assert {e["key"] for e in ledger.seen()} == {"kept", *keys}
    assert ledger.look([1], "report", "r") == {
        "split": "report",
        "selection_runs_before": 41,
        "report_look": 1,
    }


@pytest.mark.parametrize(
    "damaged",
    [
        b'{"key": "cut sh',
        b"not json",
        b"[1, 2]",
        b"NaN",
        b'{"key": ["a list"], "features": [1], "split": "selection"}',
        b'{"key": "x", "features": "1", "split": "selection"}',
        b'{"key": "x", "features": [true], "split": "selection"}',
        b'{"key": "x", "features": [1], "split": 5}',
        b"\xff\xfe not UTF-8",
    ],
    ids=[
        "cut-short",
        "not-json",
        "not-object",
        "nan",
        "key-a-list",
        "features-text",
        "features-bool",
        "split-number",
        "not-utf8",
    ],
)
def test_a_damaged_ledger_line_is_skipped_and_kept(tmp_path, damaged):
    ledger = LookLedger(tmp_path)
    ledger.look([1], "selection", "whole")
    with ledger.path.open("ab") as f:
        f.write(damaged + b"\n")
    stamp = ledger.look([1], "report", "r")
    assert stamp == {"split": "report", "selection_runs_before": 1, "report_look": 1}
    assert damaged in ledger.path.read_bytes()  # never deleted
    assert [e["key"] for e in ledger.seen()] == ["whole", "r"]


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_a_ledger_that_cannot_be_written_is_one_clear_error(tmp_path, where):
    if where == "a folder":
        folder = tmp_path
        (tmp_path / LookLedger.FILE).mkdir()
    else:
        folder = tmp_path / "a file"
        folder.write_text("not a folder")
    with pytest.raises(UserError, match=r"^The look ledger .* cannot be kept \("):
        LookLedger(folder).look([1], "report", "r")


KILLED_LOOKER = """
import sys
import time
from pathlib import Path
from core.evaluation.protocol import LookLedger
for i in range(100_000):
    LookLedger(Path(sys.argv[1])).look([4], "selection", f"run-{i}")
"""


def test_a_writer_killed_mid_run_leaves_a_ledger_the_next_look_reads(tmp_path):
    run = subprocess.Popen([sys.executable, "-c", KILLED_LOOKER, str(tmp_path)], cwd=REPO_ROOT)
    ledger = LookLedger(tmp_path)
    while len(ledger.seen()) < 20:
        assert run.poll() is None
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    keys = [e["key"] for e in ledger.seen()]
    assert keys == [f"run-{i}" for i in range(len(keys))]  # whole lines, in order
    stamp = ledger.look([4], "report", "r")
    assert stamp["selection_runs_before"] == len(keys) and ledger.seen()[-1]["key"] == "r"


LOOKER = """
import sys
import time
from pathlib import Path
from core.evaluation.protocol import LookLedger
folder, name = Path(sys.argv[1]), sys.argv[2]
for i in range(30):
    LookLedger(folder).look([5, 9], "selection", f"{name}-{i}")
    LookLedger(folder).look([5, 9], "selection", f"both-{i}")  # the other process's too
"""


def test_two_processes_looking_at_once_count_each_result_once(tmp_path):
    runs = [
        subprocess.Popen([sys.executable, "-c", LOOKER, str(tmp_path), name], cwd=REPO_ROOT)
        for name in ("a", "b")
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    keys = [entry["key"] for entry in LookLedger(tmp_path).seen()]
    assert len(keys) == len(set(keys)) == 90  # 30 each, and the 30 both saw entered once
    stamp = LookLedger(tmp_path).look([9, 5], "report", "r")
    assert stamp["selection_runs_before"] == 90


def test_an_empty_split_of_a_small_sample_is_a_clear_error(ws):
    empty = next(
        (limit, split)
        for limit in range(1, 10)
        for split in ("selection", "report")
        if any(not ids for ids in _ids_or_empty(ws, split, limit).values())
    )
    protocol = QuestionProtocol(ws, EvalSettings(question_limit=empty[0], split=empty[1]))
    with pytest.raises(UserError, match=f"^The {empty[1]} split .* holds none"):
        _ = protocol.split_questions


def _ids_or_empty(ws: Workspace, split: str, limit: int) -> dict[str, np.ndarray]:
    protocol = QuestionProtocol(ws, EvalSettings(question_limit=limit, split=split))
    return {role: protocol.split_indices(role) for role in (FORGET, SIDE)}
