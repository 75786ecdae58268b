"""AppTests of the exploration views: neighbours, co-occurrence and suggested labels on the
examples page; the feature map, label search and contrast search on the search page."""

import numpy as np
import pytest

from core.features.feature_map import FeatureMapConfig, save_feature_map
from core.labels.store import LabelStore
from core.labels.suggestions import EVIDENCE_SOURCE
from tests.helpers import open_app_page

pytestmark = pytest.mark.model

EXAMPLES = "pages/activation_examples.py"
SEARCH = "pages/feature_search.py"


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_neighbours_and_cooccurrence_open_a_feature(small_app_env, monkeypatch):
    at = open_app_page(small_app_env, monkeypatch, EXAMPLES)
    assert "Nearest features" in " ".join(m.value for m in at.markdown)
    assert "Fires together with" in " ".join(m.value for m in at.markdown)
    neighbour = next(b for b in at.button if b.key and b.key.startswith("open-dec-"))
    neighbour.click().run()
    assert not at.exception
    assert at.number_input(key="feature_box").value == int(neighbour.label)
    assert at.query_params["feature"] == neighbour.label


def test_a_suggestion_is_shown_and_written_only_when_accepted(
    small_app_env, small_app_ws, monkeypatch
):
    store = LabelStore.for_workspace(small_app_ws)
    at = open_app_page(small_app_env, monkeypatch, EXAMPLES)
    feature = at.number_input(key="feature_box").value
    button(at, "Suggest from the evidence (loads the model)").click().run()
    assert not at.exception
    assert store.suggestions(feature)[0].source == EVIDENCE_SOURCE
    assert store.label(feature).label == ""  # a suggestion is not a label
    box = next(t for t in at.text_input if t.label == "Edit before accepting")
    box.input("my edited label")
    button(at, "Accept as the label").click().run()
    assert store.label(feature).label == "my edited label"


def test_feature_map_label_search_and_contrast(small_app_env, small_app_ws, monkeypatch):
    ws = small_app_ws
    store = LabelStore.for_workspace(ws)
    layout = np.random.default_rng(0).normal(size=(ws.sae_width(), 2)).astype(np.float32)
    save_feature_map(ws, layout, FeatureMapConfig())
    store.set_label(11, label="chloroplast thylakoid")
    at = open_app_page(small_app_env, monkeypatch, SEARCH)
    assert any(p.proto.spec and "feature_map" in str(p.proto.id) for p in at.get("plotly_chart"))
    next(t for t in at.text_input if t.label.startswith("Words")).input("chloro").run()
    assert not at.exception
    assert 11 in at.dataframe[-1].value["feature"].tolist()
    next(t for t in at.text_input if t.label.startswith("Make a set")).input("plastids")
    button(at, "Save search set").click().run()
    assert store.get_set("plastids").features == (11,)
    assert store.get_set("plastids").selection["query"] == "chloro"

    areas = [t for t in at.text_area if t.label.startswith("Paragraphs")]
    areas[0].input("Photosynthesis happens in the chloroplast.\n\nCells divide by mitosis.")
    areas[1].input("The train left the station at noon.")
    button(at, "Run contrast search (runs the model)").click().run()
    assert not at.exception
    assert "A: 2 texts" in " ".join(c.value for c in at.caption)
    next(t for t in at.text_input if t.label == "Save the top features as the set").input("bio")
    button(at, "Save contrast set").click().run()
    saved = store.get_set("bio")
    assert len(saved.features) == 20 and saved.selection["method"] == "contrast search"


def test_the_map_by_tag_draws_untagged_points_underneath_small_and_grey(
    small_app_env, small_app_ws, monkeypatch
):
    import json

    layout = np.random.default_rng(1).normal(size=(small_app_ws.sae_width(), 2))
    save_feature_map(small_app_ws, layout.astype(np.float32), FeatureMapConfig())
    LabelStore.for_workspace(small_app_ws).set_label(12, label="cell wall", tags=["biology"])
    at = open_app_page(small_app_env, monkeypatch, SEARCH)
    next(r for r in at.radio if r.label == "Colour by").set_value("tag").run()
    assert not at.exception
    chart = next(p for p in at.get("plotly_chart") if "feature_map" in str(p.proto.id))
    traces = json.loads(chart.proto.spec)["data"]
    untagged, tagged = traces[0], next(t for t in traces if t["name"] == "biology")
    assert untagged["name"] == "no tag" and untagged["marker"]["color"] == "lightgrey"
    assert untagged["marker"]["size"] < tagged["marker"]["size"]
    assert 12 in [int(row[0]) for row in tagged["customdata"]]
