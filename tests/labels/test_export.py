"""Export and import: JSON round trip, lm-eval steered CSV, Neuronpedia, labels CSV, and
every bad import leaving the database as it was."""

import csv
import io
import json

import pandas as pd
import pytest

from core.labels.export import (
    MAX_IMPORT_BYTES,
    STEERED_COLUMNS,
    ImportRejected,
    export_set,
    import_set,
    labels_csv,
    neuronpedia_payload,
    steered_csv,
)
from core.labels.store import LabelStore
from core.labels.text import LabelStoreError
from core.workspace.workspace import Workspace


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace.open("offline-gemma3-270m")


def make_store(ws, path) -> LabelStore:
    return LabelStore(path, ws.sae_fingerprint(), d_sae=4096, identity=ws.config.sae.identity())


@pytest.fixture
def store(ws, tmp_path) -> LabelStore:
    store = make_store(ws, tmp_path / "a.sqlite")
    store.set_label(11, label='protein <folding> & "chaperones"', tags=["biology"], author="ada")
    store.set_label(42, label="genes", note="fires on gene names", tags=["biology", "unclear"])
    store.save_set(
        "bio top-3",
        [42, 11, 7],
        [1.0, 2.5, 0.5],
        notes=["", "strongest", ""],
        note="from the scatter",
        selection={"threshold": 0.01, "n": 3, "variant": "saebench"},
        results=[{"wmdp": 0.5, "provenance": {"c": 20}}],
    )
    return store


def snapshot(store: LabelStore):
    return store.labels(), {name: store.get_set(name) for name in store.set_names()}


def test_json_round_trips_exactly(ws, store, tmp_path):
    exported = export_set(ws, store, "bio top-3")
    assert exported["sae"] == {
        "identity": ws.config.sae.identity(),
        "d_sae": 4096,
        "hook": "blocks.9.hook_resid_post",
        "weights": ws.sae_fingerprint(),
    }
    assert exported["workspace"]["model"]["name"] == "google/gemma-3-270m"
    fresh = make_store(ws, tmp_path / "b.sqlite")
    assert import_set(fresh, json.dumps(exported)) == "bio top-3"
    again = export_set(ws, fresh, "bio top-3")
    assert again["set"] == exported["set"]
    assert fresh.labels() == store.labels()


@pytest.fixture
def hub_store(tmp_path) -> tuple[Workspace, LabelStore]:
    """A registry SAE's workspace (opened, never loaded: its SAE is not downloaded here,
    so its store is keyed as if it were) and a store with two sets."""
    hub = Workspace.open("gemma-2-2b-it-L7")
    key = f"sae-lens:{hub.config.sae.identity()}@sha256:{'0' * 64}"
    public = LabelStore(tmp_path / "hub.sqlite", key, d_sae=16384)
    public.set_label(12799, label="=virology")
    public.save_set("one", [12799], [2.5])
    public.save_set("two", [12799, 5453], [1.0, 0.5])
    return hub, public


def _as_lm_eval_reads_it(text: str) -> dict:
    """What lm-eval's SteeredModel.derive_steer_config keeps: one entry per hook point."""
    steer = {}
    for _, row in pd.read_csv(io.StringIO(text)).iterrows():
        steer[row["hookpoint"]] = {
            "action": row.get("action", "add"),
            "loader": row.get("loader", "sparsify"),
            "release": row["sparse_model"],
            "sae_id": row["sae_id"],
            "feature": int(row["feature_index"]),
            "coefficient": float(row["steering_coefficient"]),
        }
    return steer


