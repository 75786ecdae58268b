"""JSON records on disk: the key a cache file is stored under, and writes that never leave a
half-written file behind (an interrupted write keeps the previous file)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def record_key(record) -> str:
    """16 hex digits of the SHA-256 of `record` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: Path, record, indent: int | None = None) -> None:
    """Write `record` to `path` (folders made) through a temporary file, replaced at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=indent) + "\n")
    partial.replace(path)
