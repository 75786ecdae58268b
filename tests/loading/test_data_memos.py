"""In-process memos of local data (issue 28 §2): a corpus file is read and hashed once per
version (path, size, modification time); an edit is seen, the numbers are the same."""

import hashlib
import json
import os

from core.loading import data
from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config

DOCS = [f"Document {i}: " + "cells divide by mitosis and meiosis. " * 3 for i in range(40)]


def _corpus_ws(tmp_path, docs: list[str]) -> Workspace:
    path = tmp_path / "data" / "corpus.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
    raw = preset()
    raw["data"]["forget_corpus"].update(path=str(path))
    return Workspace.open(str(write_config(tmp_path, raw)))


def _rewrite_keeping_stamp(path, text: str) -> None:
    """Replace the file's bytes but keep its size and modification time."""
    stat = path.stat()
    assert len(text.encode()) == stat.st_size
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_fingerprint_equals_the_content_hash_and_follows_an_edit(tmp_path):
    ws = _corpus_ws(tmp_path, DOCS)
    path = ws.config.local_path(ws.config.source("forget_corpus"))
    expected = hashlib.sha256(path.name.encode() + path.read_bytes()).hexdigest()
    first = data.fingerprint(ws.config, "forget_corpus")
    assert first == "sha256:" + expected
    assert data.fingerprint(ws.config, "forget_corpus") == first
    edited = path.read_text().replace("Document 3:", "Document X:")
    _rewrite_keeping_stamp(path, edited)
    assert data.fingerprint(ws.config, "forget_corpus") == first  # not read again
    os.utime(path, ns=(1, 1))  # the modification time moves: read again
    expected = hashlib.sha256(path.name.encode() + path.read_bytes()).hexdigest()
    assert data.fingerprint(ws.config, "forget_corpus") == "sha256:" + expected != first
    with path.open("a") as handle:  # the size moves
        handle.write(json.dumps({"text": "A new document about ribosomes. " * 3}) + "\n")
    os.utime(path, ns=(1, 1))
    assert data.fingerprint(ws.config, "forget_corpus") not in (first, "sha256:" + expected)


def test_documents_are_read_once_per_version_of_the_file(tmp_path):
    ws = _corpus_ws(tmp_path, DOCS)
    path = ws.config.local_path(ws.config.source("forget_corpus"))
    docs = ws.documents("forget_corpus")
    assert docs == DOCS
    _rewrite_keeping_stamp(path, path.read_text().replace("Document 3:", "Document X:"))
    again = ws.documents("forget_corpus")
    assert again is docs and again == DOCS  # the same list: the file was not read again
    assert ws.documents_split("forget_corpus") is ws.documents_split("forget_corpus")
    os.utime(path, ns=(1, 1))
    edited = ws.documents("forget_corpus")
    assert edited is not docs and edited[3].startswith("Document X:")
    assert edited == data._local_texts(ws.config, ws.config.source("forget_corpus"))
    train, heldout = ws.documents_split("forget_corpus")
    assert sorted(train + heldout) == sorted(edited)


def test_a_limit_is_its_own_entry(tmp_path):
    ws = _corpus_ws(tmp_path, DOCS)
    assert ws.documents("forget_corpus", limit=5) == DOCS[:5]
    assert ws.documents("forget_corpus") == DOCS
