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


@torch.no_grad()
def test_health_standard_errors_are_over_rows(tiny):
    ws, rows = tiny
    found = measure_health(ws, rows, "retain_corpus", "tiny", batch_size=2)
    each = [measure_health(ws, rows[i : i + 1], "r", "tiny") for i in range(len(rows))]
    left_out = np.array(
        [measure_health(ws, np.delete(rows, i, 0), "r", "tiny", 16).fve for i in range(5)]
    )
    jackknife = np.sqrt(4 / 5 * ((left_out - left_out.mean()) ** 2).sum())
    assert found.fve_se == pytest.approx(jackknife, rel=1e-6)
    added = np.array([item.ce_added for item in each])
    assert found.ce_added_se == pytest.approx(added.std(ddof=1) / np.sqrt(5), rel=1e-4)
    l0 = np.array([item.l0 for item in each])
    assert found.l0_se == pytest.approx(l0.std(ddof=1) / np.sqrt(5), rel=1e-6)
    assert each[0].fve_se is None and each[0].ce_added_se is None  # one row: no spread


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A real workspace of its own, its SAE health on one row per corpus (computed once) and
    its config file."""
    from core.workspace.workspace import Workspace
    from tests.helpers import small_workspace_config

    folder = tmp_path_factory.mktemp("health")
    config = small_workspace_config(folder, workspace__name="damaged-health")
    ws = Workspace.open(str(config))
    return ws, sae_health(ws, n_rows=1), config


@pytest.mark.model
@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_health_memo_is_computed_again(healthy, caplog, kind):
    ws, fresh, _ = healthy
    (path,) = ws.folder.glob("health-*.json")
    damaged = damage_memo(path, kind, "results")
    assert cached_health(ws, n_rows=1) is None
    assert sae_health(ws, n_rows=1) == fresh
    assert_moved_aside(path, damaged, caplog)


@pytest.mark.model
def test_the_health_command_says_why_one_row_has_no_standard_error(healthy, capsys):
    from core.cli import main

    _, fresh, config = healthy
    assert main(["health", "--workspace", str(config), "--rows", "1"]) == 0
    shown = capsys.readouterr().out
    assert "± one standard error over rows" in shown
    assert f"FVE {fresh[0].fve:.4f} (no SE: 1 row)" in shown


@pytest.mark.model
def test_a_health_run_keeps_its_throughput_for_the_next_estimate(healthy):
    from core.sae.health import HEALTH_RUN, health_estimate
    from core.workspace.throughput import measured_runs

    ws, results, _ = healthy
    timed = measured_runs(ws)[HEALTH_RUN]
    assert timed.tokens == sum(item.rows for item in results) * ws.config.budgets.context_length
    assert timed.seconds > 0 and timed.params_per_token == 2 * timed.full_params
    assert "at the rate of the last SAE health here" in health_estimate(ws)


@pytest.mark.model
def test_a_recompute_measures_again_and_dates_the_result(healthy, capsys):
    from core.cli import main
    from core.sae.health import health_measured_at

    ws, fresh, config = healthy
    (path,) = ws.folder.glob("health-*.json")
    kept = health_measured_at(ws, n_rows=1)
    assert kept is not None and kept.endswith(" UTC")
    path.write_text(path.read_text().replace('"measured_at": "', '"measured_at": "1999'))
    assert health_measured_at(ws, n_rows=1).startswith("1999")  # what the memo says
    assert main(["health", "--workspace", str(config), "--rows", "1", "--recompute"]) == 0
    assert health_measured_at(ws, n_rows=1)[:4] != "1999"  # measured again, dated now
    assert f"measured {health_measured_at(ws, n_rows=1)}" in capsys.readouterr().out
    assert sae_health(ws, n_rows=1) == fresh  # the same numbers
