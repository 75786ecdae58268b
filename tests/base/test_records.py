"""Record keys and atomic writes: an interrupted write keeps the previous file."""

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from core.base.records import record_key, save_array, write_atomic, write_json
from core.errors import UserError


def test_key_ignores_key_order():
    assert record_key({"a": 1, "b": [2]}) == record_key({"b": [2], "a": 1})
    assert len(record_key({"a": 1})) == 16


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "deep" / "record.json"
    write_json(path, {"v": 1}, indent=2, sort_keys=True)

    def fail(handle):
        handle.write(b"{half")
        raise OSError("5 requested and 2 written")  # numpy's short write: no errno

    with pytest.raises(UserError, match=r"record\.json: a short write \(5 requested"):
        write_atomic(path, fail)
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]


def test_arrays_round_trip(tmp_path):
    save_array(tmp_path / "a.npy", np.arange(6, dtype=np.int32).reshape(2, 3))
    assert np.load(tmp_path / "a.npy").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_threads_writing_one_file_at_once_never_mix(tmp_path):
    """The app's sessions are threads of one process: each writer has its own temporary
    file, so the file ends whole, as one writer wrote it, and no writer fails."""
    path, start, failures = tmp_path / "stream.npy", threading.Barrier(8), []

    def writer(value: int) -> None:
        start.wait()
        try:
            for _ in range(5):
                save_array(path, np.full(250_000, value, dtype=np.int32))
        except OSError as exc:  # the shared temporary name made replace() lose the race
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    kept = np.load(path)
    assert len(kept) == 250_000 and len(set(kept.tolist())) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["stream.npy"]


def test_a_memo_written_onto_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("this system has no /dev/full")
    path = tmp_path / "evals" / "run-1.json"
    write_json(path, {"kept": 1})
    partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
    partial.symlink_to(full)  # where write_atomic writes first: every write fails ENOSPC
    with pytest.raises(UserError, match=r"Could not write .*run-1\.json: No space left"):
        write_json(path, {"kept": 2})
    assert json.loads(path.read_text()) == {"kept": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["run-1.json"]  # no partial file
