"""Interventions at the SAE's hook and multiple-choice scoring, on the real offline model, SAE
and questions."""

import json

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.evaluation import EvalSettings, Evaluator, make_intervention
from core.interventions import Intervention, applied, edit, selected_activations
from core.known import PERMUTATIONS, build_known, permutation_correct
from core.mcq import Scorer, encode_prompt
from core.workspace import Workspace

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
def _biology_features(ws, n: int) -> list[int]:
    """Features firing far more often on forget than on retain documents (no caches needed)."""
    frequency = {}
    for role in ("forget_corpus", "retain_corpus"):
        docs = [d for d in ws.documents(role) if len(d) > 400][:12]
        tokens = torch.tensor([ws.tokenizer.encode(d)[:64] for d in docs])
        frequency[role] = (ws.sae.encode(ws.residual(tokens))[:, 1:] > 0).float().mean((0, 1))
    return torch.argsort(frequency["forget_corpus"] - frequency["retain_corpus"], descending=True)[
        :n
    ].tolist()


@torch.no_grad()
def test_clamp_edits_only_where_a_selected_feature_fires(offline_ws, resid):
    sae = offline_ws.sae
    features = _active_features(offline_ws, resid)
    iv = Intervention(tuple(features), (20.0,) * 3)
    edited = edit(sae, resid, iv, features)
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
    assert torch.equal(edit(offline_ws.sae, x, iv, [feature]), x)
    scale_zero = Intervention((feature,), (0.0,), method="scale")
    assert torch.equal(edit(offline_ws.sae, resid, scale_zero, [feature]), resid)


@torch.no_grad()
def test_bos_option_and_random_control(offline_ws, resid):
    sae = offline_ws.sae
    bos_features = torch.nonzero(sae.encode(resid)[0, 0] > 0).flatten()[:2].tolist()
    keep = edit(sae, resid, Intervention(tuple(bos_features), (30.0, 30.0)), bos_features)
    edit_bos = Intervention(tuple(bos_features), (30.0, 30.0), skip_bos=False)
    assert torch.equal(keep[0, 0], resid[0, 0])
    assert not torch.equal(edit(sae, resid, edit_bos, bos_features)[0, 0], resid[0, 0])
    assert Intervention((4095, 7), method="random").targets(4096) == (0, 8)


def test_mean_ablation_moves_the_feature_to_its_retain_mean(small_app_env, monkeypatch, resid):
    from core.stats import workspace_stats

    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    ws = Workspace.open("offline-gemma3-270m")
    table, _ = workspace_stats(ws)
    row = table.sort_values("retain_freq_saebench").iloc[-1]  # fires most on retain text
    feature = int(row["feature"])
    iv = make_intervention(ws, [feature], [1.0], "mean")
    expected = row["retain_mean_saebench"] * row["retain_freq_saebench"]
    assert iv.means[0] == pytest.approx(expected) and iv.means[0] > 0
    assert make_intervention(ws, [feature], [1.0], "mean", table=table).means == iv.means
    acts = ws.sae.encode(resid)[..., feature]
    moved = (edit(ws.sae, resid, iv, [feature]) - resid)[0]
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


@pytest.mark.parametrize("architecture", ["standard", "jumprelu"])
def test_partial_encode_matches_the_full_encode(architecture):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    if architecture == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64))
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=64))
        with torch.no_grad():
            sae.threshold.fill_(0.05)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
        if architecture == "jumprelu":
            sae.threshold.abs_()
        x = torch.randn(2, 5, 16)
        picked = [3, 10, 42]
        assert torch.allclose(selected_activations(sae, x, picked), sae.encode(x)[..., picked])


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


@torch.no_grad()
def test_batched_scores_equal_a_direct_unbatched_computation(offline_ws):
    scorer = Scorer(offline_ws.model, offline_ws.tokenizer, chat=False)
    questions = offline_ws.questions("forget_questions")[:3]
    scores = scorer.score(questions)
    for question, probs in zip(questions, scores.probs, strict=True):
        ids = scorer.encode(question)
        assert ids[0] == offline_ws.tokenizer.bos_token_id and ids.count(ids[0]) == 1
        logits = offline_ws.model(torch.tensor([ids]))[0, -1]
        direct = torch.softmax(logits.float(), dim=-1)[scorer.letter_ids].amax(dim=-1)
        assert np.allclose(direct.numpy(), probs, atol=1e-5)
    assert scores.predictions.tolist() == scores.probs.argmax(axis=1).tolist()


def test_prefix_reuse_filter_equals_the_plain_filter(offline_ws):
    questions = offline_ws.questions("forget_questions")[:2]
    for scoring, picked in (("letter", questions), ("likelihood", questions[1:])):
        scorer = Scorer(offline_ws.model, offline_ws.tokenizer, False, scoring)
        reused = permutation_correct(scorer, picked, reuse_prefix=True)
        plain = permutation_correct(scorer, picked, reuse_prefix=False)
        assert reused.shape == (len(picked), len(PERMUTATIONS))
        assert np.array_equal(reused, plain)


def test_known_cache_is_keyed_by_dtype(offline_ws, tmp_path):
    from tests.helpers import small_workspace_config

    bf16 = Workspace.open(str(small_workspace_config(tmp_path, model__dtype="bfloat16")))
    role = "forget_questions"
    assert Evaluator(offline_ws).known_path(role) != Evaluator(bf16).known_path(role)
    scorer = Scorer(offline_ws.model, offline_ws.tokenizer, chat=False)
    questions = offline_ws.questions(role)[:1]
    path = tmp_path / "known.json"
    first = build_known(scorer, questions, path, {"dtype": "float32"})
    stored = json.loads(path.read_text())
    stored["with_question"] = [-1]  # what a stale record would hold
    path.write_text(json.dumps(stored))
    assert build_known(scorer, questions, path, {"dtype": "float32"}).right.tolist() == [-1]
    again = build_known(scorer, questions, path, {"dtype": "bfloat16"})
    assert again.right.tolist() == first.right.tolist()
    assert json.loads(path.read_text())["key"]["dtype"] == "bfloat16"


def test_evaluate_reports_side_effects_and_is_memoised(offline_ws):
    features = _biology_features(offline_ws, 10)
    settings = EvalSettings(question_limit=3, loss_rows=3, loss_context=64, known_filter=False)
    evaluator = Evaluator(offline_ws, settings)
    iv = make_intervention(offline_ws, features, [20.0] * len(features))
    result = evaluator.evaluate(iv)
    m = result["metrics"]
    assert m["wmdp_all_n"] == 3 and m["wmdp_known_n"] == 0
    assert m["forget_loss_added"] > m["retain_loss_added"]
    assert any("known-question filter has not run" in w for w in result["warnings"])
    assert len(result["questions"]) == 6 and {"before", "after", "flipped"} <= set(
        result["questions"][0]
    )
    assert result["provenance"]["hook"] == "blocks.9.hook_resid_post"
    assert evaluator.evaluate(iv)["created_at"] == result["created_at"]  # from disk
    json.dumps(result)
    with pytest.raises(UserError, match="out of range"):
        make_intervention(offline_ws, [99_999], [20.0])
