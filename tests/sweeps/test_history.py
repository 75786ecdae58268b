"""The run history on real runs of the small workspace: two evaluations of one saved set and
a sweep listed with their settings, numbers and looks; compared paired on their questions;
restored as the intervention page's URL; a damaged memo skipped with one line; the CLI twin."""

import json

import pytest

from core.cli import main
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.interventions.edits import Intervention
from core.labels.store import LabelStore
from core.sweeps.grid import SweepConfig
from core.sweeps.history import paired_rows, restore_params, run_history, side_by_side
from core.sweeps.run import sweep

pytestmark = pytest.mark.model

TINY = EvalSettings(
    question_limit=4, loss_rows=2, loss_context=32, known_filter=False, split="selection"
)
FEATURES = (13, 29)  # no other test's set holds these (a run is named by its set)


@pytest.fixture
def kept(small_app_ws):
    """Two evaluations of the set 'history pair' (c 1, shown once, and c 4, never shown) and
    a one-point sweep, all memoised in the workspace."""
    store = LabelStore.for_workspace(small_app_ws)
    if "history pair" not in store.set_names():
        store.save_set("history pair", list(FEATURES))
    evaluator = Evaluator(small_app_ws, TINY)
    runs = {}
    for c in (1.0, 4.0):
        iv = Intervention(FEATURES, (c, c))
        runs[c] = (evaluator.result_path(iv).stem, evaluator.evaluate(iv))
    evaluator.look(Intervention(FEATURES, (1.0, 1.0)), runs[1.0][1])
    swept = sweep(evaluator, SweepConfig((0.01,), (2,), (1.0,)))
    return small_app_ws, store, runs, swept


def test_every_run_is_listed_with_its_settings_numbers_and_look(kept):
    ws, store, runs, swept = kept
    found = run_history(ws, store)
    a, b = found.get(runs[1.0][0]), found.get(runs[4.0][0])
    assert (a.kind, a.set_name, a.features, a.method, a.c, a.gate) == (
        "evaluation", "history pair", FEATURES, "clamp", "1", "off"
    )  # fmt: skip
    assert a.split == "selection" and b.c == "4"
    metrics = runs[1.0][1]["metrics"]
    scored = len(runs[1.0][1]["questions"])  # both sets' questions
    assert a.n == {"WMDP-bio": metrics["wmdp_all_n"], "MMLU": scored - metrics["wmdp_all_n"]}
    assert f"{100 * metrics['wmdp_all_accuracy']:.1f}% [" in a.headline["WMDP-bio (all)"]
    assert f"{metrics['loss_added']:+.4f} ± " in a.headline["loss added"]
    assert a.looks == {"split": "selection", "selection_run": a.looks["selection_run"]}
    assert b.looks is None and b.row()["look"] == "not shown yet"
    sweeps = [run for run in found.runs if run.kind == "sweep"]
    as_kept = json.loads(json.dumps(swept["points"]))  # tuples come back as lists
    assert any(run.record["points"] == as_kept for run in sweeps)
    assert sweeps[0].row()["features"] == "selected per point"
    when = [run.created_at for run in found.runs]
    assert when == sorted(when, reverse=True)


def test_two_runs_on_the_same_questions_compare_paired(kept):
    ws, store, runs, _ = kept
    found = run_history(ws, store)
    a, b = found.get(runs[1.0][0]), found.get(runs[4.0][0])
    rows = paired_rows(a, b)
    wmdp = rows[0]
    ma, mb = runs[1.0][1]["metrics"], runs[4.0][1]["metrics"]
    assert wmdp["n"] == ma["wmdp_all_n"] == mb["wmdp_all_n"]  # every question shared
    change = 100 * (mb["wmdp_all_accuracy"] - ma["wmdp_all_accuracy"])
    assert wmdp["difference"].startswith(f"{change:+.1f} pts [")
    assert "McNemar exact p" in wmdp["test"] and "shared" not in wmdp["measure"]
    assert "not paired" in rows[-1]["measure"]
    fields = {row["field"]: (row["A"], row["B"]) for row in side_by_side(a, b)}
    assert fields["c"] == ("1", "4")


def test_a_run_restores_as_the_intervention_pages_url(kept):
    ws, store, runs, _ = kept
    params = restore_params(run_history(ws, store).get(runs[4.0][0]))
    assert params | {"questions": "4"} == params
    expected = {"method": "clamp", "c": "4", "source": "set", "set": "history pair"}
    assert expected.items() <= params.items()
    assert (params["gate"], params["skip_bos"], params["loss_rows"]) == ("False", "True", "2")


def test_a_damaged_memo_is_skipped_with_one_line_and_the_cli_lists_the_rest(kept, capsys):
    ws, _, runs, _ = kept
    damaged = ws.folder / "evals" / "run-0000000000000000.json"
    damaged.write_text('{"kind": "unlearning-lens/eval", "created_at": "cut sho')
    try:
        assert main(["runs"]) == 0
        out, err = capsys.readouterr()
        assert err.strip().splitlines() == [
            next(line for line in err.splitlines() if "run-0000000000000000.json" in line)
        ]
        assert "unreadable" in err and "Traceback" not in err + out
        assert runs[1.0][0] in out and "history pair: 13, 29" in out
        assert damaged.exists()  # a listing never moves a memo
        assert main(["runs", "--compare", runs[1.0][0], runs[4.0][0]]) == 0
        out = capsys.readouterr().out
        assert "Paired differences" in out and "McNemar exact p" in out
        assert main(["runs", "--url", runs[4.0][0]]) == 0
        assert capsys.readouterr().out.startswith("intervene?method=clamp")
        assert main(["runs", "--compare", "run-", runs[4.0][0]]) == 2  # ambiguous
    finally:
        damaged.unlink()
