"""The lock between writers of a shared file: threads and processes take turns, a killed
holder frees it, and only the temporary folders of writers that no longer run are cleared."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from core.base.locks import file_lock, private_partial, remove_dead_partials
from core.base.paths import REPO_ROOT

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from core.base.locks import file_lock
    with file_lock(Path(sys.argv[1]), "a test"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_threads_take_turns(tmp_path):
    path, start, events = tmp_path / "x.lock", threading.Barrier(4), []

    def writer(name: int) -> None:
        start.wait()
        for _ in range(3):
            with file_lock(path, "a test"):
                events.append(("in", name))
                time.sleep(0.01)
                events.append(("out", name))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(events) == 24
    assert all(
        events[i][0] == "in" and events[i + 1] == ("out", events[i][1]) for i in range(0, 24, 2)
    )


def test_a_writer_waits_for_another_process_and_a_killed_holder_frees_the_lock(tmp_path):
    path, acquired = tmp_path / "deep" / "x.lock", threading.Event()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"

        def wait() -> None:
            with file_lock(path, "a test"):
                acquired.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert not acquired.wait(0.5)
        holder.send_signal(signal.SIGKILL)
        assert acquired.wait(10)
        waiter.join()
    finally:
        holder.kill()
        holder.wait()
    assert path.exists()  # kept: deleting it could let two writers lock two files


def test_only_the_leftovers_of_writers_that_no_longer_run_are_removed(tmp_path):
    target = tmp_path / "model[1]"  # glob characters in the name are literal
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = target.with_name(f"{target.name}.partial-{int(done.stdout)}-00ff")
    live = private_partial(target)
    assert live != private_partial(target)  # one name per writer, even in one process
    legacy = target.with_name(f"{target.name}.partial")
    unrelated = [target, target.with_name(f"{target.name}.lock"), tmp_path / "model1.partial"]
    for folder in (dead, live, legacy, target):
        (folder / "sub").mkdir(parents=True)
    for path in unrelated[1:]:
        path.write_text("")
    assert sorted(remove_dead_partials(target)) == sorted([dead, legacy])
    assert sorted(tmp_path.iterdir()) == sorted([live, *unrelated])
    assert live.name.startswith(f"model[1].partial-{os.getpid()}-")
