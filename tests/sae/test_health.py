"""SAE health (L0, FVE, dead features, CE added) against a direct computation, on a tiny
TransformerLens model and a tiny SAE built here (no download, a second of CPU)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

from core.sae.health import cached_health, measure_health, sae_health
from tests.helpers import MEMO_DAMAGES, assert_moved_aside, damage_memo

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = HookedTransformer(
        HookedTransformerConfig(
            n_layers=2, d_model=16, n_ctx=12, d_head=4, n_heads=4, d_vocab=40, act_fn="relu"
        )
    )
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
    rows = np.random.default_rng(0).integers(1, 40, size=(5, 12))
    rows[:, 0] = 0  # BOS
    return SimpleNamespace(model=model, sae=sae, hook=HOOK, device="cpu"), rows


@torch.no_grad()
def test_health_numbers_equal_a_direct_computation(tiny):
    ws, rows = tiny
    found = measure_health(ws, rows, "retain_corpus", "tiny", batch_size=16)
    tokens = torch.from_numpy(rows).long()
    logits, cache = ws.model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK][:, 1:].reshape(-1, 16)
    acts = ws.sae.encode(x)
    recon = ws.sae.decode(acts)
    assert found.tokens == x.shape[0] == 5 * 11
    assert found.l0 == pytest.approx((acts > 0).sum().item() / x.shape[0])
    total = (x - x.mean(0)).pow(2).sum().item()
    assert found.fve == pytest.approx(1 - (x - recon).pow(2).sum().item() / total, rel=1e-5)
    assert found.dead_features == int(((acts > 0).sum(0) == 0).sum())

    def splice(act, hook):
        act[:, 1:] = recon.reshape(5, 11, 16)
        return act

    spliced = ws.model.run_with_hooks(tokens, fwd_hooks=[(HOOK, splice)])
    clean_ce = ws.model.loss_fn(logits, tokens, per_token=True).mean().item()
    spliced_ce = ws.model.loss_fn(spliced, tokens, per_token=True).mean().item()
    assert found.ce_clean == pytest.approx(clean_ce, rel=1e-5)
    assert found.ce_added == pytest.approx(spliced_ce - clean_ce, rel=1e-4, abs=1e-6)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A real workspace of its own and its SAE health on one row per corpus, computed once."""
    from core.workspace.workspace import Workspace
    from tests.helpers import small_workspace_config

    folder = tmp_path_factory.mktemp("health")
    ws = Workspace.open(str(small_workspace_config(folder, workspace__name="damaged-health")))
    return ws, sae_health(ws, n_rows=1)


@pytest.mark.model
@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_health_memo_is_computed_again(healthy, caplog, kind):
    ws, fresh = healthy
    (path,) = ws.folder.glob("health-*.json")
    damaged = damage_memo(path, kind, "results")
    assert cached_health(ws, n_rows=1) is None
    assert sae_health(ws, n_rows=1) == fresh
    assert_moved_aside(path, damaged, caplog)
