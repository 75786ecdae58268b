"""Suggested labels in the store: one per feature and source, replaced by that source's
next one, newest first, checked like labels and never written as labels."""

import pytest

from core.labels.store import LabelStore
from core.labels.text import LabelStoreError


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", "sae-a", 100)


def test_each_source_keeps_one_suggestion_per_feature(store):
    assert store.put_suggestions("evidence", {3: ("cells", {"top": ["cell"]})}) == 1
    store.put_suggestions("neuronpedia", {3: ("membranes", {}), 4: ("enzymes", {})})
    store.put_suggestions("evidence", {3: ("cell walls", {"top": ["wall"]})})
    by_source = {item.source: item for item in store.suggestions(3)}
    assert {s: item.text for s, item in by_source.items()} == {
        "evidence": "cell walls",
        "neuronpedia": "membranes",
    }
    assert by_source["evidence"].evidence == {"top": ["wall"]}
    assert store.labels() == {}


@pytest.mark.parametrize(
    ("source", "suggestions", "message"),
    [
        ("  ", {1: ("x", {})}, "needs the name of its source"),
        ("evidence", {100: ("x", {})}, "out of range"),
        ("evidence", {1: ("bell\x07", {})}, "control characters"),
    ],
    ids=["blank-source", "feature-out-of-range", "control"],
)
def test_bad_suggestions_are_refused_and_nothing_is_stored(store, source, suggestions, message):
    with pytest.raises(LabelStoreError, match=message):
        store.put_suggestions(source, suggestions)
    assert store.suggestions(1) == [] and store.suggestions(100) == []
