"""Data sources for each role of METHOD §2: text corpora and multiple-choice questions.

Each source is a hub dataset or a local file under the workspace's data dir. Loading checks
the content and names the offending row, so a bad file fails with a message, not a crash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.base.config import DataSourceConfig, WorkspaceConfig
from core.base.hub import require_hub
from core.base.records import stat_digest
from core.errors import DataSourceError
from core.loading.hub_cache import dataset_prepared, dataset_revision, load_hub_dataset

MIN_DOCUMENT_CHARS = 50
LETTERS = ("A", "B", "C", "D")
ROW_END = re.compile(r",\s*[ABCD]\s*$")  # the end of an MMLU row: ",<letter>"


@dataclass(frozen=True)
class Question:
    """A four-choice question; `answer` indexes `choices`."""

    question: str
    choices: tuple[str, str, str, str]
    answer: int
    subject: str


def describe(ws: WorkspaceConfig, source: DataSourceConfig, portable: bool = False) -> str:
    """One line saying where a role's data comes from. `portable` names a local file by its
    path under the data dir (for records that must not depend on this machine)."""
    if source.source == "hub":
        parts = [source.dataset, source.subset, source.split]
        return "hub:" + "/".join(part for part in parts if part)
    if portable:
        return f"data_dir:{source.path} ({source.format})"
    return f"{ws.local_path(source)} ({source.format})"


def missing_local_file(ws: WorkspaceConfig, source: DataSourceConfig) -> str | None:
    """A message if a local source's file is absent, else None. Hub sources are not checked."""
    if source.source != "local":
        return None
    path = ws.local_path(source)
    if path.exists():
        return None
    return (
        f"Data file for {source.role} not found: {path}. Put the file there, point data_dir "
        f"at the folder that holds it (in {ws.config_path or 'the workspace config'} or with "
        "the UNLEARNING_LENS_DATA_DIR environment variable), or change [data."
        f"{source.role}] path."
    )


_DOCUMENTS: dict[tuple, list[str]] = {}  # the last local corpora read, by file version
_DOCUMENTS_KEPT = 4
_WRITING = threading.Lock()


def load_documents(ws: WorkspaceConfig, role: str, limit: int | None = None) -> list[str]:
    """The documents of a corpus role, longer than 50 characters, in source order; the first
    `limit` of them when given (a hub source is then streamed: only those are read). A local
    file is read once per version (path, size, modification time) in a process, and the
    same list is returned while it is unchanged: callers must not modify it."""
    source = ws.source(role)
    if source.source == "hub":
        return _long_documents(ws, source, _hub_column(source, source.field, limit), limit)
    if missing := missing_local_file(ws, source):
        raise DataSourceError(missing)
    key = (file_stamps(_source_files(ws, source)), source.format, source.field, limit)
    if (found := _DOCUMENTS.get(key)) is None:
        found = _long_documents(ws, source, _local_texts(ws, source), limit)
        with _WRITING:  # pages of several sessions run in threads of one process
            while len(_DOCUMENTS) >= _DOCUMENTS_KEPT:  # the oldest goes: corpora can be large
                del _DOCUMENTS[next(iter(_DOCUMENTS))]
            _DOCUMENTS[key] = found
    return found


def _long_documents(
    ws: WorkspaceConfig, source: DataSourceConfig, texts: list[str], limit: int | None
) -> list[str]:
    docs = [text for text in texts if isinstance(text, str) and len(text) > MIN_DOCUMENT_CHARS]
    docs = docs[:limit] if limit is not None else docs
    if not docs:
        raise DataSourceError(
            f"{describe(ws, source)} has no documents longer than {MIN_DOCUMENT_CHARS} characters."
        )
    return docs


def seeded_bucket(text: str, seed: int) -> float:
    """A float in [0, 1) from a hash of `text` salted with `seed`: what puts an item in a
    split, whatever the other items are and in whatever order."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_heldout(docs: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split documents into (train, held-out) by a seeded hash of their text: stable under
    reordering and independent of how many documents there are."""
    train: list[str] = []
    heldout: list[str] = []
    for doc in docs:
        (heldout if seeded_bucket(doc, seed) < fraction else train).append(doc)
    return train, heldout


