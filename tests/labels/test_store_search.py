"""Full-text search of labels and suggestions (SQLite FTS5), kept in step by triggers, and a
database of schema version 1 migrated forward with its labels indexed."""

import sqlite3

import pytest

from core.labels.schema import MIGRATIONS, SCHEMA_VERSION, connect, statements
from core.labels.store import LabelStore
from core.labels.text import LabelStoreError


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels.sqlite", "sae-a", 100)


def found(store: LabelStore, text: str, suggestions: bool = True) -> list[tuple[int, str]]:
    return sorted((hit.feature, hit.kind) for hit in store.search(text, suggestions))


def test_labels_notes_and_tags_are_searched_and_edits_reindex(store):
    store.set_label(3, label="DNA replication", tags=["biology"])
    store.set_label(4, label="Cell membrane", note="lipid bilayer")
    assert found(store, "dna") == [(3, "label")]
    assert found(store, "replic") == [(3, "label")]  # a word's beginning matches
    assert found(store, "lipid") == [(4, "label")]
    assert found(store, "biology") == [(3, "label")]
    assert found(store, "dna membrane") == []  # every word must match
    store.set_label(3, label="RNA splicing")
    assert found(store, "dna") == [] and found(store, "splicing") == [(3, "label")]


def test_suggestions_are_searched_separately_and_never_labels(store):
    store.put_suggestions("neuronpedia", {7: ("protein folding", {"model": "x"})})
    assert found(store, "protein") == [(7, "suggestion")]
    assert found(store, "protein", suggestions=False) == []
    assert store.label(7).label == ""
    store.put_suggestions("neuronpedia", {7: ("enzyme kinetics", {})})
    assert found(store, "protein") == [] and found(store, "enzyme") == [(7, "suggestion")]
    assert [s.text for s in store.suggestions(7)] == ["enzyme kinetics"]


def test_another_sae_and_fts_syntax_stay_out(store, tmp_path):
    store.set_label(1, label="NEAR AND OR")
    other = LabelStore(tmp_path / "labels.sqlite", "sae-b", 100)
    other.set_label(1, label="something NEAR")
    assert found(store, 'NEAR" OR "and') == [(1, "label")]
    assert found(other, "near") == [(1, "label")]
    with pytest.raises(LabelStoreError, match="Type a word"):
        store.search('  " ')


def test_a_version_1_database_migrates_and_indexes_its_labels(tmp_path):
    path = tmp_path / "old.sqlite"
    with connect(path, write=True) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        for statement in statements(MIGRATIONS[1]):
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "INSERT INTO labels (sae, feature, label, updated_at) "
            "VALUES ('sae-a', 9, 'photosynthesis', '2025-01-01T00:00:00+00:00')"
        )
    store = LabelStore(path, "sae-a", 100)
    assert found(store, "photosynth") == [(9, "label")]
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone()[0] == str(
        SCHEMA_VERSION
    )


def test_a_search_saved_as_a_set_keeps_its_query_and_order(store):
    store.set_label(8, label="protein folding")
    store.put_suggestions("neuronpedia", {2: ("protein binding", {})})
    saved = store.save_search_set("proteins", "protein")
    assert set(saved.features) == {2, 8}
    assert saved.selection == {"method": "label search", "query": "protein", "suggestions": True}
    assert store.save_search_set("labels only", "protein", suggestions=False).features == (8,)


def test_a_tag_matches_as_a_whole_and_a_negated_tag_never_matches_its_positive(store):
    store.set_label(1, label="Photosynthesis", tags=["biology"])
    store.set_label(2, label="Sports scores", tags=["not biology"])
    store.set_label(3, label="Weather", note="unrelated to biology")
    store.set_label(4, label="Genes", tags=["biology-adjacent"])
    hits = {hit.feature: hit.fields for hit in store.search("biology")}
    assert hits == {1: ("tag",), 3: ("note",)}  # not 2 ("not biology"), not 4 (another tag)
    assert {hit.feature: hit.fields for hit in store.search("Not  Biology")} == {2: ("tag",)}
    assert [hit.feature for hit in store.search("bio")] == [3]  # a tag is never a prefix match


def test_each_hit_says_which_field_matched(store):
    store.set_label(5, label="DNA replication", note="origin licensing", tags=["unclear"])
    store.put_suggestions("neuronpedia", {6: ("DNA repair", {})})
    assert sorted((h.kind, h.fields) for h in store.search("dna")) == [
        ("label", ("label",)),
        ("suggestion", ("text",)),
    ]
    assert store.search("dna origin")[0].fields == ("label", "note")  # one word in each
    assert store.search("licens")[0].fields == ("note",)
    assert store.search("unclear")[0].fields == ("tag",)
