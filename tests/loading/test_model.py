"""The offline workspace for real: the GGUF model from PyPI with TransformerLens hooks, the
shipped SAE, a forward pass with the SAE spliced in, and model/SAE mismatches."""

import pytest
import torch

from core.errors import ModelSAEMismatchError
from core.loading import models
from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config

pytestmark = pytest.mark.model

TEXT = (
    "The mitochondria is the powerhouse of the cell, where ATP is made by oxidative "
    "phosphorylation."
)


def test_model_is_gemma3_270m_with_tl_hooks(offline_ws):
    model = offline_ws.model
    assert model.cfg.n_layers == 18 and model.cfg.d_model == 640
    assert offline_ws.hook in model.hook_dict
    assert next(model.parameters()).dtype == torch.float32


def test_model_predicts_sensible_text(offline_ws):
    tokens = offline_ws.model.to_tokens("The mitochondria is the powerhouse of the")
    top = offline_ws.model(tokens)[0, -1].argmax().item()
    assert offline_ws.tokenizer.decode(top).strip() == "cell"


def test_residual_stops_at_the_hook_and_matches_a_full_pass(offline_ws):
    model = offline_ws.model
    tokens = model.to_tokens(TEXT)
    _, cache = model.run_with_cache(tokens, names_filter=offline_ws.hook)
    assert torch.allclose(offline_ws.residual(tokens), cache[offline_ws.hook])


def test_forward_with_the_sae_spliced_in(offline_ws):
    model, sae = offline_ws.model, offline_ws.sae
    tokens = model.to_tokens(TEXT)
    clean = model(tokens, return_type="loss").item()
    x = offline_ws.residual(tokens)[:, 1:]
    recon = sae.decode(sae.encode(x))

    def splice(act, hook):
        act[:, 1:] = recon
        return act

    spliced = model.run_with_hooks(
        tokens, return_type="loss", fwd_hooks=[(offline_ws.hook, splice)]
    )
    fve = 1 - (x - recon).pow(2).sum() / (x - x.mean((0, 1))).pow(2).sum()
    assert fve.item() > 0.6
    assert clean < spliced.item() < clean + 1.5
    l0 = (sae.encode(x) > 0).sum(-1).float().mean().item()
    assert 1 <= l0 <= sae.cfg.k


def test_sae_with_the_error_term_changes_nothing(offline_ws):
    """sae-lens's splice with use_error_term=True must leave the forward pass intact."""
    model, sae = offline_ws.model, offline_ws.sae
    tokens = model.to_tokens(TEXT)
    clean = model(tokens)
    sae.use_error_term = True
    try:
        with_sae = model.run_with_saes(tokens, saes=[sae])
    finally:
        sae.use_error_term = False
    assert torch.allclose(clean, with_sae, atol=1e-3)


def test_sae_of_another_width_is_refused(offline_ws, tmp_path):
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    TopKSAE(TopKSAEConfig(d_in=512, d_sae=64, k=4)).save_model(tmp_path / "sae512")
    raw = preset()
    raw["sae"] = {"source": "local", "path": str(tmp_path / "sae512"), "hook": offline_ws.hook}
    ws = Workspace.open(str(write_config(tmp_path, raw)))
    assert ws.model is offline_ws.model  # same model config: loaded once
    with pytest.raises(ModelSAEMismatchError, match=r"width 512 but .* d_model = 640"):
        _ = ws.sae


def test_hook_the_model_lacks_is_refused(offline_ws, tmp_path):
    raw = preset()
    raw["sae"]["hook"] = "blocks.30.hook_resid_post"
    ws = Workspace.open(str(write_config(tmp_path, raw)))
    with pytest.raises(
        ModelSAEMismatchError, match=r"no hook 'blocks.30.hook_resid_post'.*18 layers"
    ):
        _ = ws.sae


def test_converted_model_lives_outside_the_repo(offline_ws):
    folder = models.converted_gguf_dir(offline_ws.config.model)
    assert (folder / "config.json").exists()
    assert not folder.resolve().is_relative_to(offline_ws.sae_path.parents[2].resolve())