def test_steered_csv_is_what_lm_eval_reads(hub_store):
    hub, public = hub_store
    text = steered_csv(hub, public, "one", clamp_value=20.0)
    assert tuple(pd.read_csv(io.StringIO(text)).columns) == STEERED_COLUMNS
    assert _as_lm_eval_reads_it(text) == {
        "layers.7": {
            "action": "clamp",
            "loader": "sae_lens",
            "release": hub.config.sae.release,
            "sae_id": hub.config.sae.id,
            "feature": 12799,
            "coefficient": -50.0,
        }
    }
    assert "'=virology" in text  # a formula-looking label is kept as text
    with pytest.raises(LabelStoreError, match="one steering entry per hook point"):
        steered_csv(hub, public, "two", 20.0)
    picked = _as_lm_eval_reads_it(steered_csv(hub, public, "two", 20.0, feature=5453))
    assert picked["layers.7"]["feature"] == 5453 and picked["layers.7"]["coefficient"] == -10.0


GATE = {
    "alpha": 0.042,
    "rule": "any selected",
    "calibration": {"percentile": 95.0, "rows": 256, "seed": 0, "bootstrap": 100},
}


def _with_gate(exported: dict, **changes) -> str:
    selection = {**exported["set"]["selection"], "gate": {**GATE, **changes}}
    return json.dumps({**exported, "set": {**exported["set"], "selection": selection}})


def _with_ids(exported: dict, ids: object) -> str:
    selection = {**exported["set"]["selection"], "question_ids": ids}
    return json.dumps({**exported, "set": {**exported["set"], "selection": selection}})


def test_the_ids_of_the_questions_that_chose_a_set_travel_with_it(ws, store, tmp_path):
    ids = {
        "forget_questions": ["0123456789abcdef", "fedcba9876543210"],
        "side_effect_questions": [],
    }
    fresh = make_store(ws, tmp_path / "b.sqlite")
    import_set(fresh, _with_ids(export_set(ws, store, "bio top-3"), ids))
    assert fresh.get_set("bio top-3").chosen_on == ids
    assert export_set(ws, fresh, "bio top-3")["set"]["selection"]["question_ids"] == ids


def test_a_gate_kept_with_a_set_round_trips_and_lm_eval_gets_only_the_ungated_twin(
    ws, store, hub_store, tmp_path
):
    store.set_gate("bio top-3", GATE)
    exported = export_set(ws, store, "bio top-3")
    assert exported["set"]["selection"]["gate"] == GATE
    fresh = make_store(ws, tmp_path / "b.sqlite")
    import_set(fresh, json.dumps(exported))
    assert fresh.get_set("bio top-3").gate == GATE
    assert fresh.set_gate("bio top-3", None).gate is None
    hub, public = hub_store
    public.set_gate("one", GATE)
    with pytest.raises(LabelStoreError, match="cannot gate"):
        steered_csv(hub, public, "one", 20.0)
    twin = steered_csv(hub, public, "one", 20.0, ungated=True)
    assert "UNGATED equivalent of a gated set" in twin
    assert _as_lm_eval_reads_it(twin)["layers.7"]["coefficient"] == -50.0
    with pytest.raises(LabelStoreError, match="percentile"):
        store.set_gate("bio top-3", {**GATE, "calibration": {}})


def test_steered_csv_is_refused_for_an_sae_lm_eval_cannot_load(ws, store):
    with pytest.raises(LabelStoreError, match="cannot load it"):
        steered_csv(ws, store, "bio top-3", 20.0)


def test_neuronpedia_for_a_public_sae_and_refused_for_ours(ws, store, tmp_path):
    with pytest.raises(LabelStoreError, match="public SAEs only"):
        neuronpedia_payload(ws, store, "bio top-3")
    hub = Workspace.open("gemma-2-2b-it-L7")
    public = LabelStore(tmp_path / "hub.sqlite", hub.config.sae.identity(), d_sae=16384)
    public.set_label(12799, label="virology")
    public.save_set("paper top", [12799, 5453])
    payload = neuronpedia_payload(hub, public, "paper top")
    assert payload["modelId"] == "gemma-2-2b"
    assert payload["features"][0] == {
        "modelId": "gemma-2-2b",
        "layer": payload["saeId"],
        "index": "12799",
        "description": "virology",
    }


