"""k-shot scoring (METHOD §12): the shared k-shot block run once as a key-value cache scores
exactly as whole prompts do, clean and clamped, past the local-attention window; the
evaluator reports k = 0 and k shots side by side and refuses a k it cannot serve."""

import numpy as np
import pytest

from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.k_shot import shot_examples
from core.evaluation.mcq import Scorer
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.report_rows import metric_rows
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.interventions.edits import Intervention, applied

pytestmark = pytest.mark.model


@pytest.mark.parametrize(("scoring", "k", "n"), [("letter", 5, 2), ("likelihood", 1, 1)])
def test_prefix_reuse_scores_as_whole_prompts_do(offline_ws, scoring, k, n):
    ws = offline_ws
    questions = ws.questions(FORGET)[:40]
    shots = {"biology": questions[:k]}  # 5 long WMDP examples pass the 512-token window
    scorer = Scorer(ws.model, ws.tokenizer, ws.config.model.chat_template, scoring)
    scored = questions[5 : 5 + n]
    if k == 5:
        assert min(len(scorer.encode(q, shots=shots["biology"])) for q in scored) > 512
    iv = Intervention((1, 2, 3), (0.5, 0.5, 0.5))  # BOS spared: only the real BOS
    for edit in (None, iv):
        with applied(ws.model, ws.sae, ws.hook, edit):
            reused = scorer.score(scored, shots=shots, reuse=True).probs
            whole = scorer.score(scored, shots=shots, reuse=False).probs
        np.testing.assert_allclose(reused, whole, rtol=2e-4, atol=2e-6)


@pytest.fixture
def evaluator(small_app_ws) -> Evaluator:
    settings = EvalSettings(
        question_limit=2, loss_rows=1, loss_context=32, known_filter=False, shots=2
    )
    return Evaluator(small_app_ws, settings)


def test_the_evaluator_reports_k_shot_beside_k_zero(evaluator):
    shots = shot_examples(evaluator.protocol)
    for role in (FORGET, SIDE):
        scored = evaluator.questions(role)
        for subject, examples in shots[role].items():
            assert len(examples) == 2 and all(q.subject == subject for q in examples)
            assert not set(examples) & set(
                evaluator.protocol.sampled_questions[role]
            )  # never a sampled question
        assert scored
    result = evaluator.evaluate(Intervention((1, 2), (0.5, 0.5)))
    shots = result["metrics"]["k_shot"]
    assert shots["k"] == 2 and shots["wmdp_all_n"] == result["metrics"]["wmdp_all_n"]
    assert shots["wmdp_all_accuracy"] is not None and shots["mmlu_all_accuracy"] is not None
    measures = [row["measure"] for row in metric_rows(result["metrics"])]
    assert "WMDP-bio, all questions" in measures and "WMDP-bio, all questions, 2-shot" in measures
    assert "shots_rule" in result["provenance"]


def test_a_k_larger_than_the_examples_is_refused_before_anything_runs(small_app_ws):
    settings = EvalSettings(question_limit=None, split="all", loss_rows=1, shots=1)
    evaluator = Evaluator(small_app_ws, settings)
    with pytest.raises(UserError, match="examples outside the scored questions"):
        evaluator.evaluate(Intervention((1,), (0.5,)))
    assert not evaluator.baseline_path().exists()
    whole = EvalSettings(question_limit=None, split="all", loss_rows=1)
    assert shot_examples(QuestionProtocol(small_app_ws, whole)) == {}  # k = 0 needs none
    with pytest.raises(UserError, match="between 0 and 10"):
        EvalSettings(shots=11).check()
