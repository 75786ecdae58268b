"""Feature sets in the store: create, edit, duplicate, compare, delete; concurrent writers;
labels imported with a set."""

import signal
import subprocess
import sys
import textwrap

import pytest

from core.base.paths import REPO_ROOT
from core.labels.sets import compare_sets
from core.labels.store import LabelStore
from core.labels.text import LabelStoreError

SAE = "trained-here:assets/saes/test"


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", SAE, d_sae=4096)


def test_feature_sets_create_edit_duplicate_compare_delete(store):
    store.save_set("top-3", [7, 3, 9], [1.0, 2.0, 0.5], note="first try")
    assert store.get_set("top-3").features == (7, 3, 9)  # order kept
    with pytest.raises(LabelStoreError, match="exists already"):
        store.save_set("top-3", [1])
    store.save_set("top-3", [7, 3], [1.5, 2.0], overwrite=True)
    store.duplicate_set("top-3", "copy")
    store.save_set("copy", [3, 11], [2.0, 1.0], overwrite=True)
    diff = compare_sets(store.get_set("top-3"), store.get_set("copy"))
    assert diff == {"only_first": [7], "only_second": [11], "both": [(3, 2.0, 2.0)]}
    store.delete_set("copy")
    assert store.set_names() == ["top-3"]


def _run_workers(script: str, *argv_sets: tuple[str, ...]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-c", script, *argv], cwd=REPO_ROOT) for argv in argv_sets
    ]


def test_results_added_from_two_processes_are_all_kept(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path, SAE, d_sae=4096).save_set("s", [1, 2])
    script = textwrap.dedent(
        """
        import pathlib, sys
        from core.labels.store import LabelStore
        store = LabelStore(pathlib.Path(sys.argv[1]), "SAE_ID", d_sae=4096)
        for i in range(100):
            store.add_results("s", {"who": sys.argv[2], "i": i})
        """
    ).replace("SAE_ID", SAE)
    workers = _run_workers(script, (str(path), "a"), (str(path), "b"))
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    results = LabelStore(path, SAE, d_sae=4096).get_set("s").results
    assert sorted((r["who"], r["i"]) for r in results) == [
        (who, i) for who in "ab" for i in range(100)
    ]


KILLED_AT = textwrap.dedent(
    """
    import os, pathlib, signal, sqlite3, sys
    statements, real_connect = [0], sqlite3.connect

    def killed_at_statement(*args, **kwargs):  # SIGKILL as SQLite starts statement n
        db = real_connect(*args, **kwargs)

        def trace(sql):
            statements[0] += 1
            if statements[0] == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

        db.set_trace_callback(trace)
        return db

    sqlite3.connect = killed_at_statement
    from core.labels.store import LabelStore
    store = LabelStore(pathlib.Path(sys.argv[1]), "SAE_ID", d_sae=4096)
    gate = {"alpha": 0.5, "rule": "per feature", "calibration": {"percentile": 95}}
    store.add_results("s", {"accuracy": 0.25}, gate=gate)
    """
).replace("SAE_ID", SAE)


def test_a_kill_at_any_statement_keeps_a_result_and_its_gate_both_or_neither(tmp_path):
    """`eval --set --gate 95 --save` writes the result and its gate together: killed at
    each SQL statement in turn, the set has both or neither, never a result without its gate."""
    outcomes = set()
    for statement in range(1, 40):
        path = tmp_path / f"labels-{statement}.sqlite"
        LabelStore(path, SAE, d_sae=4096).save_set("s", [1, 2])
        (worker,) = _run_workers(KILLED_AT, (str(path), str(statement)))
        killed = worker.wait(timeout=60) == -signal.SIGKILL
        kept = LabelStore(path, SAE, d_sae=4096).get_set("s")
        outcomes.add((killed, bool(kept.results), kept.gate is not None))
        if not killed:
            break
    assert outcomes == {(True, False, False), (True, True, True), (False, True, True)}


def test_a_set_read_while_it_is_rewritten_is_never_half_there(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path, SAE, d_sae=4096).save_set("s", list(range(20)))
    writer = textwrap.dedent(
        """
        import pathlib, sys
        from core.labels.store import LabelStore
        store = LabelStore(pathlib.Path(sys.argv[1]), "SAE_ID", d_sae=4096)
        for i in range(150):
            store.save_set("s", list(range(i % 5, 20 + i % 5)), overwrite=True)
        """
    ).replace("SAE_ID", SAE)
    (worker,) = _run_workers(writer, (str(path),))
    reader = LabelStore(path, SAE, d_sae=4096)
    sizes = set()
    while worker.poll() is None:
        sizes.add(len(reader.get_set("s").features))
    assert worker.returncode == 0
    assert sizes == {20}


def test_an_old_import_keeps_the_newer_local_label_unless_overwritten(store):
    store.set_label(3, label="local, newer", author="ada")
    old = {3: {"label": "exported earlier", "updated_at": "2020-01-01T00:00:00+00:00"}}
    store.save_set("imported", [3], labels=old)
    assert store.label(3).label == "local, newer"
    assert store.history(3)[-1]["changes"]["import"] == "import kept the newer local label"
    store.save_set("imported", [3], labels=old, overwrite=True)
    assert store.label(3).label == "exported earlier"
    assert store.history(3)[-1]["changes"]["import"] == "imported"


FUTURE = {3: {"label": "from the future", "updated_at": "2099-01-01T00:00:00+00:00"}}


def test_an_import_dated_in_the_future_never_reverts_a_local_label(store, caplog):
    store.set_label(3, label="local edit", author="ada")
    store.save_set("imported", [3], labels=FUTURE)
    assert store.label(3).label == "local edit"
    kept = store.history(3)[-1]["changes"]
    assert kept["label"] == "from the future" and kept["updated_at"].startswith("2099")
    assert "not known to be newer: kept the local label" in kept["import"]
    assert "dated 2099-01-01" in caplog.text and "kept the local label" in caplog.text
    store.save_set("imported", [3], labels=FUTURE, overwrite=True)
    assert store.label(3).label == "from the future"


def test_a_future_dated_label_is_kept_dated_now_so_a_later_edit_stays_newer(store):
    store.save_set("imported", [3], labels=FUTURE)
    assert store.label(3).label == "from the future"
    assert store.label(3).updated_at < "2099"
    assert "imported, dated now" in store.history(3)[-1]["changes"]["import"]
    store.set_label(3, label="edited here after")
    store.save_set("again", [3], labels=FUTURE)
    assert store.label(3).label == "edited here after"


def test_multipliers_change_in_place_and_refuse_strangers(store):
    store.save_set("s", [3, 5, 8], [1.0, 1.0, 1.0], note="kept", results=[{"r": 1}])
    changed = store.set_multipliers("s", {5: 0.25, 8: 2.0})
    assert changed.multipliers == (1.0, 0.25, 2.0) and changed.features == (3, 5, 8)
    assert changed.note == "kept" and changed.results == [{"r": 1}]
    with pytest.raises(LabelStoreError, match="not in the set"):
        store.set_multipliers("s", {9: 1.0})
    with pytest.raises(LabelStoreError, match="finite"):
        store.set_multipliers("s", {3: float("inf")})
    assert store.get_set("s").multipliers == (1.0, 0.25, 2.0)
