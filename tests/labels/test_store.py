"""The label store's labels: persistence, keying by SAE, partial edits, concurrent writers,
bad input (to labels and sets alike) refused with nothing changed."""

import subprocess
import sys
import textwrap

import pytest

from core.base.paths import REPO_ROOT
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


@pytest.mark.parametrize(
    "tags",
    [["biology", "not biology"], ["Biology", "not  biology"], ["unclear", "NOT unclear", "x"]],
    ids=["exact", "case-and-spaces", "another-tag"],
)
def test_contradictory_tags_are_refused_and_nothing_changes(store, tags):
    store.set_label(9, label="cells", tags=["biology"])
    with pytest.raises(LabelStoreError, match="contradict each other"):
        store.set_label(9, label="changed", tags=tags)
    assert (store.label(9).label, store.label(9).tags) == ("cells", ("biology",))
    assert store.set_label(9, tags=["not biology", "unclear"]).tags == ("not biology", "unclear")