def test_labels_csv(store):
    table = pd.read_csv(io.StringIO(labels_csv(store)))
    assert table["feature"].tolist() == [11, 42]
    assert table.loc[1, "tags"] == "biology;unclear"


def _with_tags(exported: dict, tags: list[str]) -> str:
    """The export with its first feature's label tagged `tags`."""
    features = [dict(item) for item in exported["set"]["features"]]
    features[0]["label"] = {**(features[0]["label"] or {}), "tags": tags}
    return json.dumps({**exported, "set": {**exported["set"], "features": features}})


def _export(ws, store):
    return export_set(ws, store, "bio top-3")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda e: "{not json", "Not valid JSON"),
        (lambda e: json.dumps({**e, "kind": "something-else"}), "Not an Unlearning Lens"),
        (lambda e: json.dumps({**e, "version": 99}), "version 99"),
        (
            lambda e: json.dumps({**e, "sae": {**e["sae"], "weights": "sha256:0123"}}),
            "with weights 'sha256:0123'.* --force",
        ),
        (  # a registry SAE named by an earlier version without a hash of its files
            lambda e: json.dumps({**e, "sae": {**e["sae"], "weights": "sae-lens:rel/id"}}),
            "without a hash of its files .* --force",
        ),
        (
            lambda e: json.dumps(
                {**e, "sae": {**e["sae"], "weights": "sae-lens:rel/id@sha256:ab"}}
            ),
            "with weights 'sha256:ab'.* --force",
        ),
        (lambda e: json.dumps({**e, "sae": {**e["sae"], "d_sae": 16384}}), "16384 features"),
        (
            lambda e: json.dumps({**e, "set": {**e["set"], "features": [{"feature": 4096}]}}),
            "feature 4096 is out of range",
        ),
        (
            lambda e: json.dumps(
                {**e, "set": {**e["set"], "features": [{"feature": 3}, {"feature": 3}]}}
            ),
            "feature 3 appears twice",
        ),
        (
            lambda e: json.dumps({**e, "set": {**e["set"], "features": [{"feature": "7"}]}}),
            "not an integer",
        ),
        (lambda e: json.dumps(e) + " " * MAX_IMPORT_BYTES, "imports are limited"),
        (lambda e: json.dumps(e), "exists already"),
        (lambda e: json.dumps({**e, "set": "oops"}), "no 'set' object"),
        (lambda e: json.dumps({**e, "sae": "oops"}), "no 'sae' object"),
        (lambda e: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (lambda e: json.dumps({**e, "set": {**e["set"], "results": {}}}), "'results' must be"),
        (lambda e: json.dumps({**e, "set": {**e["set"], "selection": []}}), "'selection' must"),
        (lambda e: json.dumps({**e, "set": {**e["set"], "name": 7}}), "'name' must be text"),
        (lambda e: _with_gate(e, alpha=1.5), "alpha must be a fraction"),
        (lambda e: _with_gate(e, rule="sometimes"), "rule must be one of"),
        (lambda e: _with_gate(e, calibration={"percentile": 100}), "strictly between 0 and 100"),
        (lambda e: _with_tags(e, ["biology", "not biology"]), "contradict each other"),
        (lambda e: _with_ids(e, ["0123456789abcdef"]), "question_ids must be an object"),
        (lambda e: _with_ids(e, {"mmlu": []}), "per forget_questions or side_effect_questions"),
        (lambda e: _with_ids(e, {"forget_questions": "0123"}), "16-digit hex question ids"),
        (lambda e: _with_ids(e, {"forget_questions": ["XYZ"]}), "16-digit hex question ids"),
    ],
    ids=[
        "malformed",
        "kind",
        "version",
        "retrained-sae",
        "registry-name-only",
        "registry-other-files",
        "width",
        "out-of-range",
        "duplicate",
        "not-int",
        "huge",
        "name-taken",
        "set-not-object",
        "sae-not-object",
        "deep-nesting",
        "results-not-list",
        "selection-not-object",
        "name-not-text",
        "gate-alpha",
        "gate-rule",
        "gate-percentile",
        "contradictory-tags",
        "question-ids-not-object",
        "question-ids-role",
        "question-ids-not-list",
        "question-ids-not-hex",
    ],
)
def test_bad_import_changes_nothing(ws, store, mangle, message):
    raw = mangle(_export(ws, store))
    before = snapshot(store)
    with pytest.raises(ImportRejected, match=message):
        import_set(store, raw)
    assert snapshot(store) == before


