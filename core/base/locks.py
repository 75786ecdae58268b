"""One writer at a time of a shared file or folder, across processes and threads, and
temporary names beside a target that no other writer uses.

A lock is `fcntl.flock` on a lock file: it belongs to an open file, so another process, or
another thread opening the file itself, waits for it, and a killed holder frees it at once.
Lock files are never deleted: a process could be waiting on the deleted file while another
locks a new one of the same name.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_PARTIAL = re.compile(r"^\.partial(?:-(\d+)-[0-9a-f]+)?$")


@contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lock of `path` (the file and its folders made if missing) for the block;
    `what` names the work in the log line of a writer that has to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for %s in another process or session (lock %s)", what, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:  # not only on close: a child forked meanwhile would keep the lock open
            fcntl.flock(handle, fcntl.LOCK_UN)


def private_partial(target: Path) -> Path:
    """`<target>.partial-<pid>-<random>`: a temporary name beside `target` for one writer."""
    return target.with_name(f"{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")


def remove_dead_partials(target: Path) -> list[Path]:
    """Delete the temporary files and folders beside `target` whose process no longer runs
    (and the fixed `<target>.partial` of earlier versions). Call it under the target's lock,
    so no live writer's is touched. Returns what was deleted."""
    removed = []
    for path in target.parent.glob(f"{glob.escape(target.name)}.partial*"):
        match = _PARTIAL.match(path.name[len(target.name) :])
        if match is None or (match.group(1) and _running(int(match.group(1)))):
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
