"""Interventions at the SAE's hook on the real offline model and SAE: what changes, where,
and what is refused."""

import numpy as np
import pytest
import torch

from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.evaluation.mcq import encode_prompt
from core.interventions.edits import Intervention, applied, edit, make_intervention
from core.sae.adapter import adapter_for

pytestmark = pytest.mark.model

TEXT = "The mitochondria is the powerhouse of the cell. DNA polymerase copies the strand."


@pytest.fixture(scope="module")
def resid(offline_ws):
    tokens = offline_ws.model.to_tokens(TEXT)
    return offline_ws.residual(tokens).detach()


def _active_features(ws, x: torch.Tensor, n: int = 3) -> list[int]:
    """Features that fire somewhere after BOS on x, most often first."""
    counts = (ws.sae.encode(x)[0, 1:] > 0).sum(dim=0)
    return torch.argsort(counts, descending=True)[:n].tolist()


@torch.no_grad()
def test_clamp_edits_only_where_a_selected_feature_fires(offline_ws, resid):
    sae = offline_ws.sae
    features = _active_features(offline_ws, resid)
    iv = Intervention(tuple(features), (20.0,) * 3)
    edited = edit(adapter_for(sae), resid, iv, features)
    acts = sae.encode(resid)[..., features]
    fires = (acts > 0).any(dim=-1)[0]
    fires[0] = False  # BOS is left alone by default
    changed = (edited != resid).any(dim=-1)[0]
    assert fires.any() and (~fires).any()
    assert torch.equal(changed, fires)
    assert torch.equal(edited[0, ~fires], resid[0, ~fires])  # bit-identical elsewhere
    # METHOD §5: x' = decode(a') + err, with a'_j = -c where a_j > 0
    full = sae.encode(resid)
    clamped = full.clone()
    for j in features:
        clamped[..., j] = torch.where(full[..., j] > 0, -20.0, full[..., j])
    expected = sae.decode(clamped) + (resid - sae.decode(full))
    assert torch.allclose(edited[0, fires], expected[0, fires], atol=1e-2, rtol=1e-4)


@torch.no_grad()
def test_clamping_to_the_features_own_activation_changes_nothing(offline_ws, resid):
    feature = _active_features(offline_ws, resid, 1)[0]
    acts = offline_ws.sae.encode(resid)[0, :, feature]
    position = int(torch.nonzero(acts[1:] > 0)[0]) + 1
    x = resid[:, position : position + 1]
    own = float(acts[position])
    iv = Intervention((feature,), (-own,))  # -c = a_j: the clamp writes a_j back
    assert torch.equal(edit(adapter_for(offline_ws.sae), x, iv, [feature]), x)
    scale_zero = Intervention((feature,), (0.0,), method="scale")
    assert torch.equal(edit(adapter_for(offline_ws.sae), resid, scale_zero, [feature]), resid)


@torch.no_grad()
def test_bos_option_and_random_control(offline_ws, resid):
    sae = offline_ws.sae
    bos_features = torch.nonzero(sae.encode(resid)[0, 0] > 0).flatten()[:2].tolist()
    keep = edit(
        adapter_for(sae), resid, Intervention(tuple(bos_features), (30.0, 30.0)), bos_features
    )
    edit_bos = Intervention(tuple(bos_features), (30.0, 30.0), skip_bos=False)
    assert torch.equal(keep[0, 0], resid[0, 0])
    assert not torch.equal(edit(adapter_for(sae), resid, edit_bos, bos_features)[0, 0], resid[0, 0])
    assert Intervention((4095, 7), method="random").targets(4096) == (0, 8)


def test_mean_ablation_moves_the_feature_to_its_retain_mean(small_app_ws, resid):
    from core.features.stats import workspace_stats

    ws = small_app_ws
    table, _ = workspace_stats(ws)
    row = table.sort_values("retain_freq_saebench").iloc[-1]  # fires most on retain text
    feature = int(row["feature"])
    iv = make_intervention(ws, [feature], [1.0], "mean")
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")  # the mean, straight from it
    where, values = cache.feature(feature)
    tokens = np.asarray(cache.tokens()).ravel()
    counted = ~np.isin(tokens, cache.special_token_ids())
    expected = values[counted[where]].astype(np.float64).sum() / counted.sum()
    assert iv.means[0] == pytest.approx(expected, rel=1e-4) and iv.means[0] > 0
    assert make_intervention(ws, [feature], [1.0], "mean", table=table).means == iv.means
    acts = ws.sae.encode(resid)[..., feature]
    moved = (edit(adapter_for(ws.sae), resid, iv, [feature]) - resid)[0]
    want = (iv.means[0] - acts[0, 1:, None]) * ws.sae.W_dec[feature]
    assert torch.equal(moved[0], torch.zeros_like(moved[0]))  # BOS left alone
    torch.testing.assert_close(moved[1:], want, rtol=1e-3, atol=1e-3)


def test_hook_is_removed_after_an_exception(offline_ws):
    model, hook = offline_ws.model, offline_ws.hook
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        clean = model(tokens)
    iv = Intervention((1, 2, 3), (50.0,) * 3)
    with pytest.raises(RuntimeError, match="boom"), applied(model, offline_ws.sae, hook, iv):
        assert model.hook_dict[hook].fwd_hooks
        raise RuntimeError("boom")
    assert not model.hook_dict[hook].fwd_hooks
    with torch.no_grad():
        assert torch.equal(model(tokens), clean)


def test_bad_interventions_say_what_is_wrong(offline_ws):
    with pytest.raises(UserError, match="No features"):
        Intervention(()).check(4096)
    with pytest.raises(UserError, match="out of range"):
        Intervention((5000,)).check(4096)
    with pytest.raises(UserError, match="negative"):
        Intervention((1,), (-3.0,)).check(4096)
    with pytest.raises(UserError, match="absurd"):
        Intervention((1,), (1e9,)).check(4096)
    with pytest.raises(UserError, match="twice"):
        Intervention((1, 1)).check(4096)
    with pytest.raises(UserError, match="method"):
        Intervention((1,), method="shout").check(4096)
    with pytest.raises(UserError, match="chat template"):
        encode_prompt(offline_ws.tokenizer, "Question?\nAnswer:", chat=True)
