"""Gradient attribution (METHOD §4) on the real offline model, SAE and questions."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.evaluation.evaluator import Evaluator
from core.evaluation.protocol import question_id
from core.evaluation.settings import EvalSettings
from core.runtime.forward import final_logits
from core.selection.attribution import AttributionConfig, Attributor, attribution_batch
from tests.helpers import assert_moved_aside

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def evaluator(offline_ws):
    settings = EvalSettings(question_limit=6, known_filter=False, split="selection")
    return Evaluator(offline_ws, settings)  # 4 forget questions: the selection part of 6


def _metric(ws, scorer, question, feature: int | None = None, eps: float = 0.0) -> float:
    """The right-minus-wrong letter logit with feature j scaled by (1 + eps) after BOS."""

    def scale(x, hook):
        acts = ws.sae.encode(x)[..., feature]
        acts[:, 0] = 0
        return x + eps * acts[..., None] * ws.sae.W_dec[feature]

    hooks = [] if feature is None else [(ws.hook, scale)]
    with torch.no_grad(), ws.model.hooks(fwd_hooks=hooks):
        tokens = torch.tensor([scorer.encode(question)])
        resid = ws.model(tokens, stop_at_layer=ws.model.cfg.n_layers)
        letters = final_logits(ws.model, resid[0, -1])[scorer.letter_ids].amax(dim=-1)
    right = letters[question.answer]
    return float(right - (letters.sum() - right) / 3)


def test_attribution_is_the_metric_slope_when_a_feature_is_scaled(offline_ws, evaluator):
    scorer = evaluator.scorer
    question = evaluator.questions("forget_questions")[0]
    scores = attribution_batch(offline_ws, scorer, [question])[0]
    feature = int(np.argmax(np.abs(scores)))
    assert scores[feature] != 0
    eps = 1e-2
    up = _metric(offline_ws, scorer, question, feature, eps)
    down = _metric(offline_ws, scorer, question, feature, -eps)
    slope = (up - down) / (2 * eps)
    assert slope == pytest.approx(float(scores[feature]), rel=0.05, abs=1e-3)


def test_batched_attribution_equals_one_question_at_a_time(offline_ws, evaluator):
    questions = evaluator.questions("forget_questions")
    together = attribution_batch(offline_ws, evaluator.scorer, questions)
    for question, row in zip(questions, together, strict=True):
        alone = attribution_batch(offline_ws, evaluator.scorer, [question])[0]
        np.testing.assert_allclose(row, alone, rtol=1e-3, atol=1e-4)


def test_the_known_filter_runs_on_attribute_never_on_a_look_for_a_kept_one(
    offline_ws, tmp_path, monkeypatch
):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    ev = Evaluator(offline_ws, EvalSettings(question_limit=3, split="selection"))  # filter on
    attributor = Attributor(ev, AttributionConfig(question_limit=2))
    assert attributor.cached() is None and not ev.has_known("forget_questions")  # nothing ran
    stages: list[str] = []
    found = attributor.attribute(known_progress=lambda stage, _: stages.append(stage))
    assert ev.has_known("forget_questions") and stages[-1] == "known forget_questions"
    assert "has not run" not in found.provenance["questions_used"]
    again = Attributor(ev, AttributionConfig(question_limit=2)).cached()
    assert again is not None and np.array_equal(again.mean, found.mean)


def test_attribution_is_cached_and_ranks_positive_features(evaluator, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    attributor = Attributor(evaluator)
    assert attributor.cached() is None
    found = attributor.attribute()
    n = len(attributor.questions)
    assert found.questions == n == 4 and found.hits.sum() == n * 20
    top = found.top(10)
    assert top and all(found.mean[j] > 0 for j in top)
    assert list(found.mean[top]) == sorted(found.mean[top], reverse=True)
    again = Attributor(evaluator).cached()
    assert again is not None and np.array_equal(again.mean, found.mean)
    # each mean's interval: its standard error over the questions' own attributions
    each = attribution_batch(evaluator.ws, evaluator.scorer, attributor.questions)
    np.testing.assert_allclose(found.mean, each.mean(axis=0), rtol=1e-5, atol=1e-6)
    se = each.std(axis=0, ddof=1) / np.sqrt(n)
    np.testing.assert_allclose(found.se, se, rtol=1e-3, atol=1e-6)
    low, high = found.interval(top)
    np.testing.assert_allclose(high - low, 2 * 1.959964 * se[top], rtol=1e-3, atol=1e-6)
    record = found.selection_record(AttributionConfig(n=10))
    assert record["se_attribution"] == list(found.se[top])
    assert record["question_ids"] == {
        "forget_questions": [question_id(q) for q in attributor.questions]
    }


def test_cli_ranks_saves_a_set_and_writes_provenance(offline_ws, tmp_path, monkeypatch):
    import json

    from core.cli import main
    from core.labels.store import LabelStore

    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    out = tmp_path / "ranking.json"
    argv = ["attribute", "--questions", "4", "--skip-known", "--n", "3", "--save-set", "attr"]
    assert main([*argv, "--out", str(out)]) == 0
    ranking = json.loads(out.read_text())
    assert 0 < len(ranking["features"]) <= 3
    assert ranking["provenance"]["questions_used"].startswith("3 all sampled, selection split")
    assert len(ranking["question_ids"]["forget_questions"]) == 3
    assert ranking["config"] == {"role": "forget_questions", "question_limit": None, "n": 3}
    assert ranking["provenance"]["hook"] == offline_ws.hook
    saved = LabelStore.for_workspace(offline_ws).get_set("attr")  # folder from the environment
    assert list(saved.features) == ranking["features"]
    assert saved.chosen_on == ranking["question_ids"]  # what `eval --set` checks against
    assert main(["attribute", "--split", "report", "--questions", "4"]) == 2  # never on report
    # the README's chain: a report on a larger sample never scores the questions that chose
    report = ["eval", "--set", "attr", "--report", "--questions", "8", "--loss-rows", "1"]
    found = tmp_path / "report.json"
    assert main([*report, "--skip-known", "--out", str(found)]) == 0
    assert "optimistic" not in json.loads(found.read_text())
    overlap = ["eval", "--set", "attr", "--split", "all", "--questions", "4", "--skip-known"]
    assert main(overlap) == 2  # it holds the questions that chose the set


@pytest.mark.parametrize("kind", ["truncated", "not an archive", "missing array"])
def test_a_damaged_attribution_is_computed_again(evaluator, tmp_path, monkeypatch, caplog, kind):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    attributor = Attributor(evaluator, AttributionConfig(question_limit=2))
    fresh = attributor.attribute()
    path = attributor.path
    if kind == "missing array":
        with np.load(path) as stored:
            kept = {name: stored[name] for name in ("mean", "hits", "record")}
        np.savez(path, **kept)
    else:
        path.write_bytes(path.read_bytes()[:-100] if kind == "truncated" else b"{}")
    damaged = path.read_bytes()
    again = Attributor(evaluator, AttributionConfig(question_limit=2)).attribute()
    for name in ("mean", "se", "hits"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
    assert again.provenance == fresh.provenance and again.question_ids == fresh.question_ids
    assert_moved_aside(path, damaged, caplog)


def test_a_kill_during_attribute_save_set_leaves_no_set_and_reruns_succeed(
    offline_ws, tmp_path, monkeypatch, capsys
):
    """SIGKILLed while attributing: no set; the rerun saves it; a rerun after that (as after
    a kill once the set was written) finds it kept instead of refusing the name."""
    from core.base.paths import REPO_ROOT
    from core.cli import main
    from core.labels.store import LabelStore

    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    argv = ["attribute", "--questions", "4", "--skip-known", "--n", "3", "--save-set", "attr"]
    process = subprocess.Popen(
        [sys.executable, "-m", "core", *argv],
        cwd=REPO_ROOT,
        env=os.environ | {"UNLEARNING_LENS_CACHE_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    said = b""
    while b"%|" not in said:  # the attribution's progress bar: attributing now
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, said.decode(errors="replace")
        said += chunk
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    store = LabelStore.for_workspace(offline_ws)
    assert "attr" not in store.set_names()
    assert main(argv) == 0 and "saved set 'attr'" in capsys.readouterr().out
    saved = store.get_set("attr")
    assert main(argv) == 0 and "holds this attribution already" in capsys.readouterr().out
    assert store.get_set("attr") == saved
    assert main([*argv[:-1], "other"]) == 0
    other = ["attribute", "--questions", "4", "--skip-known", "--n", "2", "--save-set", "attr"]
    assert main(other) == 2 and "exists already" in capsys.readouterr().err
