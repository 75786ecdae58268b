"""Records on disk: the key a cache file is stored under, writes that never leave a
half-written file behind (an interrupted write keeps the previous file), and the one reader
of memos, which moves a damaged memo aside so that it is computed again."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.errors import UserError

log = logging.getLogger(__name__)

# What loading a damaged memo raises: cut short or not JSON (ValueError, of which
# JSONDecodeError and UnicodeDecodeError are kinds), an archive cut short or empty
# (BadZipFile, EOFError), an array missing from it (KeyError).
DAMAGE = (ValueError, KeyError, EOFError, zipfile.BadZipFile)
Fields = Mapping[str, type | tuple[type, ...]]
NUMBER = (int, float)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, None)  # no room, quota, size limit


def record_key(record: Any) -> str:
    """16 hex digits of the SHA-256 of `record` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file beside `path` (folders made), then replace `path`
    with it at once. The temporary name is per process and thread (the app's sessions are
    threads of one process), so concurrent writers never mix. A full disk (or a file-size
    limit) is a UserError naming `path`; the previous file, if any, stays whole."""
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    except OSError as exc:
        if exc.errno not in DISK_FULL:  # None: a short write (numpy's), a disk filling up
            raise
        raise UserError(
            f"Could not write {path}: {exc.strerror or f'a short write ({exc})'}. "
            "Nothing of it was kept; free some space and run again."
        ) from exc
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, record: Any, indent: int | None = None, sort_keys: bool = False) -> None:
    """Write `record` as JSON (one trailing newline), atomically."""
    text = json.dumps(record, indent=indent, sort_keys=sort_keys) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def save_array(path: Path, array: np.ndarray) -> None:
    """Write an .npy file atomically."""
    write_atomic(path, lambda handle: np.save(handle, array))


def stat_digest(files: Iterable[Path], root: Path) -> str:
    """A SHA-256 of each file's path under `root`, size and modification time, in order:
    it changes when a file is replaced or re-saved, and no file is opened."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def read_memo(
    path: Path,
    fields: Fields | None = None,
    check: Callable[[Any], str | None] | None = None,
    version: int | None = None,
    load: Callable[[Path], Any] = read_json,
) -> Any | None:
    """The memo kept at `path` (JSON, or what `load` makes of the file); None when there is
    none or it is damaged: unreadable, not an object with `fields` (name: type), of another
    `version` (its "version" field) or refused by `check` (which names the problem). A
    damaged memo is moved aside (`<name>.damaged-<time>-<pid>`, never deleted) with a
    one-line warning, and the caller computes it again."""
    try:
        memo = load(path)
        problem = _schema_problem(memo, fields or {}, version) or (check and check(memo))
    except FileNotFoundError:  # none yet, or another reader just moved it aside
        return None
    except DAMAGE as exc:
        problem = f"unreadable: {exc}"
    if not problem:
        return memo
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    aside = path.with_name(f"{path.name}.damaged-{stamp}-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another reader moved it first and said so
        return None
    said = " ".join(str(problem).split())  # one line
    log.warning(
        "%s is damaged (%s): moved aside as %s; computing it again.", path, said, aside.name
    )
    return None


def _schema_problem(memo: Any, fields: Fields, version: int | None) -> str | None:
    if not isinstance(memo, dict):
        return f"a {type(memo).__name__}, not an object"
    if missing := [name for name in fields if name not in memo]:
        return f"no {', '.join(missing)}"
    if wrong := [name for name, kind in fields.items() if not isinstance(memo[name], kind)]:
        return f"{', '.join(wrong)} of the wrong type"
    if version is not None and memo.get("version") != version:
        return f"version {memo.get('version')!r}, not {version}"
    return None
