"""The known-question filter on a local Ray cluster: chunks of questions on the actors, the
same record (byte for byte) as the serial filter with one torch thread. Two questions a set
(one per chunk): a question in all 24 orderings costs seconds on this CPU."""

import pytest
import torch

import core.evaluation.known
import core.scale.known
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.scale.known import known_on_ray
from core.workspace.workspace import Workspace
from tests.helpers import small_workspace_config

pytestmark = pytest.mark.model


def test_known_on_ray_writes_the_serial_record(tmp_path, offline_ws, pool, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "cache"))
    for module in (core.evaluation.known, core.scale.known):  # 2 questions: 2 chunks a set
        monkeypatch.setattr(module, "QUESTIONS_PER_CALL", 1)
    ws = Workspace.open(str(small_workspace_config(tmp_path)))
    settings = EvalSettings(question_limit=2)
    evaluator = Evaluator(ws, settings)
    done = []
    found = known_on_ray(evaluator, pool, lambda d, t: done.append((d, t)))
    assert done[-1] == (4, 4)  # 2 questions x 2 sets
    ray_records = {role: evaluator.known_path(role).read_bytes() for role in (FORGET, SIDE)}
    for role in (FORGET, SIDE):
        evaluator.known_path(role).unlink()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = {role: evaluator.known(role) for role in (FORGET, SIDE)}
    finally:
        torch.set_num_threads(threads)
    for role in (FORGET, SIDE):
        assert evaluator.known_path(role).read_bytes() == ray_records[role]
        assert found[role].right.tolist() == serial[role].right.tolist()
    assert known_on_ray(evaluator, pool, lambda d, t: done.append("again")) and done[-1] != "again"