def load_questions(ws: WorkspaceConfig, role: str) -> list[Question]:
    """The questions of a question role (forget questions or side-effect questions)."""
    source = ws.source(role)
    if source.source == "hub":
        return _hub_questions(source)
    if missing := missing_local_file(ws, source):
        raise DataSourceError(missing)
    path = ws.local_path(source)
    if source.format == "wmdp-json":
        return _wmdp_json(path)
    if source.format == "mmlu-csv":
        if not source.subjects:
            raise DataSourceError(f"[data.{role}] needs subjects = [...] for mmlu-csv.")
        return [q for subject in source.subjects for q in _mmlu_csv(path, subject)]
    raise DataSourceError(f"[data.{role}] format {source.format!r} does not hold questions.")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataSourceError:
    return DataSourceError(
        f"{path} is not UTF-8 text (byte {exc.start} of a chunk: {exc.reason}). Convert it "
        "to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
    )


def _local_texts(ws: WorkspaceConfig, source: DataSourceConfig) -> list[str]:
    if missing := missing_local_file(ws, source):
        raise DataSourceError(missing)
    path = ws.local_path(source)
    try:
        return _read_texts(path, source)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc


def _read_texts(path: Path, source: DataSourceConfig) -> list[str]:
    if source.format == "lines":
        return path.read_text(encoding="utf-8").splitlines()
    if source.format == "jsonl":
        texts = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataSourceError(
                        f"{path}, line {number}: not valid JSON ({exc})."
                    ) from exc
                if not isinstance(record, dict) or source.field not in record:
                    raise DataSourceError(
                        f"{path}, line {number}: no field '{source.field}' "
                        f'(set field = "..." in [data.{source.role}]).'
                    )
                if not isinstance(record[source.field], str):
                    raise DataSourceError(
                        f"{path}, line {number}: field '{source.field}' is not text."
                    )
                texts.append(record[source.field])
        return texts
    raise DataSourceError(f"[data.{source.role}] format {source.format!r} does not hold text.")


def _check_question(
    where: str, question: object, choices: object, answer: object, subject: str
) -> Question:
    if not isinstance(question, str) or not question.strip():
        raise DataSourceError(f"{where}: the question text is empty.")
    if not isinstance(choices, (list, tuple)) or len(choices) != 4:
        count = len(choices) if isinstance(choices, (list, tuple)) else "no"
        raise DataSourceError(f"{where}: expected 4 choices, found {count}.")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer <= 3:
        raise DataSourceError(f"{where}: answer {answer!r} is not an index 0-3 (A-D).")
    return Question(question, tuple(str(choice) for choice in choices), answer, subject)  # type: ignore[arg-type]


def _wmdp_json(path: Path) -> list[Question]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataSourceError(f"{path}: not valid JSON ({exc}).") from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    if not isinstance(records, list):
        raise DataSourceError(f"{path}: expected a JSON list of questions.")
    questions = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataSourceError(f"{path}, question {index}: expected an object.")
        questions.append(
            _check_question(
                f"{path}, question {index}",
                record.get("question"),
                record.get("choices"),
                record.get("answer"),
                "biology",
            )
        )
    return questions


def _mmlu_csv(folder: Path, subject: str) -> list[Question]:
    path = folder / f"{subject}_test.csv"
    if not path.exists():
        raise DataSourceError(f"MMLU subject file not found: {path}.")
    questions = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            first_line = 1
            for row in reader:
                lines = f"line {first_line}" + (
                    f"-{reader.line_num}" if reader.line_num > first_line else ""
                )
                where = f"{path}, row {len(questions) + 1} ({lines})"
                first_line = reader.line_num + 1
                if len(row) != 6:
                    raise DataSourceError(f"{where}: expected question, 4 choices and a letter.")
                if any(
                    ROW_END.search(line) for field in row[:5] for line in field.split("\n")[:-1]
                ):
                    raise DataSourceError(
                        f"{where}: a field holds whole rows: a quote is probably not closed."
                    )
                letter = row[5].strip()
                answer = LETTERS.index(letter) if letter in LETTERS else letter
                questions.append(_check_question(where, row[0], row[1:5], answer, subject))
    except csv.Error as exc:
        raise DataSourceError(
            f"{path}, lines {first_line}-{reader.line_num}: not valid CSV ({exc}); a quote "
            f"opened on line {first_line} is probably not closed."
        ) from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    return questions


def hub_source_cached(source: DataSourceConfig) -> bool:
    """Whether every config a hub source reads is in the datasets cache."""
    assert source.dataset is not None
    return all(
        dataset_prepared(source.dataset, subset) for subset in (source.subjects or (source.subset,))
    )


