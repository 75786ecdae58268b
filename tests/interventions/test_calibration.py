"""Dynamic gating (METHOD §10): the gate's decision, untouched sequences, both clamp rules,
calibration from the cache, on-rates in evaluations, and bad input."""

import numpy as np
import pytest
import torch

from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.interventions.calibration import bound_gate, calibrate, describe, kept_gate
from core.interventions.edits import Intervention, edit
from core.interventions.gate import Gate, sequence_rho
from core.interventions.generation import generate
from core.interventions.rho import cached_fires, forward_fires, prompt_rho, window_rho
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace
from tests.helpers import MEMO_DAMAGES, assert_moved_aside, damage_memo

BIOLOGY = "The mitochondria is the powerhouse of the cell. DNA polymerase copies the strand."
PLAIN = "The match ended in a draw after the rain delayed the second half of the game."


def test_rho_counts_real_positions_after_bos_and_within_the_span():
    active = torch.tensor([[1, 1, 0, 1, 1], [1, 0, 0, 1, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert sequence_rho(active).tolist() == [0.75, 0.25]
    assert sequence_rho(active, mask).tolist() == pytest.approx([0.75, 1 / 3])
    assert sequence_rho(active, mask, span=3).tolist() == [0.5, 0.0]


@pytest.fixture(scope="module")
def pair(offline_ws):
    """The residuals of a biology and a plain sentence (same length) and features that fire
    on the first far more than on the second."""
    ids = [offline_ws.model.to_tokens(text)[0] for text in (BIOLOGY, PLAIN)]
    length = min(len(i) for i in ids)
    tokens = torch.stack([i[:length] for i in ids])
    resid = offline_ws.residual(tokens).detach()
    acts = offline_ws.sae.encode(resid)[:, 1:] > 0
    lead = (acts[0].float().mean(0) - acts[1].float().mean(0)).argsort(descending=True)
    return tokens, resid, lead[:6].tolist()


pytestmark = pytest.mark.model


@torch.no_grad()
def test_only_sequences_over_alpha_are_edited_and_the_rest_stay_bit_identical(offline_ws, pair):
    _, resid, features = pair
    sae = offline_ws.sae
    rho = sequence_rho((adapter_for(sae).selected_activations(resid, features) > 0).any(-1))
    assert rho[0] > rho[1]
    alpha = float((rho[0] + rho[1]) / 2)
    plain_iv = Intervention(tuple(features), (3.0,) * len(features))
    gated_iv = Intervention(tuple(features), (3.0,) * len(features), gate=Gate(alpha))
    adapter = adapter_for(sae)
    ungated = edit(adapter, resid, plain_iv, features)
    with_gate = edit(adapter, resid, gated_iv, features)
    assert torch.equal(with_gate[1], resid[1])  # under alpha: untouched, bit for bit
    assert torch.equal(with_gate[0], ungated[0])  # over alpha: the ordinary clamp
    assert not torch.equal(with_gate[0], resid[0])


@torch.no_grad()
def test_any_selected_rule_clamps_every_feature_where_any_fires(offline_ws, pair):
    _, resid, features = pair
    sae, c = offline_ws.sae, 3.0
    iv = Intervention(tuple(features), (c,) * len(features), gate=Gate(0.0, "any selected"))
    found = edit(adapter_for(sae), resid[:1], iv, features)
    acts = sae.encode(resid[:1])[..., features]
    fires = (acts > 0).any(-1, keepdim=True)
    fires[:, 0] = False  # BOS left alone
    new = torch.where(fires, torch.full_like(acts, -c), acts)
    expected = resid[:1] + (new - acts) @ sae.W_dec[features]
    touched = fires.expand_as(resid[:1, :, :1])
    torch.testing.assert_close(found, torch.where(touched, expected, resid[:1]))


def test_generation_decides_on_the_prompt(offline_ws, pair):
    _, _, features = pair
    values = (3.0,) * len(features)
    never = Intervention(tuple(features), values, gate=Gate(1.0))  # rho never exceeds 1
    always = Intervention(tuple(features), values, gate=Gate(0.0))
    plain = Intervention(tuple(features), values)
    assert generate(offline_ws, BIOLOGY, never, 4) == generate(offline_ws, BIOLOGY, None, 4)
    assert generate(offline_ws, BIOLOGY, always, 4) == generate(offline_ws, BIOLOGY, plain, 4)


@pytest.fixture
def small(small_app_ws) -> Workspace:
    return small_app_ws


def test_calibration_reads_rho_from_the_cache(small, pair):
    _, _, features = pair
    cache = SparseActivationStore.for_workspace(small, "retain_corpus")
    ctx = cache.spec.context_length
    dense = np.zeros((cache.rows_final(), ctx), dtype=bool)
    for feature in features:
        where, _ = cache.feature(feature)
        dense.flat[where] = True
    rho = cached_fires(cache, features)[:, 1:].mean(axis=1)
    np.testing.assert_allclose(rho, dense[:, 1:].mean(axis=1))
    gate = calibrate(small, features, percentile=95)
    assert np.percentile(rho, 80) <= gate.alpha <= rho.max()
    assert gate.calibration["rows"] == cache.rows_final() and gate.calibration["percentile"] == 95
    assert gate.calibration["features"] == sorted(features)  # what it is bound to
    assert gate.calibration["sae"] == small.sae_fingerprint()
    assert gate.calibration["cache"] == cache.spec.key()
    kept = {"alpha": gate.alpha, "rule": gate.rule, "calibration": gate.calibration}
    assert bound_gate(small, kept, features[::-1]) == gate
    for key, other, said in (
        ("features", [*features, 4000], "other features"),
        ("sae", "another-hash", "another SAE"),
        ("cache", "another-key", "another retain cache"),
    ):
        changed = kept | {"calibration": gate.calibration | {key: other}}
        with pytest.raises(UserError, match=f"calibrated for {said}: calibrate a new one"):
            bound_gate(small, changed, features)
        with pytest.raises(UserError, match=said):
            kept_gate(small, changed, features, 95.0, gate.rule)  # the page's path
    unbound = {k: v for k, v in gate.calibration.items() if k not in ("sae", "cache")}
    with pytest.raises(UserError, match="does not say which SAE and retain cache"):
        bound_gate(small, kept | {"calibration": unbound}, features)  # e.g. imported --force
    old = {k: v for k, v in gate.calibration.items() if k not in ("sae", "features")}
    assert bound_gate(small, kept | {"calibration": old}, features) == Gate.from_record(
        kept | {"calibration": old}
    )  # saved before features were kept: its cache names the SAE


@pytest.mark.parametrize(
    ("features", "percentile", "message"),
    [
        ([], 95, "needs features"),
        ([1], 100, "strictly between"),
        ([1], 0, "strictly between"),
        ([1, 99999], 95, r"out of range 0\.\.4095: \[99999\]"),  # eval --features 99999 --gate
    ],
    ids=["no-features", "100", "0", "out-of-range"],
)
def test_bad_gates_are_refused(small, features, percentile, message):
    with pytest.raises(UserError, match=message):
        calibrate(small, features, percentile)


def test_an_evaluation_reports_how_often_the_gate_edits(small, pair, tmp_path, monkeypatch):
    """The on-rates are the hook's own decisions in the scoring and loss passes: no other
    pass to the SAE's hook runs, and they equal each sequence's decision taken alone."""
    _, _, features = pair
    settings = EvalSettings(question_limit=4, loss_rows=2, loss_context=32, known_filter=False)
    evaluator = Evaluator(small, settings)
    evaluator.folder = tmp_path
    gate = calibrate(small, features, percentile=95)
    iv = Intervention(tuple(features), (3.0,) * len(features), gate=gate)
    questions = [evaluator.scorer.encode(q) for q in evaluator.questions("forget_questions")]
    alone = prompt_rho(small, features, questions) > gate.alpha
    loss_rows = evaluator.loss_text.rows["retain"].tolist()
    rows_alone = prompt_rho(small, features, loss_rows) > gate.alpha

    def no_second_pass(tokens):
        raise AssertionError("a second pass to the SAE's hook")

    monkeypatch.setattr(small, "residual", no_second_pass)
    result = evaluator.evaluate(iv)
    rates = result["metrics"]["gate"]
    assert rates["wmdp"]["n"] == len(questions) > 0 and rates["retain_text"]["n"] == 2
    assert rates["wmdp"]["on"] == alone.mean()
    assert rates["retain_text"]["on"] == rows_alone.mean()
    drill = [q["gated"] for q in result["questions"] if q["set"] == "forget_questions"]
    assert drill == alone.tolist()  # the drill-down's "gated" column
    assert "each" not in rates["wmdp"]
    assert result["intervention"]["gate"]["alpha"] == gate.alpha


def test_calibration_without_a_cache_runs_to_the_hook_and_is_memoised(
    offline_ws, pair, tmp_path, monkeypatch
):
    from core.cache.build import build_caches
    from tests.helpers import small_workspace_config

    _, _, features = pair
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "cache"))
    ws = Workspace.open(str(small_workspace_config(tmp_path, rows=4)))
    gate = calibrate(ws, features, percentile=90)
    assert gate.calibration["from"] == "forward pass to the SAE's hook"
    assert gate.calibration["rows"] == 4
    memo = list((ws.folder / "gates").glob("alpha-*.json"))
    assert len(memo) == 1
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")
    build_caches(ws, [cache])
    np.testing.assert_allclose(
        window_rho(cached_fires(cache, features)), window_rho(forward_fires(ws, features, 4))
    )
    assert calibrate(ws, features, percentile=90).alpha == gate.alpha  # the memo
    assert list((ws.folder / "gates").glob("alpha-*.json")) == memo


def test_calibration_without_a_cache_or_a_model_says_so(unreachable_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "cache"))
    ws = Workspace.open("gemma-3-270m-it-L9")  # a hub preset: no cache, the hub unreachable
    with pytest.raises(
        UserError, match="not built, or the model and SAE to compute it, which cannot load"
    ):
        calibrate(ws, [1, 2], percentile=95)
    assert not (ws.folder / "gates").exists()


