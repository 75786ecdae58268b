"""Records on disk: the key a cache file is stored under, and writes that never leave a
half-written file behind (an interrupted write keeps the previous file)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def record_key(record: Any) -> str:
    """16 hex digits of the SHA-256 of `record` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file beside `path` (folders made), then replace `path`
    with it at once. The temporary name is per process and thread (the app's sessions are
    threads of one process), so concurrent writers never mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        with open(partial, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: Path, record: Any, indent: int | None = None, sort_keys: bool = False) -> None:
    """Write `record` as JSON (one trailing newline), atomically."""
    text = json.dumps(record, indent=indent, sort_keys=sort_keys) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode()))


def save_array(path: Path, array: np.ndarray) -> None:
    """Write an .npy file atomically."""
    write_atomic(path, lambda handle: np.save(handle, array))
