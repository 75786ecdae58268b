"""Data sources and token rows (METHOD §2, §3) on the real offline data."""

import json
import os

import numpy as np
import pytest

from core.errors import DataSourceError
from core.loading.data import files_stamp, load_questions, split_heldout
from core.loading.tokens import build_token_rows, stream_key
from core.workspace.workspace import Workspace
from tests.helpers import preset, small_workspace_config, write_config


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace.open("offline-gemma3-270m")


def test_corpora_keep_documents_over_50_characters(ws):
    for role in ("forget_corpus", "retain_corpus", "loss_text"):
        docs = ws.documents(role)
        assert docs and all(len(doc) > 50 for doc in docs)


def test_wmdp_and_mmlu_questions_load_in_order(ws):
    wmdp = ws.questions("forget_questions")
    assert len(wmdp) == 1273
    assert wmdp[0].subject == "biology" and len(wmdp[0].choices) == 4
    mmlu = ws.questions("side_effect_questions")
    counts = {
        subject: sum(q.subject == subject for q in mmlu) for subject in {q.subject for q in mmlu}
    }
    assert counts["college_biology"] == 144
    assert counts["human_aging"] == 223


def test_heldout_split_is_disjoint_stable_and_near_the_fraction(ws):
    docs = ws.documents("forget_corpus")
    train, heldout = split_heldout(docs, 0.1, seed=42)
    assert set(train).isdisjoint(heldout) and len(train) + len(heldout) == len(docs)
    assert 0.05 < len(heldout) / len(docs) < 0.15
    assert split_heldout(list(reversed(docs)), 0.1, seed=42)[1] == list(reversed(heldout))


class _WordTokenizer:
    """A stand-in tokenizer with fixed ids, so row construction is checked exactly; it
    counts the documents it was asked to tokenize."""

    bos_token_id, eos_token_id = 2, 1

    def __init__(self):
        self.tokenized = 0

    def __len__(self):
        return 100

    def __call__(self, docs, add_special_tokens):
        assert add_special_tokens is False
        self.tokenized += len(docs)
        return {"input_ids": [[10 + len(word) for word in doc.split()] for doc in docs]}


def test_token_rows_join_with_eos_and_start_with_bos():
    docs = ["aa bbb", "c dddd eeeee"]  # ids 12 13 | 11 14 15
    rows = build_token_rows(docs, _WordTokenizer(), context_length=4, n_rows=None, seed=0)
    stream = [12, 13, 1, 11, 14, 15, 1]
    assert rows.shape == (2, 4)
    assert (rows[:, 0] == 2).all()
    assert sorted(map(tuple, rows[:, 1:].tolist())) == sorted(
        [tuple(stream[:3]), tuple(stream[3:6])]
    )


def test_token_stream_is_kept_on_disk_and_read_back(tmp_path):
    docs = [f"{'w ' * (i % 7 + 1)}x{i}" for i in range(40)]
    tokenizer = _WordTokenizer()
    plain = build_token_rows(docs, tokenizer, context_length=5, n_rows=None, seed=3)
    kept = build_token_rows(docs, tokenizer, 5, None, 3, streams=tmp_path, model="m")
    assert np.array_equal(plain, kept) and tokenizer.tokenized == 80
    # another seed and budget, same corpus: drawn from the kept stream, nothing tokenized
    again = build_token_rows(docs, tokenizer, 5, 4, 9, streams=tmp_path, model="m")
    assert tokenizer.tokenized == 80
    assert np.array_equal(again, build_token_rows(docs, _WordTokenizer(), 5, 4, 9))
    # another model's tokenizer or other documents are other streams
    assert stream_key(docs, tokenizer, "m") != stream_key(docs, tokenizer, "other")
    assert stream_key(docs, tokenizer, "m") != stream_key(docs[::-1], tokenizer, "m")
    assert stream_key(["ab", "c"], tokenizer, "m") != stream_key(["a", "bc"], tokenizer, "m")
    assert len(list(tmp_path.glob("*.npy"))) == 1


@pytest.mark.parametrize("damage", [b"not an npy file", b""])
def test_damaged_token_stream_is_rebuilt(tmp_path, damage, caplog):
    docs = ["aa bbb", "c dddd eeeee", "ff g hh"]
    tokenizer = _WordTokenizer()
    first = build_token_rows(docs, tokenizer, 4, None, 0, streams=tmp_path, model="m")
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(damage)
    rebuilt = build_token_rows(docs, tokenizer, 4, None, 0, streams=tmp_path, model="m")
    assert np.array_equal(first, rebuilt) and "rebuilding" in caplog.text
    assert np.array_equal(np.load(path), [12, 13, 1, 11, 14, 15, 1, 12, 11, 12, 1])


def test_workspace_rows_reuse_the_stream_across_workspaces(ws, cache_root, tmp_path):
    docs = ws.documents("retain_corpus")[:50]
    rows = ws.token_rows(docs, 64, 10, seed=1)
    assert np.array_equal(rows, build_token_rows(docs, ws.tokenizer, 64, 10, seed=1))
    (kept,) = (cache_root / "token-streams").glob("*.npy")
    # another workspace on the same model, with other budgets and name
    other = Workspace.open(str(small_workspace_config(tmp_path, workspace__name="other")))
    assert np.array_equal(other.token_rows(docs, 64, 10, seed=1), rows)
    assert list((cache_root / "token-streams").glob("*.npy")) == [kept]


