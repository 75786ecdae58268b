"""Effects of a clamp alone against what they claim to be, on a tiny float64 TransformerLens
model and SAE built here: the estimate is the derivative along the clamp (a finite
difference), the measured value is a clamped forward of the whole model, and features
measured together equal features measured one at a time."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer

from core.effects.compute import estimated_effects, measured_effects
from core.errors import UserError
from core.interventions.edits import Intervention, applied
from core.runtime.forward import hook_resid, next_token_losses, resumed_final_resid
from tests.helpers import tiny_model_and_sae

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny():
    model, sae, rows = tiny_model_and_sae(HookedTransformer, 5, act_fn="relu")
    ws = SimpleNamespace(model=model, sae=sae, hook=HOOK, device="cpu")
    ws.residual = lambda tokens: hook_resid(model, tokens, HOOK, 0)
    return ws, rows


def _row_loss(ws, x, tokens) -> np.ndarray:
    final = resumed_final_resid(ws.model, x, 1)[:, :-1]
    return next_token_losses(ws.model, final, tokens[:, 1:]).mean(1).numpy()


@torch.no_grad()
def test_the_estimate_is_the_derivative_along_the_clamp(tiny):
    ws, rows = tiny
    c = 0.5
    estimate = estimated_effects(ws, rows, c, batch_rows=2)
    tokens = torch.from_numpy(rows).long()
    x = ws.residual(tokens)
    acts = ws.sae.encode(x)
    fired = [j for j in range(32) if (acts[:, 1:, j] > 0).any()]
    assert len(fired) >= 5
    for j in fired[:5]:
        change = torch.where(acts[..., j] > 0, -c - acts[..., j], 0.0)
        change[:, 0] = 0  # BOS left alone
        step = change[..., None] * ws.sae.W_dec[j]
        eps = 1e-5
        slope = (_row_loss(ws, x + eps * step, tokens) - _row_loss(ws, x - eps * step, tokens)) / (
            2 * eps
        )
        np.testing.assert_allclose(estimate[:, j], slope, rtol=1e-5, atol=1e-9)
    silent = [j for j in range(32) if j not in fired]
    assert np.all(estimate[:, silent] == 0)  # a feature that never fires changes nothing


@torch.no_grad()
def test_the_measured_effect_is_a_clamped_forward_of_the_whole_model(tiny):
    ws, rows = tiny
    features = [3, 7, 11]
    measured = measured_effects(ws, rows, features, 2.0, batch_rows=2)
    tokens = torch.from_numpy(rows).long()
    clean = ws.model.loss_fn(ws.model(tokens), tokens, per_token=True).mean(-1)
    for column, feature in enumerate(features):
        with applied(ws.model, ws.sae, HOOK, Intervention((feature,), (2.0,))):
            edited = ws.model.loss_fn(ws.model(tokens), tokens, per_token=True).mean(-1)
        np.testing.assert_allclose(measured[:, column], (edited - clean).numpy(), atol=1e-12)


@torch.no_grad()
def test_features_measured_together_equal_features_measured_alone(tiny):
    ws, rows = tiny
    together = measured_effects(ws, rows, [5, 9], 1.0, batch_rows=3)
    alone = np.hstack([measured_effects(ws, rows, [f], 1.0, batch_rows=3) for f in (5, 9)])
    assert np.array_equal(together, alone)


def test_an_sae_off_the_residual_stream_is_refused(tiny):
    ws, rows = tiny
    other = SimpleNamespace(**{**vars(ws), "hook": "blocks.0.hook_mlp_out"})
    with pytest.raises(UserError, match="residual stream"):
        estimated_effects(other, rows, 1.0)
