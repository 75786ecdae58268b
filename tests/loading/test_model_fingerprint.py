"""Which weights and data exactly key caches and evaluation memos: a GGUF package's version,
a hub snapshot's commit, a local folder's weight files, a hub dataset's prepared commit; a
change of any of them is another cache or memo. Before a hub model is downloaded, a cache
built elsewhere from the same inputs is read."""

import json
import os
from dataclasses import asdict, replace

import pytest

from core.base.config import ModelConfig
from core.cache.spec import cache_spec
from core.cache.store import SparseActivationStore
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.loading import data
from core.loading.hub_cache import library_versions, package_version
from core.loading.models import model_fingerprint
from core.workspace.workspace import Workspace
from tests.helpers import preset, small_workspace_config, write_config


def test_a_gguf_package_is_known_by_its_version(offline_ws):
    cfg = offline_ws.config.model
    assert model_fingerprint(cfg) == f"{cfg.package}=={package_version(cfg.package)}"


def test_a_hub_model_not_downloaded_says_so():
    cfg = ModelConfig(name="org/never-downloaded", source="hub")
    assert model_fingerprint(cfg) == "org/never-downloaded@not downloaded"


def test_a_local_folder_is_known_by_its_weight_files(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"first")
    (tmp_path / "config.json").write_text("{}")
    cfg = ModelConfig(name="local-model", source="local", path=str(tmp_path))
    first = model_fingerprint(cfg)
    (tmp_path / "config.json").write_text('{"edited": 1}')
    assert model_fingerprint(cfg) == first  # not a weight file
    weights.write_bytes(b"second")  # re-saved weights
    os.utime(weights, ns=(1, 1))
    assert model_fingerprint(cfg) != first


def another_build(monkeypatch, ws: Workspace) -> None:
    """The same model name and package, other weights (as a new package version gives)."""
    monkeypatch.setattr(type(ws), "model_fingerprint", property(lambda _: "pkg==9.9.9"))


def test_evaluation_memos_are_keyed_by_the_weights_and_the_libraries(offline_ws, monkeypatch):
    evaluator = Evaluator(offline_ws, EvalSettings(question_limit=2, known_filter=False))
    key = evaluator._key()
    assert key["model"] == offline_ws.model_fingerprint
    assert key["libraries"] == library_versions()
    assert evaluator.known_key_record("forget_questions")["fingerprint"] == key["model"]
    before = evaluator.baseline_path()
    with monkeypatch.context() as patched:
        another_build(patched, offline_ws)
        assert evaluator.baseline_path() != before
    assert evaluator.baseline_path() == before
    newer = library_versions() | {"torch": "99.0"}  # another torch: another memo
    with monkeypatch.context() as patched:
        patched.setattr("core.evaluation.evaluator.library_versions", lambda: newer)
        assert evaluator.baseline_path() != before


def test_activation_caches_are_keyed_by_the_weights(tmp_path, monkeypatch):
    ws = Workspace.open(str(small_workspace_config(tmp_path)))
    spec = cache_spec(ws, "forget_corpus")
    assert spec.model_weights == ws.model_fingerprint and not spec.unresolved()
    another_build(monkeypatch, ws)
    assert cache_spec(ws, "forget_corpus").key() != spec.key()


def test_a_hub_dataset_is_keyed_by_the_commit_it_was_prepared_from(tmp_path, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    ws = Workspace.open(str(write_config(tmp_path, preset("gemma-2-2b-it-L3"))))
    unknown = data.fingerprint(ws.config, "forget_questions")
    assert unknown == "hub:cais/wmdp/wmdp-bio/test@revision unknown"
    prepared = tmp_path / "datasets" / "cais___wmdp" / "wmdp-bio" / "0.0.0"
    (prepared / "1111aaaa").mkdir(parents=True)
    assert data.fingerprint(ws.config, "forget_questions").endswith("@1111aaaa")
    (prepared / "2222bbbb").mkdir()
    os.utime(prepared / "1111aaaa", ns=(1, 1))  # the older preparation
    assert data.fingerprint(ws.config, "forget_questions").endswith("@2222bbbb")


@pytest.fixture
def laptop(tmp_path) -> Workspace:
    """A workspace whose hub model was never downloaded here."""
    edits = {"model__source": "hub", "model__name": "org/never-downloaded"}
    return Workspace.open(str(small_workspace_config(tmp_path, **edits)))


def built_elsewhere(ws: Workspace, commit: str) -> SparseActivationStore:
    """A cache's folder as a machine that downloaded the model at `commit` leaves it."""
    spec = replace(cache_spec(ws, "forget_corpus"), model_weights=f"org/never-downloaded@{commit}")
    folder = ws.folder / "activations" / f"forget_corpus-{spec.key()}"
    folder.mkdir(parents=True)
    manifest = {"spec": asdict(spec), "key": spec.key(), "rows_requested": 16}
    (folder / "manifest.json").write_text(json.dumps(manifest | {"special_token_ids": [1]}))
    return SparseActivationStore(folder, spec)


def test_a_cache_built_where_the_model_was_downloaded_is_read_where_it_was_not(laptop):
    assert cache_spec(laptop, "forget_corpus").unresolved() == ("model_weights",)
    copied = built_elsewhere(laptop, "abc123")
    found = SparseActivationStore.for_workspace(laptop, "forget_corpus")
    assert found.folder == copied.folder and found.spec.model_weights.endswith("@abc123")
    own = SparseActivationStore.for_workspace(laptop, "forget_corpus", borrow=False)
    assert own.folder != copied.folder  # a build writes under its own key
    built_elsewhere(laptop, "def456")  # two revisions: neither is guessed
    assert SparseActivationStore.for_workspace(laptop, "forget_corpus").folder == own.folder
