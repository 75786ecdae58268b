"""Local folders for everything a hub preset downloads: SAE folders in sae-lens's format
(standard, JumpReLU, TopK; with and without b_dec applied to the input; with input
normalisation), a local Hugging Face model folder named by its TransformerLens architecture,
and small data files of every local format, each loaded through a workspace config."""

import json

import pytest
import torch

from core.errors import ConfigError, ModelSAEMismatchError
from core.loading import models
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config

pytestmark = pytest.mark.model

D_IN, D_SAE = 640, 256
TEXT = "Ribosomes translate messenger RNA into proteins inside every living cell."


def _sae(architecture: str, apply_b_dec: bool, normalize: str):
    """A small seeded SAE of the given architecture for Gemma 3 270M's layer 9."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    common = dict(
        d_in=D_IN,
        d_sae=D_SAE,
        apply_b_dec_to_input=apply_b_dec,
        normalize_activations=normalize,
        metadata=SAEMetadata(hook_name="blocks.9.hook_resid_post", model_name="gemma-3-270m"),
    )
    sae = {
        "standard": lambda: StandardSAE(StandardSAEConfig(**common)),
        "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(**common)),
        "topk": lambda: TopKSAE(TopKSAEConfig(k=16, **common)),
    }[architecture]()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        if architecture == "jumprelu":
            sae.threshold.fill_(0.05)
    return sae


def _workspace(tmp_path, **tables) -> Workspace:
    raw = preset()
    raw["budgets"].update(context_length=64, forget_rows=4, retain_rows=4)
    raw["workspace"]["name"] = "local-" + tmp_path.name[-12:].replace("_", "-")
    for table, value in tables.items():
        raw[table] = value
    return Workspace.open(str(write_config(tmp_path, raw, name="local")))


@pytest.mark.parametrize(
    ("architecture", "apply_b_dec", "normalize"),
    [
        ("standard", True, "none"),
        ("standard", False, "none"),
        ("jumprelu", False, "none"),
        ("jumprelu", True, "none"),
        ("topk", True, "none"),
        ("standard", True, "layer_norm"),
    ],
    ids=["standard", "standard-no-b_dec-in", "jumprelu", "jumprelu-b_dec-in", "topk", "layer-norm"],
)
@torch.no_grad()
def test_a_local_sae_folder_loads_and_encodes_as_saved(
    offline_ws, tmp_path, architecture, apply_b_dec, normalize
):
    saved = _sae(architecture, apply_b_dec, normalize)
    saved.save_model(tmp_path / "sae")
    hook = offline_ws.hook
    ws = _workspace(tmp_path, sae={"source": "local", "path": str(tmp_path / "sae"), "hook": hook})
    assert ws.model is offline_ws.model  # same [model] table: loaded once
    assert ws.sae_width() == D_SAE  # read from cfg.json, no load
    sae = ws.sae  # loads and checks it fits the model
    assert sae.cfg.architecture() == architecture
    assert sae.cfg.apply_b_dec_to_input == apply_b_dec
    x = ws.residual(ws.model.to_tokens(TEXT))
    torch.testing.assert_close(sae.encode(x), saved.encode(x))
    features = torch.argsort((sae.encode(x) > 0).sum((0, 1)), descending=True)[:8].tolist()
    assert (sae.encode(x)[..., features] > 0).any()
    partial = adapter_for(sae).selected_activations(x, features)
    # The partial and full matmuls sum d_in products in different orders (and BLAS's order
    # depends on the thread count): float32 rounding, relative to activations of ~500.
    torch.testing.assert_close(partial, sae.encode(x)[..., features], rtol=1e-5, atol=1e-5)


def test_a_local_sae_of_another_width_is_refused(offline_ws, tmp_path):
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    StandardSAE(StandardSAEConfig(d_in=512, d_sae=64)).save_model(tmp_path / "sae")
    hook = offline_ws.hook
    ws = _workspace(tmp_path, sae={"source": "local", "path": str(tmp_path / "sae"), "hook": hook})
    with pytest.raises(ModelSAEMismatchError, match="width 512"):
        _ = ws.sae


def test_a_local_sae_folder_without_cfg_is_named(tmp_path):
    ws = _workspace(
        tmp_path, sae={"source": "local", "path": str(tmp_path), "hook": "blocks.9.hook_resid_post"}
    )
    assert any("cfg.json missing" in problem for problem in ws.problems())


@torch.no_grad()
def test_a_local_hugging_face_folder_loads_as_its_named_architecture(offline_ws, tmp_path):
    folder = models.converted_gguf_dir(offline_ws.config.model)  # a plain HF checkpoint
    model = {"source": "local", "name": "google/gemma-3-270m", "path": str(folder)}
    ws = _workspace(tmp_path, model=model)
    assert ws.model is not offline_ws.model
    tokens = offline_ws.model.to_tokens(TEXT)
    torch.testing.assert_close(ws.model(tokens), offline_ws.model(tokens), atol=1e-4, rtol=1e-4)
    assert ws.config.model.path == str(folder)


def test_a_local_folder_needs_a_name_transformer_lens_knows(offline_ws, tmp_path):
    folder = models.converted_gguf_dir(offline_ws.config.model)
    ws = _workspace(
        tmp_path, model={"source": "local", "name": "acme/not-a-model", "path": str(folder)}
    )
    with pytest.raises(ConfigError, match="TransformerLens does not know"):
        _ = ws.model


def test_a_local_model_folder_without_config_json_is_named(tmp_path):
    ws = _workspace(
        tmp_path, model={"source": "local", "name": "google/gemma-3-270m", "path": str(tmp_path)}
    )
    with pytest.raises(ConfigError, match=r"no config\.json"):
        _ = ws.tokenizer


def test_small_local_data_files_of_every_format(tmp_path):
    docs = [
        f"Document {i} about enzymes and the cells that make them, in some detail."
        for i in range(3)
    ]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    (tmp_path / "retain.txt").write_text("\n".join(["short", *docs]) + "\n")
    question = {
        "question": "Which organelle makes ATP?",
        "choices": ["Mitochondrion", "Golgi", "Vacuole", "Nucleus"],
        "answer": 0,
    }
    (tmp_path / "wmdp.json").write_text(json.dumps([question]))
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "virology_test.csv").write_text(
        '"What is a virion?",A particle,A cell,A gene,A tissue,A\n'
    )
    raw = preset()
    raw["workspace"].update(name="local-data", data_dir=str(tmp_path))
    raw["data"] = {
        "forget_corpus": {
            "source": "local",
            "path": "forget.jsonl",
            "format": "jsonl",
            "field": "body",
        },
        "retain_corpus": {"source": "local", "path": "retain.txt", "format": "lines"},
        "forget_questions": {"source": "local", "path": "wmdp.json", "format": "wmdp-json"},
        "side_effect_questions": {
            "source": "local",
            "path": "mmlu",
            "format": "mmlu-csv",
            "subjects": ["virology"],
        },
        "loss_text": {"source": "local", "path": str(tmp_path / "retain.txt"), "format": "lines"},
    }
    ws = Workspace.open(str(write_config(tmp_path, raw, name="data")))
    assert ws.documents("forget_corpus") == docs
    assert ws.documents("retain_corpus") == docs == ws.documents("loss_text")
    forget = ws.questions("forget_questions")
    assert [(q.question, q.answer, q.subject) for q in forget] == [
        ("Which organelle makes ATP?", 0, "biology")
    ]
    side = ws.questions("side_effect_questions")
    assert [(q.question, q.choices[0], q.answer, q.subject) for q in side] == [
        ("What is a virion?", "A particle", 0, "virology")
    ]
    assert ws.describe_source("forget_corpus", portable=True) == "data_dir:forget.jsonl (jsonl)"
