"""The label and feature-set store: persistence, partial edits, concurrency, bad input."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from core.base.paths import REPO_ROOT
from core.labels.schema import SCHEMA_VERSION
from core.labels.sets import compare_sets
from core.labels.store import LabelStore
from core.labels.text import LabelStoreError

SAE = "trained-here:assets/saes/test"


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", SAE, d_sae=4096)


def test_labels_persist_across_instances_and_are_keyed_by_sae(store, tmp_path):
    store.set_label(12, label="DNA replication", tags=["biology"], author="ada")
    again = LabelStore(tmp_path / "labels.sqlite", SAE, d_sae=4096)
    assert again.label(12).label == "DNA replication"
    assert again.label(12).tags == ("biology",)
    other_sae = LabelStore(tmp_path / "labels.sqlite", "sae-lens:other/sae", d_sae=4096)
    assert other_sae.labels() == {}


def test_an_edit_changes_only_the_fields_it_names(store):
    store.set_label(5, label="cells", author="ada")
    store.set_label(5, note="fires on 'cell' and 'cellular'", author="bob")
    label = store.label(5)
    assert (label.label, label.note, label.author) == (
        "cells",
        "fires on 'cell' and 'cellular'",
        "bob",
    )
    assert [entry["author"] for entry in store.history(5)] == ["ada", "bob"]


def test_schema_version_is_recorded_and_a_newer_one_is_refused(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LabelStoreError, match="schema version 99, newer"):
        LabelStore(store.path, SAE, d_sae=4096)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path, SAE, d_sae=4096)
    script = textwrap.dedent(
        """
        import sys
        from core.labels.store import LabelStore
        path, who, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
        store = LabelStore(__import__("pathlib").Path(path), "SAE_ID", d_sae=4096)
        for feature in range(start, start + 150):
            store.set_label(feature, label=f"{who}-{feature}", author=who)
            if who == "a":
                store.set_label(4000, label="from a", author=who)
            else:
                store.set_label(4000, note="from b", author=who)
        """
    ).replace("SAE_ID", SAE)
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), who, str(start)], cwd=REPO_ROOT)
        for who, start in (("a", 0), ("b", 1000))
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    labels = LabelStore(path, SAE, d_sae=4096).labels()
    assert all(labels[f].label == f"a-{f}" for f in range(150))
    assert all(labels[f].label == f"b-{f}" for f in range(1000, 1150))
    assert (labels[4000].label, labels[4000].note) == ("from a", "from b")


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


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.set_label(4096, label="x"), "out of range: this SAE has features 0-4095"),
        (lambda s: s.set_label(-1, label="x"), "out of range"),
        (lambda s: s.save_set("dup", [1, 2, 1]), "Feature 1 appears twice"),
        (lambda s: s.save_set("  ", [1]), "needs a name"),
        (lambda s: s.save_set("bad", [1], [float("nan")]), "not a finite number"),
        (lambda s: s.set_label(1, label="x" * 5000), "the limit is"),
        (lambda s: s.set_label(1, label="bell\x07"), "control characters"),
        (lambda s: s.delete_set("missing"), "No feature set named 'missing'"),
        (lambda s: s.save_set("empty", []), "has no features"),
        (lambda s: s.save_set("r", [1], results={}), "results must be a list"),
        (lambda s: s.save_set("r", [1], selection=[1]), "selection record must be an object"),
        (lambda s: s.add_results("missing", {}), "No feature set named 'missing'"),
    ],
    ids=[
        "feature-too-big",
        "feature-negative",
        "duplicate",
        "blank-name",
        "nan",
        "huge",
        "control",
        "missing",
        "empty-set",
        "results-not-list",
        "selection-not-object",
        "results-to-missing-set",
    ],
)
def test_bad_input_is_refused_and_nothing_changes(store, call, message):
    store.save_set("keep", [1, 2])
    store.set_label(1, label="kept")
    before = (store.labels(), store.set_names(), store.get_set("keep"))
    with pytest.raises(LabelStoreError, match=message):
        call(store)
    assert (store.labels(), store.set_names(), store.get_set("keep")) == before


def test_odd_characters_in_names_are_kept_verbatim(store):
    name = "<script>alert('x')</script> ünïcödé & \"quotes\""
    store.save_set(name, [1])
    store.set_label(1, label=name)
    assert store.set_names() == [name]
    assert store.label(1).label == name


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


def test_an_old_import_keeps_the_newer_local_label_unless_overwritten(store):
    store.set_label(3, label="local, newer", author="ada")
    old = {3: {"label": "exported earlier", "updated_at": "2020-01-01T00:00:00+00:00"}}
    store.save_set("imported", [3], labels=old)
    assert store.label(3).label == "local, newer"
    assert store.history(3)[-1]["changes"]["import"] == "import kept the newer local label"
    store.save_set("imported", [3], labels=old, overwrite=True)
    assert store.label(3).label == "exported earlier"
    assert store.history(3)[-1]["changes"]["import"] == "imported"


def test_a_label_folder_that_cannot_be_made_is_one_clear_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workspace folder should go")
    with pytest.raises(LabelStoreError, match="cannot be used"):
        LabelStore(blocker / "labels.sqlite", SAE, d_sae=4096)


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