def test_token_rows_shuffle_is_seeded(ws):
    docs = ws.documents("retain_corpus")[:200]
    first = build_token_rows(docs, ws.tokenizer, 64, 20, seed=1)
    assert np.array_equal(first, build_token_rows(docs, ws.tokenizer, 64, 20, seed=1))
    assert not np.array_equal(first, build_token_rows(docs, ws.tokenizer, 64, 20, seed=2))


def test_budget_larger_than_corpus_says_how_much_there_is(ws):
    with pytest.raises(DataSourceError, match=r"holds only \d+"):
        build_token_rows(ws.documents("retain_corpus")[:5], ws.tokenizer, 64, 10_000, seed=0)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"question": "Q?", "choices": ["a", "b", "c"], "answer": 0},
            "question 1: expected 4 choices, found 3",
        ),
        (
            {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 4},
            "question 1: answer 4 is not",
        ),
    ],
    ids=["three-choices", "answer-out-of-range"],
)
def test_bad_question_file_names_the_row(tmp_path, record, message):
    good = {"question": "Fine?", "choices": ["a", "b", "c", "d"], "answer": 1}
    (tmp_path / "wmdp").mkdir()
    (tmp_path / "wmdp" / "q.json").write_text(json.dumps([good, record]))
    raw = preset()
    raw["data"]["forget_questions"]["path"] = str(tmp_path / "wmdp" / "q.json")
    config = Workspace.open(str(write_config(tmp_path, raw))).config
    with pytest.raises(DataSourceError, match=message):
        load_questions(config, "forget_questions")


def _local(tmp_path, role: str, name: str, content: bytes, **source) -> Workspace:
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    raw = preset()
    raw["data"][role].update(path=str(path), **source)
    return Workspace.open(str(write_config(tmp_path, raw)))


LATIN1 = "Zellkern: Ä\n".encode("latin-1")


@pytest.mark.parametrize(
    ("role", "name", "read"),
    [
        ("forget_corpus", "c.jsonl", lambda ws: ws.documents("forget_corpus")),
        ("retain_corpus", "c.txt", lambda ws: ws.documents("retain_corpus")),
        ("forget_questions", "q.json", lambda ws: ws.questions("forget_questions")),
    ],
    ids=["jsonl", "lines", "wmdp-json"],
)
def test_files_that_are_not_utf8_are_named(tmp_path, role, name, read):
    content = b'{"text": "' + LATIN1 * 10 + b'"}\n' if name.endswith("jsonl") else LATIN1
    ws = _local(tmp_path, role, name, content)
    with pytest.raises(DataSourceError, match=rf"{name} is not UTF-8 text"):
        read(ws)


def _mmlu(tmp_path, text: bytes) -> Workspace:
    folder = tmp_path / "mmlu"
    folder.mkdir()
    (folder / "anatomy_test.csv").write_bytes(text)
    raw = preset()
    raw["data"]["side_effect_questions"].update(path=str(folder), subjects=["anatomy"], apart=[])
    return Workspace.open(str(write_config(tmp_path, raw)))


@pytest.mark.parametrize(
    ("closing", "message"),
    [
        ('"Question 4",a,b,c,d,C', r"lines 2-5: not valid CSV .* quote opened on line 2"),
        ('Question 4 ends a quote",a,b,c,d,C', r"row 2 \(line 2-5\): a field holds whole rows"),
    ],
    ids=["parse-error", "would-merge-silently"],
)
def test_an_unclosed_quote_in_mmlu_is_named_not_merged(tmp_path, closing, message):
    rows = [f"Question {i}?,a,b,c,d,A" for i in range(4)]
    rows[1] = '"Question 1 opens a quote?,a,b,c,d,B'
    ws = _mmlu(tmp_path, "\n".join([*rows, closing, "Question 5?,a,b,c,d,D\n"]).encode())
    with pytest.raises(DataSourceError, match=message):
        ws.questions("side_effect_questions")


def test_mmlu_that_is_not_utf8_is_named(tmp_path):
    ws = _mmlu(tmp_path, "Qüestion?,a,b,c,d,A\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match=r"anatomy_test\.csv is not UTF-8"):
        ws.questions("side_effect_questions")


def test_a_limit_keeps_the_first_documents(ws):
    everything = ws.documents("loss_text")
    assert ws.documents("loss_text", limit=7) == everything[:7]
    train, heldout = ws.documents_split("loss_text", limit=200)
    assert sorted(train + heldout) == sorted(everything[:200])


def test_the_files_stamp_changes_when_a_question_file_is_edited(tmp_path):
    good = {"question": "Fine?", "choices": ["a", "b", "c", "d"], "answer": 1}
    ws = _local(tmp_path, "forget_questions", "q.json", json.dumps([good]).encode())
    path = ws.config.local_path(ws.config.source("forget_questions"))
    first = files_stamp(ws.config)
    assert files_stamp(ws.config) == first
    path.write_text(json.dumps([good | {"answer": 2}]))  # re-keyed, same size
    os.utime(path, ns=(1, 1))
    assert files_stamp(ws.config) != first
