"""Numbers pinned before core/ was restructured: frequencies of a small cache, a clamp's
logits, MCQ probabilities, a fixed sweep, and the names caches and memos are stored under
(so caches built before still serve). A move or a refactor must not change any of them.
Re-pin (`UNLEARNING_LENS_REPIN=1 pytest tests/refactor_compatibility`) only for a change
that is meant to change results, and say so in the commit."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cache.store import SparseActivationStore
from core.evaluation.evaluator import Evaluator
from core.evaluation.mcq import Scorer
from core.evaluation.metrics import saebench_score
from core.evaluation.settings import EvalSettings
from core.features.stats import workspace_stats
from core.interventions.edits import Intervention, applied
from core.selection.frequency import SelectionConfig, select_features
from core.sweeps.grid import SweepConfig
from core.sweeps.run import sweep
from core.workspace.workspace import Workspace

pytestmark = pytest.mark.model

PINNED_PATH = Path(__file__).with_name("pinned.json")
CORPORA = ("forget_corpus", "retain_corpus")
TEXT = "The mitochondria is the powerhouse of the cell. DNA polymerase copies the strand."
FIXED_POINTS = [
    {"wmdp_known_accuracy": 0.4, "mmlu_known_accuracy": 0.98},
    {"wmdp_known_accuracy": 0.7, "mmlu_known_accuracy": 0.99},
    {"wmdp_known_accuracy": 0.55, "mmlu_known_accuracy": 1.0},
]


def frequencies(ws: Workspace) -> dict:
    """Counts and frequencies of the small workspace's caches, and the METHOD §4 selection."""
    table, record = workspace_stats(ws)
    top = table.sort_values(["forget_count_saebench", "feature"], ascending=[False, True])[:10]
    return {
        "tokens": {role: record[role]["tokens"] for role in ("forget", "retain")},
        "top_forget": [
            [int(row.feature), int(row.forget_count_saebench), int(row.retain_count_saebench)]
            for row in top.itertuples()
        ],
        "freq_sums": {
            column: float(table[column].sum())
            for column in (
                "forget_freq_saebench",
                "retain_freq_saebench",
                "forget_freq_authors",
                "retain_freq_authors",
            )
        },
        "selected": select_features(table, SelectionConfig(0.01, 5))["feature"].tolist(),
    }


@torch.no_grad()
def clamp_logits(ws: Workspace) -> dict:
    """The last position's top logits with the text's three most active features clamped."""
    tokens = ws.model.to_tokens(TEXT)
    counts = (ws.sae.encode(ws.residual(tokens))[0, 1:] > 0).sum(dim=0)
    features = torch.argsort(counts, descending=True, stable=True)[:3].tolist()
    iv = Intervention(tuple(features), (20.0,) * 3)
    with applied(ws.model, ws.sae, ws.hook, iv):
        logits = ws.model(tokens)[0, -1].float()
    top = logits.topk(5)
    return {
        "features": features,
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "mean_logit": float(logits.mean()),
    }


def mcq(ws: Workspace) -> dict:
    """Letter and choice-likelihood probabilities of the first WMDP-bio questions."""
    questions = ws.questions("forget_questions")[:3]
    chat = ws.config.model.chat_template
    letter = Scorer(ws.model, ws.tokenizer, chat, "letter").score(questions).probs
    likelihood = Scorer(ws.model, ws.tokenizer, chat, "likelihood").score(questions[:2]).probs
    return {"letter": letter.tolist(), "likelihood": likelihood.tolist()}


def fixed_sweep(ws: Workspace) -> dict:
    """One sweep point on tiny budgets, and the SAEBench score of fixed points."""
    settings = EvalSettings(
        question_limit=2, loss_rows=1, loss_context=32, known_filter=False, split="all"
    )
    result = sweep(Evaluator(ws, settings), SweepConfig((0.01,), (3,), (20.0,)))
    point = result["points"][0]
    keys = ("features", "wmdp_all_accuracy", "mmlu_all_accuracy", "loss_added")
    return {
        "point": {key: point[key] for key in keys},
        "forget_loss_added": point["forget_loss_added"],
        "retain_loss_added": point["retain_loss_added"],
        "saebench_score_fixed": saebench_score(FIXED_POINTS),
    }


def disk_keys(ws: Workspace) -> dict:
    """The folder and file names the caches, the known filter and the baseline are kept
    under: unchanged names mean caches on disk keep working. (The baseline's name was
    re-pinned on purpose: evaluation memos are now also keyed by the contents of the
    question and text files and by the new settings, split and min_known; so was the known
    record's: one record per question set, so samples of other sizes keep their own; and
    both again when memos were keyed by the model's exact weights and the torch,
    transformer-lens and sae-lens versions; the caches' folders when their spec gained the
    model's exact weights, `model_weights`.)"""
    settings = EvalSettings(
        question_limit=2, loss_rows=1, loss_context=32, known_filter=False, split="all"
    )
    evaluator = Evaluator(ws, settings)
    return {
        **{role: SparseActivationStore.for_workspace(ws, role).folder.name for role in CORPORA},
        "known": evaluator.known_path("forget_questions").name,
        "baseline": evaluator.baseline_path().name,
    }


def measure(small: Workspace, offline: Workspace) -> dict:
    return {
        "disk_keys": disk_keys(small),
        "frequencies": frequencies(small),
        "clamp_logits": clamp_logits(offline),
        "mcq": mcq(offline),
        "sweep": fixed_sweep(small),
    }


def assert_same(found, pinned, where: str = "") -> None:
    """Equal structure; integers and lists of ids exactly, floats to 1e-4 relative."""
    if isinstance(pinned, dict):
        assert sorted(found) == sorted(pinned), where
        for key in pinned:
            assert_same(found[key], pinned[key], f"{where}.{key}")
    elif isinstance(pinned, list):
        assert len(found) == len(pinned), where
        for i, (a, b) in enumerate(zip(found, pinned, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(pinned, float):
        assert np.isclose(found, pinned, rtol=1e-4, atol=1e-6), f"{where}: {found} != {pinned}"
    else:
        assert found == pinned, f"{where}: {found!r} != {pinned!r}"


def test_numbers_are_those_pinned_before_the_restructure(small_app_ws, offline_ws):
    found = measure(small_app_ws, offline_ws)
    if os.environ.get("UNLEARNING_LENS_REPIN"):
        PINNED_PATH.write_text(json.dumps(found, indent=1) + "\n")
    assert_same(found, json.loads(PINNED_PATH.read_text()))
