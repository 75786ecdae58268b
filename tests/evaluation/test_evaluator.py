"""The evaluator end to end on the real offline model: metrics, warnings, drill-down,
provenance, the disk memo."""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

import core.evaluation.known
from core.base.config_files import load_config
from core.base.records import record_key, write_json
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import known_key
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.settings import FORGET, SIDE, EvalSettings
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


def test_selection_and_report_splits_are_disjoint_and_seeded(offline_ws):
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


@pytest.fixture
def orderings(monkeypatch) -> list[int]:
    """The sizes of the question chunks scored in all 24 orderings, as they run."""
    calls: list[int] = []
    real = core.evaluation.known.permutation_correct

    def counted(scorer, questions, *args, **kwargs):
        calls.append(len(questions))
        return real(scorer, questions, *args, **kwargs)

    monkeypatch.setattr(core.evaluation.known, "permutation_correct", counted)
    return calls


def _known_files(ws: Workspace) -> list[Path]:
    return sorted((ws.folder / "known").glob("*.json"))


def test_the_splits_of_a_sample_share_its_real_known_record(fresh_ws, orderings):
    split = {
        name: Evaluator(fresh_ws, EvalSettings(question_limit=3, split=name))
        for name in ("all", "selection", "report")
    }
    assert len(split["all"].known(FORGET).right) == 3  # the real filter: 3 questions x 24
    assert sum(orderings) == 3 and split["all"].has_known(FORGET)
    # This 270m model knows none of them: mark the first and last known, so the positions
    # below are not trivially empty (the record's key stays the real one).
    path = split["all"].known_path(FORGET)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"with_question": [24, 6, 24]}))
    pool = split["all"].protocol.sampled_questions[FORGET]
    for evaluator in split.values():
        asked = evaluator.questions(FORGET)
        found = {asked[i].question for i in evaluator.known_indices(FORGET)}
        assert found == {pool[0].question, pool[2].question} & {q.question for q in asked}
    assert sum(orderings) == 3 and len(_known_files(fresh_ws)) == 1  # one record, shared


def test_two_sample_sizes_keep_two_records_and_an_old_record_is_not_used(fresh_ws, orderings):
    def evaluator(n: int, known_filter: bool = True) -> Evaluator:
        return Evaluator(fresh_ws, EvalSettings(question_limit=n, known_filter=known_filter))

    first = {n: evaluator(n).known(FORGET).right.tolist() for n in (1, 2)}
    assert sum(orderings) == 3 and len(_known_files(fresh_ws)) == 2
    assert {n: evaluator(n).known(FORGET).right.tolist() for n in (1, 2)} == first
    assert sum(orderings) == 3  # switching back and forth recomputes nothing
    three = evaluator(3, known_filter=False)
    key_record = three.known_key_record(FORGET)
    old = fresh_ws.folder / "known" / f"{FORGET}-{record_key(key_record)}.json"
    old_record = {"key": known_key(three.protocol.sampled_questions[FORGET], key_record)}
    write_json(old, old_record | {"with_question": [24] * 3})  # where records were kept before
    assert not three.has_known(FORGET) and three.known_indices(FORGET) is None
    assert three.cached(make_intervention(fresh_ws, [3080], [20.0])) is None
    assert sum(orderings) == 3 and len(_known_files(fresh_ws)) == 3


def test_with_the_filter_off_another_samples_record_runs_nothing(fresh_ws, orderings):
    settings = EvalSettings(question_limit=2, loss_rows=1, loss_context=32, known_filter=False)
    evaluator = Evaluator(fresh_ws, settings)
    other = Evaluator(fresh_ws, replace(settings, question_limit=3))
    for role in (FORGET, SIDE):
        key = known_key(other.protocol.sampled_questions[role], other.known_key_record(role))
        write_json(other.known_path(role), {"key": key, "with_question": [24, 24, 24]})
        assert other.has_known(role)
    result = evaluator.evaluate(make_intervention(fresh_ws, [3080, 1829], [20.0, 20.0]))
    assert not orderings and not evaluator.has_known(FORGET)
    assert result["metrics"]["wmdp_known_n"] == result["metrics"]["mmlu_known_n"] == 0
    assert result["metrics"]["wmdp_known_accuracy"] is None
    assert any("known-question filter has not run" in w for w in result["warnings"])


def test_the_memo_key_follows_the_known_record(fresh_ws):
    evaluator = Evaluator(fresh_ws, EvalSettings(question_limit=2, known_filter=False))
    iv = make_intervention(fresh_ws, [3080], [20.0])
    questions = evaluator.protocol.sampled_questions[FORGET]
    key = known_key(questions, evaluator.known_key_record(FORGET))
    paths = [evaluator.result_path(iv)]
    for right in ([24, 6], [6, 24]):
        write_json(evaluator.known_path(FORGET), {"key": key, "with_question": right})
        paths.append(evaluator.result_path(iv))
    assert len(set(paths)) == 3


def test_features_scored_on_questions_that_chose_them_are_refused_or_labelled(offline_ws):
    settings = EvalSettings(
        question_limit=3, loss_rows=3, loss_context=64, known_filter=False, split="all"
    )
    chose = QuestionProtocol(offline_ws, replace(settings, split="selection")).split_ids()
    n = sum(map(len, chose.values()))
    evaluator = Evaluator(offline_ws, settings)
    features = biology_features(offline_ws, 10)  # the first test's run: read from its memo
    iv = make_intervention(offline_ws, features, [20.0] * len(features))
    with pytest.raises(UserError, match=rf"^{n} of the 6 questions .* --allow-overlap"):
        evaluator.evaluate(iv, chosen_on=chose)
    result = evaluator.evaluate(iv, chosen_on=chose, allow_overlap=True)
    assert result["optimistic"] == f"scored on {n} questions that chose its features"
    assert "optimistic" not in evaluator.cached(iv)  # the memo keeps the numbers only
    assert "optimistic" not in evaluator.evaluate(iv)
