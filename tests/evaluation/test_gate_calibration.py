"""A gate calibrated where it is used (METHOD §10): on windows of the retain rows whose
lengths follow the MMLU prompts', or on MMLU prompts no evaluation with these settings
scores; which one a result used is recorded and said; the retain rows stay the default."""

import numpy as np
import pytest
import torch

from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.gate_calibration import calibration_text
from core.evaluation.protocol import question_id
from core.evaluation.settings import SIDE, EvalSettings
from core.interventions.calibration import (
    WINDOW_STREAM,
    bootstrapped_percentile,
    calibrate,
    describe,
    kept_gate,
)
from core.interventions.edits import Intervention
from core.interventions.rho import cached_fires, prompt_rho, window_rho

pytestmark = pytest.mark.model

BIOLOGY = "The mitochondria is the powerhouse of the cell. DNA polymerase copies the strand."


@pytest.fixture(scope="module")
def features(offline_ws) -> list[int]:
    tokens = offline_ws.model.to_tokens(BIOLOGY)
    counts = (offline_ws.sae.encode(offline_ws.residual(tokens))[0, 1:] > 0).sum(0)
    return torch.argsort(counts, descending=True)[:6].tolist()


@pytest.fixture
def evaluator(small_app_ws, tmp_path) -> Evaluator:
    settings = EvalSettings(question_limit=6, loss_rows=1, loss_context=32, known_filter=False)
    evaluator = Evaluator(small_app_ws, settings)
    evaluator.folder = tmp_path
    return evaluator


def test_windows_follow_the_prompts_lengths_and_read_as_the_windows_alone(evaluator, features):
    ws = evaluator.ws
    text = calibration_text(evaluator.protocol, evaluator.scorer, "prompt-windows")
    sampled = evaluator.protocol.sampled_questions[SIDE]
    assert sorted(text.lengths) == sorted(len(evaluator.scorer.encode(q)) for q in sampled)
    short = tuple(length // 3 for length in text.lengths)  # shorter than the 64-token rows
    text = type(text)(text.on, lengths=short, said=text.said)
    gate = calibrate(ws, features, 95, text=text)
    retain = calibrate(ws, features, 95)
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")
    fires = cached_fires(cache, features)
    drawn = np.random.default_rng([0, WINDOW_STREAM]).choice(sorted(short), len(fires))
    rho = window_rho(fires, drawn)
    assert gate.alpha == bootstrapped_percentile(rho, 95, 0) != retain.alpha
    assert gate.calibration["on"] == "prompt-windows" and "on" not in retain.calibration
    assert gate.calibration["rows"] == len(fires) == cache.rows_final()
    assert "retain windows of the MMLU prompts' lengths" in describe(gate)
    assert "retain rows" in describe(retain)
    # a window's rho from the cached row is that of the window run alone (causal model)
    train, _ = ws.documents_split("retain_corpus")
    spec = cache.spec
    rows = ws.token_rows(train, spec.context_length, cache.rows_final(), spec.seed)
    alone = prompt_rho(ws, features, [rows[i, : drawn[i]].tolist() for i in range(3)])
    np.testing.assert_allclose(alone, rho[:3], rtol=1e-6)
    kept = {"alpha": gate.alpha, "rule": gate.rule, "calibration": gate.calibration}
    assert kept_gate(ws, kept, features, 95.0, gate.rule, "prompt-windows") == gate
    assert kept_gate(ws, kept, features, 95.0, gate.rule) is None  # asked for retain rows


def test_mmlu_prompts_are_never_scored_ones_and_a_run_scoring_one_is_refused(
    evaluator, features, tmp_path
):
    ws = evaluator.ws
    text = calibration_text(evaluator.protocol, evaluator.scorer, "mmlu-dev", most=16)
    sampled = evaluator.protocol.sampled_questions[SIDE]
    everything = ws.questions(SIDE)
    ids = set(text.questions)
    assert ids and not ids & {question_id(q) for q in sampled}
    assert len(ids) == 16 < len(everything) - len(sampled)
    gate = calibrate(ws, features, 95, text=text)
    assert gate.calibration["on"] == "mmlu-dev" and gate.calibration["rows"] == len(ids)
    assert np.isclose(
        gate.alpha,
        bootstrapped_percentile(prompt_rho(ws, features, text.sequences), 95, 0),
    )
    assert f"on {len(ids)} MMLU prompts no evaluation scores" in describe(gate)
    iv = Intervention(tuple(features), (3.0,) * len(features), gate=gate)
    everything_scored = Evaluator(ws, EvalSettings(split="all", known_filter=False))
    everything_scored.folder = tmp_path / "all"
    with pytest.raises(UserError, match=r"calibrated on \d+ of the MMLU questions this run"):
        everything_scored.evaluate(iv)
    with pytest.raises(UserError, match="needs questions outside the evaluated sample"):
        calibration_text(everything_scored.protocol, everything_scored.scorer, "mmlu-dev")
    with pytest.raises(UserError, match="Unknown gate calibration 'rows'"):
        calibration_text(evaluator.protocol, evaluator.scorer, "rows")
