"""Multiple-choice scoring and the known-question filter on the real offline model."""

import json

import numpy as np
import pytest
import torch

from core.evaluation.evaluator import Evaluator
from core.evaluation.known import PERMUTATIONS, build_known, permutation_correct
from core.evaluation.mcq import Scorer
from core.workspace.workspace import Workspace
from tests.helpers import small_workspace_config

pytestmark = pytest.mark.model


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
    bf16 = Workspace.open(str(small_workspace_config(tmp_path, model__dtype="bfloat16")))
    role = "forget_questions"
    assert Evaluator(offline_ws).known_path(role) != Evaluator(bf16).known_path(role)
    scorer = Scorer(offline_ws.model, offline_ws.tokenizer, chat=False)
    questions = offline_ws.questions(role)[:1]
    path = tmp_path / "known.json"
    first = build_known(scorer, questions, path, {"dtype": "float32"})
    stored = json.loads(path.read_text())
    stale = [(first.right.tolist()[0] + 1) % 25]  # a record this run did not make
    stored["with_question"] = stale
    path.write_text(json.dumps(stored))
    assert build_known(scorer, questions, path, {"dtype": "float32"}).right.tolist() == stale
    again = build_known(scorer, questions, path, {"dtype": "bfloat16"})
    assert again.right.tolist() == first.right.tolist()
    assert json.loads(path.read_text())["key"]["dtype"] == "bfloat16"