def test_import_under_a_new_name_with_odd_characters(ws, store):
    name = 'ünïcödé <b>set</b> "q" & more'
    import_set(store, json.dumps(_export(ws, store)), name=name)
    assert store.get_set(name).features == (42, 11, 7)


@pytest.mark.parametrize(
    ("c", "multiplier", "message"),
    [
        (float("nan"), 1.0, "finite size ≥ 0"),
        (float("inf"), 1.0, "finite size ≥ 0"),
        (-5.0, 1.0, "finite size ≥ 0"),
        (20.0, -1.0, "negative multiplier"),
    ],
    ids=["nan", "inf", "negative-c", "negative-multiplier"],
)
def test_steered_export_never_turns_an_ablation_into_an_amplification(
    hub_store, c, multiplier, message
):
    hub, public = hub_store
    public.save_set("signed", [7], [multiplier])
    with pytest.raises(LabelStoreError, match=message):
        steered_csv(hub, public, "signed", clamp_value=c)


def test_csv_cells_that_would_start_a_formula_are_quoted_as_text(ws, store):
    store.set_label(11, label='=HYPERLINK("http://x")', note="+1", tags=["@a"], author="-b")
    table = pd.read_csv(io.StringIO(labels_csv(store)), dtype=str)
    row = table[table["feature"] == "11"].iloc[0]
    assert (row["label"], row["note"], row["tags"], row["author"]) == (
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'@a",
        "'-b",
    )


@pytest.mark.parametrize(
    "separator", [",", ";", "|", "\t"], ids=["comma", "semicolon", "pipe", "tab"]
)
def test_no_csv_cell_starts_a_formula_in_a_locale_splitting_on_another_separator(store, separator):
    store.set_label(11, label="ok;=1+1", note="a, -2 | @x\t+3", tags=["=b", "a"], author="x;@y")
    written = labels_csv(store)
    for row in csv.reader(io.StringIO(written), delimiter=separator):
        for cell in row:
            assert not cell.strip(' "').startswith(("=", "+", "-", "@")), (separator, cell)
    table = pd.read_csv(io.StringIO(written), dtype=str)
    row = table[table["feature"] == "11"].iloc[0]
    assert (row["label"], row["tags"], row["author"]) == ("ok;'=1+1", "'=b;a", "x;'@y")
    assert written.splitlines()[1].startswith('"')  # every text cell quoted


def test_a_set_for_other_weights_imports_only_when_forced(ws, store):
    exported = export_set(ws, store, "bio top-3")
    exported["sae"]["weights"] = "sha256:retrained"
    with pytest.raises(ImportRejected, match="--force"):
        import_set(store, json.dumps(exported), name="old weights")
    assert import_set(store, json.dumps(exported), name="old weights", force=True) == "old weights"


def test_labels_kept_under_the_sae_name_move_to_its_weights_once(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    before = LabelStore(ws.folder / "labels.sqlite", ws.config.sae.identity(), d_sae=4096)
    before.set_label(12, label="kept by name", author="ada")
    before.save_set("named", [12])
    store = LabelStore.for_workspace(ws)
    assert store.sae == ws.sae_fingerprint() != ws.config.sae.identity()
    assert store.label(12).label == "kept by name" and store.set_names() == ["named"]
    assert "moved" in store.history(12)[-1]["changes"]
    assert store.adopt(ws.config.sae.identity()) == 0  # once