def _hub_dataset(
    source: DataSourceConfig, subset: str | None = None, streaming: bool = False
) -> Any:
    if not dataset_prepared(source.dataset or "", subset or source.subset):
        require_hub(
            f"dataset {source.dataset}",
            f'download it and set [data.{source.role}] source = "local" with a path under data_dir',
        )
    try:
        return load_hub_dataset(
            source.dataset or "", subset or source.subset, source.split, streaming
        )
    except Exception as exc:  # datasets raises many types for gated, missing or bad splits
        gated = " It is gated: request access on its hub page first." if source.gated else ""
        raise DataSourceError(
            f"Could not load {source.dataset} ({subset or source.subset}, {source.split}): "
            f"{exc}.{gated}"
        ) from exc


def _hub_column(source: DataSourceConfig, column: str, limit: int | None = None) -> list[str]:
    """A column of a hub dataset: all of it, or streamed until `limit` documents are long
    enough to keep (OpenWebText is never materialised to read a few thousand)."""
    if limit is None:
        return list(_hub_dataset(source)[column])
    kept: list[str] = []
    for row in _hub_dataset(source, streaming=True):
        text = row[column]
        if isinstance(text, str) and len(text) > MIN_DOCUMENT_CHARS:
            kept.append(text)
            if len(kept) == limit:
                break
    return kept


def _hub_questions(source: DataSourceConfig) -> list[Question]:
    subjects = source.subjects or (source.subset,)
    questions = []
    for subject in subjects:
        table = _hub_dataset(source, subject)
        name = "biology" if subject and subject.startswith("wmdp") else str(subject)
        for index, row in enumerate(table):
            where = f"{source.dataset} {subject}, row {index}"
            questions.append(
                _check_question(where, row["question"], row["choices"], row["answer"], name)
            )
    return questions


def files_stamp(ws: WorkspaceConfig) -> str:
    """A hash of every local data file's name, size and modification time (hub sources by
    their coordinates), read without opening a file: what tells a long-lived view that a
    question or text file was edited."""
    digest = hashlib.sha256()
    for source in ws.data:
        digest.update(f"{source.role}:{source.source}:{source.dataset}:{source.path}\n".encode())
        if source.source == "local":
            path = ws.local_path(source)
            root = path if path.is_dir() else path.parent
            digest.update(stat_digest(_source_files(ws, source), root).encode())
    return digest.hexdigest()


def _source_files(ws: WorkspaceConfig, source: DataSourceConfig) -> list[Path]:
    """A local source's files in order (a folder's, only its subjects' when it names any)."""
    path = ws.local_path(source)
    return [
        file
        for file in (sorted(path.rglob("*")) if path.is_dir() else [path])
        if file.is_file()
        and (not source.subjects or file.stem.removesuffix("_test") in source.subjects)
    ]


UNKNOWN_REVISION = "revision unknown"  # a hub dataset not prepared here (yet)


def fingerprint(ws: WorkspaceConfig, role: str) -> str:
    """A content hash of a local source (files under a folder included); a hub source's
    coordinates and the commit it was prepared from (UNKNOWN_REVISION before it is). Keys
    caches so a changed file or a new revision never reuses them."""
    source = ws.source(role)
    if source.source == "hub":
        assert source.dataset is not None
        subsets = source.subjects or (source.subset,)
        commits = {dataset_revision(source.dataset, subset) for subset in subsets}
        revision = UNKNOWN_REVISION if None in commits else ",".join(sorted(commits))
        coordinates = "/".join(str(part) for part in (source.dataset, source.subset, source.split))
        return f"hub:{coordinates}@{revision}"
    return content_hash(_source_files(ws, source))


_CONTENT_HASHES: dict[tuple, str] = {}  # (path, size, mtime_ns) of each file: its hash


def file_stamps(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """Each file's path, size and modification time (ns): what changes when it is edited,
    read without opening it."""
    stamps = []
    for file in files:
        stat = file.stat()
        stamps.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def content_hash(files: list[Path]) -> str:
    """A SHA-256 of the files' names and bytes, in order. Read once per version of the
    files in a process (pages ask for it several times a rerun): a file whose size or
    modification time changed is read again."""
    stamps = file_stamps(files)
    if (found := _CONTENT_HASHES.get(stamps)) is not None:
        return found
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    found = _CONTENT_HASHES[stamps] = "sha256:" + digest.hexdigest()
    return found
