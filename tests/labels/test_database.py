"""The label database: its schema version, processes making it at once, reads beside another
process's write lock, and one clear error for a database or folder that cannot be used."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from core.base.paths import REPO_ROOT
from core.labels.database import LabelDatabase
from core.labels.schema import SCHEMA_VERSION
from core.labels.store import LabelStore
from core.labels.text import LabelStoreError

SAE = "trained-here:assets/saes/test"


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", SAE, d_sae=4096)


def test_schema_version_is_recorded_and_a_newer_one_is_refused(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LabelStoreError, match="schema version 99, newer"):
        LabelDatabase(store.path, SAE, d_sae=4096)


def test_three_processes_making_the_database_at_once_all_use_it(tmp_path):
    """Each migrates in one immediate transaction that reads the version again: one creates
    the schema, the others find it made."""
    path = tmp_path / "new" / "labels.sqlite"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from core.labels.store import LabelStore
        path, me = Path(sys.argv[1]), int(sys.argv[2])
        (path.parent.parent / f"ready-{me}").touch()
        while len(list(path.parent.parent.glob("ready-*"))) < 3:
            time.sleep(0.001)
        LabelStore(path, "SAE_ID", d_sae=4096).set_label(me, label=f"by {me}")
        """
    ).replace("SAE_ID", SAE)
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(me)], cwd=REPO_ROOT)
        for me in range(3)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0] * 3
    labels = LabelStore(path, SAE, d_sae=4096).labels()
    assert {feature: labels[feature].label for feature in labels} == {
        me: f"by {me}" for me in range(3)
    }
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]


def test_reads_go_on_while_another_process_holds_the_write_lock(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path, SAE, d_sae=4096).save_set("s", [1, 2])
    holder = textwrap.dedent(
        """
        import sqlite3, sys, time
        db = sqlite3.connect(sys.argv[1], isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        store = LabelStore(path, SAE, d_sae=4096)  # opening reads the schema only
        assert store.set_names() == ["s"] and store.get_set("s").features == (1, 2)
        assert process.poll() is None, "the reads finished while the lock was held"
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"\x8f" * 5000),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: (p.unlink(), p.mkdir()),
    ],
    ids=["random-bytes", "truncated", "a-folder"],
)
def test_a_damaged_database_is_one_clear_error_and_left_as_it_is(tmp_path, damage):
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path, SAE, d_sae=4096)
    store.save_set("s", list(range(200)), notes=["n" * 200] * 200)
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    damage(path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(LabelStoreError, match=r"cannot be used .* move it away"):
        LabelStore(path, SAE, d_sae=4096).get_set("s")
    assert (path.read_bytes() if path.is_file() else None) == before


def test_a_label_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workspace folder should go")
    with pytest.raises(LabelStoreError, match="cannot be used"):
        LabelDatabase(blocker / "labels.sqlite", SAE, d_sae=4096)
