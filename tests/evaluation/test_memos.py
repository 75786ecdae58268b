"""A damaged evaluation memo (a run's result, the clean baseline, a known-question record)
is moved aside and computed again, as a fresh computation gives it, with one warning line."""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import FORGET, EvalSettings
from core.interventions.edits import make_intervention
from core.workspace.workspace import Workspace
from tests.helpers import MEMO_DAMAGES, assert_moved_aside, damage_memo, small_workspace_config

pytestmark = pytest.mark.model

SETTINGS = EvalSettings(
    question_limit=1, loss_rows=1, loss_context=32, known_filter=False, split="all"
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> SimpleNamespace:
    """A workspace of its own, with a run and its clean baseline computed once."""
    config = small_workspace_config(
        tmp_path_factory.mktemp("memos"), workspace__name="damaged-memos"
    )
    ws = Workspace.open(str(config))
    evaluator = Evaluator(ws, SETTINGS)
    iv = make_intervention(ws, [3080, 1829], [20.0, 20.0])
    result = evaluator.evaluate(iv)
    return SimpleNamespace(ws=ws, iv=iv, result=result, baseline=evaluator.baseline())


@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_run_memo_is_computed_again(fresh, caplog, kind):
    evaluator = Evaluator(fresh.ws, SETTINGS)
    path = evaluator.result_path(fresh.iv)
    damaged = damage_memo(path, kind, "metrics")
    again = evaluator.evaluate(fresh.iv)
    assert again | {"created_at": None} == fresh.result | {"created_at": None}
    assert_moved_aside(path, damaged, caplog)
    assert evaluator.cached(fresh.iv)["created_at"] == again["created_at"]  # kept anew


@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_baseline_is_computed_again(fresh, caplog, kind):
    evaluator = Evaluator(fresh.ws, SETTINGS)
    path = evaluator.baseline_path()
    damaged = damage_memo(path, kind, "losses")
    assert evaluator.baseline() == fresh.baseline
    assert_moved_aside(path, damaged, caplog)


@pytest.fixture(scope="module")
def known_evaluator(fresh) -> Evaluator:
    """Another sample than the runs', so its known record keys none of their memos."""
    return Evaluator(fresh.ws, replace(SETTINGS, question_limit=2))


@pytest.fixture(scope="module")
def fresh_known(known_evaluator) -> list[int]:
    return known_evaluator.known(FORGET).right.tolist()


@pytest.mark.parametrize("kind", MEMO_DAMAGES)
def test_a_damaged_known_record_is_computed_again(known_evaluator, fresh_known, caplog, kind):
    path = known_evaluator.known_path(FORGET)
    damaged = damage_memo(path, kind, "key")
    assert known_evaluator.known(FORGET).right.tolist() == fresh_known
    assert_moved_aside(path, damaged, caplog)
    assert known_evaluator.has_known(FORGET)
