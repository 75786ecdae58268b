"""Suggested labels: built from a feature's evidence (and saying so), imported from
Neuronpedia's explanations with the source named, and never written as labels."""

import json

import pytest

from core.errors import UserError
from core.labels.store import LabelStore
from core.labels.suggestions import (
    EVIDENCE_SOURCE,
    NEURONPEDIA_SOURCE,
    import_explanations,
    neuronpedia_explanations,
    suggest,
)

EXPORT = [
    {"modelId": "gemma-2-2b", "layer": "7-gemmascope-res-16k", "index": "5",
     "description": "cell membranes", "explanationModelName": "gpt-4o-mini"},
    {"modelId": "gemma-2-2b", "layer": "7-gemmascope-res-16k", "index": "5",
     "description": "a second explanation of 5"},
    {"modelId": "gemma-2-2b", "layer": "7-gemmascope-res-16k", "index": "99999",
     "description": "beyond this SAE"},
]  # fmt: skip


def test_neuronpedia_explanations_first_per_feature_within_the_sae(tmp_path):
    path = tmp_path / "explanations.json"
    path.write_text(json.dumps(EXPORT))
    found = neuronpedia_explanations(path, d_sae=100)
    assert list(found) == [5]
    text, extra = found[5]
    assert text == "cell membranes" and extra["explanationModelName"] == "gpt-4o-mini"
    path.write_text(json.dumps([{"index": "x", "description": "y"}]))
    with pytest.raises(UserError, match="without index or description"):
        neuronpedia_explanations(path, d_sae=100)


@pytest.mark.model
def test_suggestions_from_evidence_and_from_neuronpedia(small_app_ws):
    ws = small_app_ws
    store = LabelStore.for_workspace(ws)
    (ws.folder / "explanations.json").write_text(json.dumps(EXPORT))
    assert import_explanations(ws, store) == 1
    text = suggest(ws, store, 5)
    assert text.startswith("fires on ") or text == "never fires on the cached text"
    sources = {item.source: item for item in store.suggestions(5)}
    assert set(sources) == {EVIDENCE_SOURCE, NEURONPEDIA_SOURCE}
    assert sources[NEURONPEDIA_SOURCE].text == "cell membranes"
    evidence = sources[EVIDENCE_SOURCE].evidence
    assert {"top_tokens", "contexts", "promotes"} <= set(evidence)
    assert store.label(5).label == ""
