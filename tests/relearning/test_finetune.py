"""Fine-tuning a copy with the edit active, on a tiny float64 HookedSAETransformer (as
workspaces load models: sae-lens gives each MLP its own forward) with a gated MLP and an SAE
built here: zero steps change nothing, steps with the edit change the adapters and the loss,
a seed repeats a run exactly, and the model copied is never touched."""

import numpy as np
import pytest
import torch
from sae_lens.analysis.hooked_sae_transformer import HookedSAETransformer

from core.errors import UserError
from core.evaluation.loss import row_losses
from core.interventions.edits import Intervention, applied
from core.relearning.finetune import frozen_copy, train, trainable_state, tunable_copy
from tests.helpers import tiny_model_and_sae

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny():
    model, sae, rows = tiny_model_and_sae(
        HookedSAETransformer, 6, d_mlp=32, act_fn="gelu", gated_mlp=True
    )  # as workspaces load models: its MLPs' own forwards
    iv = Intervention(features=(1, 5, 9), values=(1.0, 1.0, 1.0))
    return model, sae, rows, iv


def _losses(model, sae, iv, rows) -> np.ndarray:
    with applied(model, sae, HOOK, iv):
        return row_losses(model, rows)


def _tuned(tiny, kind="lora", steps=3, seed=0, edit=True):
    model, sae, rows, iv = tiny
    twin = tunable_copy(model, kind, rank=2, seed=seed)
    curve = train(twin, frozen_copy(sae), HOOK, iv if edit else None, rows, steps, 1e-2, 2, seed)
    return twin, curve


def test_zero_steps_give_exactly_the_edited_model(tiny):
    model, sae, rows, iv = tiny
    twin, curve = _tuned(tiny, steps=0)
    assert curve == []
    assert np.array_equal(_losses(twin, sae, iv, rows), _losses(model, sae, iv, rows))


def test_steps_with_the_edit_change_the_adapters_and_the_loss(tiny):
    model, sae, rows, iv = tiny
    before = trainable_state(tunable_copy(model, "lora", rank=2, seed=0))
    twin, curve = _tuned(tiny)
    after = trainable_state(twin)
    assert before.keys() == after.keys() and any("lora_B" in name for name in after)
    assert all(name.count("lora_") == 1 for name in after)  # only adapters train
    assert any(not torch.equal(before[name], after[name]) for name in after)
    assert len(curve) == 3
    tuned, edited = _losses(twin, sae, iv, rows), _losses(model, sae, iv, rows)
    assert tuned.mean() < edited.mean()  # it learned the rows it was tuned on


def test_a_seed_repeats_a_run_and_another_seed_does_not(tiny):
    _model, sae, rows, iv = tiny
    first, again, other = (_tuned(tiny, seed=s)[0] for s in (0, 0, 1))
    assert np.array_equal(_losses(first, sae, iv, rows), _losses(again, sae, iv, rows))
    assert not np.array_equal(_losses(first, sae, iv, rows), _losses(other, sae, iv, rows))


def test_full_fine_tuning_leaves_the_copied_model_and_sae_alone(tiny):
    model, sae, _rows, _iv = tiny
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    sae_weights = {n: p.detach().clone() for n, p in sae.named_parameters()}
    twin, _ = _tuned(tiny, kind="full")
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    assert all(torch.equal(sae_weights[n], p) for n, p in sae.named_parameters())
    assert all(p.grad is None for p in sae.parameters())
    changed = [n for n, p in twin.named_parameters() if not torch.equal(weights[n], p)]
    assert "blocks.0.mlp.W_in" in changed and not model.blocks[0].hook_resid_post.fwd_hooks
    x = torch.randn(1, 3, 16, dtype=torch.float64)
    assert not torch.equal(twin.blocks[0].mlp(x), model.blocks[0].mlp(x))  # its own weights


def test_an_unknown_kind_or_rank_is_refused(tiny):
    model = tiny[0]
    with pytest.raises(UserError, match="Unknown fine-tuning"):
        tunable_copy(model, "qlora", rank=2, seed=0)
    with pytest.raises(UserError, match="rank must be at least 1"):
        tunable_copy(model, "lora", rank=0, seed=0)
