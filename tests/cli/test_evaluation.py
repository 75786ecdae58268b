"""`eval --set` of a set whose selection record names the questions that chose it: refused
on any of them in one line, run and labelled optimistic with --allow-overlap."""

import json
import re

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


def test_eval_tunes_on_the_selection_split_and_a_report_says_after_how_many_runs(
    offline_ws, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    LabelStore.for_workspace(offline_ws).save_set("tuned", [3080, 1829])
    argv = ["eval", "--set", "tuned", "--questions", "3", "--loss-rows", "1", "--skip-known"]
    for c in ("1", "2", "1"):  # the third is the first again: seen, not a new run
        assert main([*argv, "--c", c]) == 0
    said = capsys.readouterr().out
    assert "Selection run 1 of these features" in said and "Selection run 2" in said
    assert "Selection run 3" not in said
    out = tmp_path / "report.json"
    assert main([*argv, "--c", "2", "--report", "--save", "--out", str(out)]) == 0
    looked = "Chosen after 2 selection runs of these features; look 1 at the report split"
    assert looked in capsys.readouterr().out
    stamp = {"split": "report", "selection_runs_before": 2, "report_look": 1}
    assert json.loads(out.read_text())["looks"] == stamp
    assert LabelStore.for_workspace(offline_ws).get_set("tuned").results[-1]["looks"] == stamp
    assert main([*argv, "--c", "1", "--report"]) == 0  # another setting: a second look
    assert "look 2 at the report split" in capsys.readouterr().out
    assert main([*argv, "--report", "--split", "all"]) == 2
    assert "--report is --split report" in capsys.readouterr().err


def test_eval_of_a_set_whose_kept_gate_was_calibrated_for_another_sae_is_refused(
    offline_ws, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    calibration = {"percentile": 95.0, "features": [1829, 3080], "sae": "another-sae"}
    gate = {"alpha": 0.1, "rule": "per feature", "calibration": calibration}
    LabelStore.for_workspace(offline_ws).save_set(
        "imported", [3080, 1829], selection={"gate": gate}
    )
    assert main(["eval", "--set", "imported", "--questions", "3", "--skip-known"]) == 2
    err = capsys.readouterr().err
    assert "calibrated for another SAE" in err and "--gate P" in err
    assert not (tmp_path / offline_ws.name / "evals").exists()  # refused before any run


def test_screen_progress_lines_give_each_number_its_n_and_interval(
    offline_ws, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    out = tmp_path / "screen.json"
    argv = ["screen", "--features", "3080", "--c", "2", "--questions", "4", "--loss-rows", "1"]
    assert main([*argv, "--skip-known", "--tolerance", "1", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    alone, together = lines
    drop = r"MMLU drop [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] \(n = \d+\), kept"
    assert re.search(rf"^\[1/1\] feature 3080 alone: {drop}", alone), alone
    accuracy = r"\d+\.\d% \[\d+\.\d, \d+\.\d\] \(n = \d+\)"
    assert re.search(rf"WMDP \(all\) {accuracy}, MMLU \(all\) {accuracy}", together), together
    assert together.endswith("(no SE: 1 row)")
    single = json.loads(out.read_text())["singles"][0]
    assert single["kept"] and len(single["side_drop_ci"]) == 2


def test_eval_says_and_records_what_its_gate_was_calibrated_on(
    small_app_env, monkeypatch, tmp_path, capsys
):
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "gated.json"
    argv = ["eval", "--features", "3080,1829", "--c", "2", "--questions", "4", "--skip-known"]
    argv += ["--loss-rows", "1", "--gate", "90", "--gate-calibration", "prompt-windows"]
    assert main([*argv, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "retain windows of the MMLU prompts' lengths" in said
    assert "gate on: MMLU prompts (share of sequences edited)" in said
    calibration = json.loads(out.read_text())["intervention"]["gate"]["calibration"]
    assert calibration["on"] == "prompt-windows" and calibration["percentile"] == 90
