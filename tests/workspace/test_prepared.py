"""The stamp `prepare` leaves: read while another session writes it, it is the old stamp or
the new one, never a half-written file; a damaged stamp is moved aside and reads as none."""

import threading

import pytest

from core.workspace.workspace import Workspace
from tests.helpers import MEMO_DAMAGES, assert_moved_aside, damage_memo, preset, write_config


def _workspace(tmp_path) -> Workspace:
    """The offline preset with a local model folder: nothing to convert or load."""
    raw = preset()
    raw["model"] = {"source": "local", "name": raw["model"]["name"], "path": str(tmp_path)}
    return Workspace.open(str(write_config(tmp_path, raw)))


def test_the_stamp_is_never_read_half_written(tmp_path, cache_root):
    ws = _workspace(tmp_path)
    assert not ws.is_prepared()
    ws.mark_prepared()
    writing, seen = threading.Event(), []

    def writer() -> None:
        for _ in range(300):
            ws.mark_prepared()
        writing.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not writing.is_set():
        seen.append(ws.is_prepared())
    thread.join()
    assert len(seen) > 10 and all(seen)


@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_stamp_reads_as_not_prepared(tmp_path, cache_root, caplog, kind):
    ws = _workspace(tmp_path)
    ws.mark_prepared()
    path = ws.folder / "prepared.json"
    damaged = damage_memo(path, kind, "stamp")
    assert not ws.is_prepared()  # as before the first `prepare`
    assert_moved_aside(path, damaged, caplog)
    ws.mark_prepared()
    assert ws.is_prepared()
