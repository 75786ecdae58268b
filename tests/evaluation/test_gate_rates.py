"""The gate's on-rates come from the hook's own record of the passes that score (METHOD §10):
a sequence's decision is the same in a padded batch as alone, and a gated k-shot run reports
the decisions on its own, longer prompts."""

import numpy as np
import pytest
import torch

from core.evaluation.evaluator import Evaluator
from core.evaluation.mcq import Scorer
from core.evaluation.report_rows import metric_rows
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.interventions.calibration import calibrate
from core.interventions.edits import Intervention, applied
from core.interventions.gate import Gate
from core.interventions.rho import prompt_rho
from core.runtime.forward import batches
from core.runtime.gate_record import recording

pytestmark = pytest.mark.model

BIOLOGY = "The mitochondria is the powerhouse of the cell. DNA polymerase copies the strand."


@pytest.fixture(scope="module")
def features(offline_ws) -> list[int]:
    """Features that fire often on a biology sentence."""
    tokens = offline_ws.model.to_tokens(BIOLOGY)
    counts = (offline_ws.sae.encode(offline_ws.residual(tokens))[0, 1:] > 0).sum(0)
    return torch.argsort(counts, descending=True)[:6].tolist()


@pytest.mark.parametrize(("scoring", "n"), [("letter", 3), ("likelihood", 1)])
def test_decisions_in_padded_batches_equal_one_at_a_time(offline_ws, features, scoring, n):
    ws = offline_ws
    questions = ws.questions(FORGET)[:n] + ws.questions(SIDE)[:n]
    scorer = Scorer(ws.model, ws.tokenizer, ws.config.model.chat_template, scoring)
    per = 1 if scoring == "letter" else 4
    sequences = [
        scorer.encode(q) + ([] if per == 1 else scorer.choice_tokens(c))
        for q in questions
        for c in (q.choices if per == 4 else [None])
    ]
    groups = batches([len(s) for s in sequences])
    assert any(len({len(sequences[i]) for i in group}) > 1 for group in groups)  # padded
    rho = prompt_rho(ws, features, sequences)
    alpha = float(np.median(rho))
    iv = Intervention(tuple(features), (3.0,) * len(features), gate=Gate(alpha))
    with applied(ws.model, ws.sae, ws.hook, iv):
        with recording() as batched:
            scorer.score(questions)
        alone = []
        for q in questions:
            with recording() as record:
                scorer.score([q])
            alone += record.decisions(per).tolist()
    decided = batched.decisions(len(sequences))
    assert decided.tolist() == alone == (rho > alpha).tolist()
    assert 0 < decided.sum() < len(decided)  # both decisions occur


def test_a_gated_k_shot_run_reports_its_own_on_rates(small_app_ws, features, tmp_path):
    settings = EvalSettings(
        question_limit=2, loss_rows=1, loss_context=32, known_filter=False, shots=2
    )
    evaluator = Evaluator(small_app_ws, settings)
    evaluator.folder = tmp_path
    gate = calibrate(small_app_ws, features, percentile=95)
    iv = Intervention(tuple(features), (3.0,) * len(features), gate=gate)
    result = evaluator.evaluate(iv)
    k_shot = result["metrics"]["k_shot"]["gate"]
    for role, name in ((FORGET, "wmdp"), (SIDE, "mmlu")):
        questions = evaluator.questions(role)
        shots = evaluator._shots[role]
        long = [evaluator.scorer.encode(q, shots=shots[q.subject]) for q in questions]
        short = [evaluator.scorer.encode(q) for q in questions]
        assert min(map(len, long)) > max(map(len, short))
        on = prompt_rho(small_app_ws, features, long) > gate.alpha
        assert k_shot[name]["n"] == len(questions)
        assert k_shot[name]["on"] == on.mean()
        on_short = prompt_rho(small_app_ws, features, short) > gate.alpha
        assert result["metrics"]["gate"][name]["on"] == on_short.mean()
    measures = [row["measure"] for row in metric_rows(result["metrics"])]
    assert "gate on: MMLU prompts, 2-shot (share of sequences edited)" in measures
