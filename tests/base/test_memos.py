"""The one reader of memos: a damaged memo is moved aside (kept) with one warning line and
read as none, so its caller computes it again; a whole memo is read as it is."""

import json

import numpy as np
import pytest

from core.base.records import NUMBER, read_memo, write_json
from tests.helpers import assert_moved_aside

MEMO = {"version": 2, "alpha": 0.5, "rows": [1, 2]}
FIELDS = {"alpha": NUMBER, "rows": list}


def _rows_problem(memo: dict) -> str | None:
    return None if all(isinstance(r, int) for r in memo["rows"]) else "rows are not counts"


@pytest.mark.parametrize(
    ("damaged", "said"),
    [
        (json.dumps(MEMO).encode()[:20], "unreadable: Unterminated string"),
        (b"", "unreadable: Expecting value"),
        (b'{"a": "\xc3\x28"}', "unreadable: 'utf-8' codec"),
        (b"{}", "no alpha, rows"),
        (b"[1, 2]", "a list, not an object"),
        (json.dumps(MEMO | {"alpha": "0.5"}).encode(), "alpha of the wrong type"),
        (json.dumps(MEMO | {"version": 1}).encode(), "version 1, not 2"),
        (json.dumps(MEMO | {"rows": [1, "x"]}).encode(), "rows are not counts"),
    ],
    ids=["truncated", "empty", "not-utf8", "{}", "not-object", "type", "version", "check"],
)
def test_a_damaged_memo_is_moved_aside_and_read_as_none(tmp_path, caplog, damaged, said):
    path = tmp_path / "memo.json"
    path.write_bytes(damaged)
    assert read_memo(path, FIELDS, _rows_problem, version=2) is None
    assert not path.exists()
    assert_moved_aside(path, damaged, caplog)
    assert said in caplog.records[0].getMessage()


def test_a_whole_memo_is_read_and_a_missing_one_is_none_without_a_word(tmp_path, caplog):
    path = tmp_path / "memo.json"
    assert read_memo(path, FIELDS) is None
    write_json(path, MEMO)
    assert read_memo(path, FIELDS, _rows_problem, version=2) == MEMO
    assert [p.name for p in tmp_path.iterdir()] == ["memo.json"] and not caplog.records


def test_each_damaged_copy_is_kept(tmp_path, caplog):
    path = tmp_path / "memo.json"
    for damaged in (b"{", b"{}"):
        path.write_bytes(damaged)
        assert read_memo(path, FIELDS) is None
    kept = sorted(p.read_bytes() for p in tmp_path.glob("memo.json.damaged-*"))
    assert kept == [b"{", b"{}"] and len(caplog.records) == 2


def _arrays(path):
    with np.load(path) as stored:
        return {name: stored[name] for name in ("mean", "hits")}


@pytest.mark.parametrize("kind", ["truncated", "empty", "missing-array", "json"])
def test_an_archive_the_caller_loads_is_moved_aside_when_damaged(tmp_path, caplog, kind):
    path = tmp_path / "memo.npz"
    arrays = {"mean": np.arange(3.0), "hits": np.arange(3)}
    np.savez(path, **({"mean": arrays["mean"]} if kind == "missing-array" else arrays))
    whole = path.read_bytes()
    damaged = {"truncated": whole[:-40], "empty": b"", "json": b"{}"}.get(kind, whole)
    path.write_bytes(damaged)
    assert read_memo(path, load=_arrays) is None
    assert_moved_aside(path, damaged, caplog)
    np.savez(path, **arrays)
    assert read_memo(path, load=_arrays).keys() == arrays.keys()
