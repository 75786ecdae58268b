"""The stamp `prepare` leaves: read while another session writes it, it is the old stamp or
the new one, never a half-written file."""

import threading

from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config


def test_the_stamp_is_never_read_half_written(tmp_path, cache_root):
    raw = preset()
    raw["model"] = {"source": "local", "name": raw["model"]["name"], "path": str(tmp_path)}
    ws = Workspace.open(str(write_config(tmp_path, raw)))
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
