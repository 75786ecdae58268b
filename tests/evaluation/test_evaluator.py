"""The evaluator end to end on the real offline model: metrics, warnings, drill-down,
provenance, the disk memo."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.base.config_files import load_config
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import KnownSet
from core.evaluation.settings import EvalSettings
from core.interventions.edits import make_intervention
from core.workspace.workspace import Workspace
from tests.helpers import biology_features, preset, write_config

pytestmark = pytest.mark.model


def test_evaluate_reports_side_effects_and_is_memoised(offline_ws):
    features = biology_features(offline_ws, 10)
    settings = EvalSettings(
        question_limit=3, loss_rows=3, loss_context=64, known_filter=False, split="all"
    )
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


def test_memo_keys_follow_the_question_files_contents(tmp_path):
    shipped = load_config("offline-gemma3-270m")
    questions = json.loads(shipped.local_path(shipped.source("forget_questions")).read_text())
    keys = []
    for name, answer in (("same", questions[0]["answer"]), ("rekeyed", 3 - questions[0]["answer"])):
        path = tmp_path / name / "bio_questions.json"
        path.parent.mkdir()
        path.write_text(json.dumps([questions[0] | {"answer": answer}, *questions[1:5]]))
        raw = preset()
        raw["data"]["forget_questions"]["path"] = str(path)
        ws = Workspace.open(str(write_config(tmp_path / name, raw)))
        keys.append(Evaluator(ws, EvalSettings(question_limit=2)).baseline_path().name)
    assert keys[0] != keys[1]


def test_two_runs_at_once_on_the_shared_model_give_what_each_gives_alone(small_app_ws, tmp_path):
    ws = small_app_ws
    settings = EvalSettings(question_limit=2, loss_rows=2, loss_context=32, known_filter=False)
    edits = {
        "clamp": make_intervention(ws, [3080, 1829], [20.0, 20.0]),
        "scale": make_intervention(ws, [372, 183], [0.9, 0.9], method="scale"),
    }

    def evaluate(name: str, folder: str) -> dict:
        evaluator = Evaluator(ws, settings)
        evaluator.folder = tmp_path / folder / name  # no memo shared between the runs
        return evaluator.evaluate(edits[name])["metrics"]

    alone = {name: evaluate(name, "alone") for name in edits}
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = dict(zip(edits, pool.map(evaluate, edits, ["together"] * 2), strict=True))
    assert together == alone


def test_selection_and_report_splits_are_disjoint_seeded_and_share_the_known_filter(
    offline_ws, monkeypatch
):
    role = "forget_questions"
    split = {
        name: Evaluator(offline_ws, EvalSettings(question_limit=10, split=name))
        for name in ("selection", "report", "all")
    }
    chosen = {name: set(ev.protocol.split_indices(role).tolist()) for name, ev in split.items()}
    assert len(chosen["selection"]) == len(chosen["report"]) == 5
    assert chosen["selection"] | chosen["report"] == chosen["all"] == set(range(10))
    assert not chosen["selection"] & chosen["report"]
    again = Evaluator(offline_ws, EvalSettings(question_limit=10, split="report"))
    assert again.questions(role) == split["report"].questions(role)
    right = np.where(np.arange(10) % 3 == 0, 24, 23)  # questions 0, 3, 6, 9 of the sample known
    for name, evaluator in split.items():
        pool = evaluator.protocol.sampled_questions[role]
        known = KnownSet(pool, right, None, {})
        monkeypatch.setattr(evaluator, "known", lambda r, progress=None, k=known: k)
        monkeypatch.setattr(evaluator, "has_known", lambda r: True)
        positions = evaluator.known_indices(role)
        sample_positions = evaluator.protocol.split_indices(role)[positions]
        assert set(sample_positions.tolist()) == {0, 3, 6, 9} & chosen[name]