def test_a_kept_gate_is_used_only_for_its_own_rule_and_percentile(offline_ws):
    calibration = {"percentile": 95, "sae": offline_ws.sae_fingerprint()}
    kept = {"alpha": 0.25, "rule": "per feature", "calibration": calibration}
    gate = kept_gate(offline_ws, kept, [1, 2], 95.0, "per feature")
    assert gate == Gate(0.25, "per feature") and gate.calibration == kept["calibration"]
    assert kept_gate(offline_ws, kept, [1, 2], 90.0, "per feature") is None  # recalibrate
    assert kept_gate(offline_ws, kept, [1, 2], 95.0, "any selected") is None
    assert kept_gate(offline_ws, None, [1, 2], 95.0, "per feature") is None
    assert describe(gate) == "alpha = 0.2500, the 95th percentile of rho"


@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_calibration_is_computed_again(fresh_ws, pair, caplog, kind):
    _, _, features = pair
    fresh = calibrate(fresh_ws, features, percentile=90)  # a forward pass: no cache built
    (path,) = (fresh_ws.folder / "gates").glob("alpha-*.json")
    damaged = damage_memo(path, kind, "alpha")
    assert calibrate(fresh_ws, features, percentile=90) == fresh
    assert_moved_aside(path, damaged, caplog)
