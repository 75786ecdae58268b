"""`eval --set` of a set whose selection record names the questions that chose it: refused
on any of them in one line, run and labelled optimistic with --allow-overlap."""

import json

import pytest

from core.cli import main
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.settings import EvalSettings
from core.labels.store import LabelStore

pytestmark = pytest.mark.model


def test_eval_of_a_set_on_the_questions_that_chose_it_needs_allow_overlap(
    offline_ws, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    chose = QuestionProtocol(offline_ws, EvalSettings(question_limit=3, split="selection"))
    ids = chose.split_ids()
    n = sum(map(len, ids.values()))
    store = LabelStore.for_workspace(offline_ws)  # folder from the environment
    store.save_set("chosen", [3080, 1829], selection={"question_ids": ids})
    argv = ["eval", "--set", "chosen", "--c", "2", "--split", "all", "--questions", "3"]
    argv += ["--loss-rows", "2", "--skip-known"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {n} of the 6 questions") and "\n" not in err, err
    assert "--allow-overlap" in err
    out = tmp_path / "result.json"
    assert main([*argv, "--allow-overlap", "--out", str(out), "--save"]) == 0
    said = f"scored on {n} questions that chose its features"
    assert f"optimistic: {said}" in capsys.readouterr().out
    assert json.loads(out.read_text())["optimistic"] == said
    assert store.get_set("chosen").results[-1]["optimistic"] == said
    assert store.get_set("chosen").chosen_on == ids
