"""The run history on real runs of the small workspace: two evaluations of one saved set and
a sweep listed with their settings, numbers and looks; compared paired on their questions;
restored as the intervention page's URL; a damaged memo skipped with one line; the CLI twin;
an unknown run key, or a memo with a malformed field, one line (issue 25 §4)."""

import json

import pytest

from core.cli import main
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.interventions.edits import Intervention
from core.labels.store import LabelStore
from core.sweeps.grid import SweepConfig
from core.sweeps.history import paired_rows, restore_params, run_history, side_by_side
from core.sweeps.run import sweep, sweep_folder

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


def _one_line_refusal(argv: list[str], capsys) -> str:
    """The refusal's line; any other line on stderr is a skipped memo's notice."""
    assert main(argv) == 2
    *notices, said = capsys.readouterr().err.splitlines()
    assert said.startswith("error: ") and all(n.startswith("skipped ") for n in notices), said
    return said


def test_an_unknown_or_empty_run_key_is_one_line(kept, capsys):
    ws, store, runs, _ = kept
    known = runs[1.0][0]
    sweep_key = next(run.key for run in run_history(ws, store).runs if run.kind == "sweep")
    for argv in (["--compare", "no-such-run", known], ["--compare", known, "no-such-run"]):
        assert "no run of this workspace is 'no-such-run'" in _one_line_refusal(
            ["runs", *argv], capsys
        )
    assert "no run of this workspace is 'x'" in _one_line_refusal(["runs", "--url", "x"], capsys)
    assert "Give a run's key" in _one_line_refusal(["runs", "--url", " "], capsys)
    assert "Give a run's key" in _one_line_refusal(["runs", "--compare", "", known], capsys)
    assert "is a sweep" in _one_line_refusal(["runs", "--url", sweep_key], capsys)


def _skewed(memo: dict, kind: str) -> dict:
    """A memo of the right schema with one field the history reads malformed."""
    memo = json.loads(json.dumps(memo))
    if kind == "gate calibration a list":
        memo["intervention"]["gate"] = {"alpha": 1.0, "rule": "per feature", "calibration": [95]}
    elif kind == "settings a list":
        memo["provenance"]["settings"] = ["split", "selection"]
    elif kind == "a question without its answer":
        del memo["questions"][0]["answer"]
    elif kind == "a question scored on no letter":
        memo["questions"][0]["after"] = []
    elif kind == "a sweep dated by a number":
        memo["created_at"] = 5
    return memo


SKEWS = [
    "gate calibration a list",
    "settings a list",
    "a question without its answer",
    "a question scored on no letter",
    "a sweep dated by a number",
]


def test_a_memo_with_a_malformed_field_is_skipped_with_one_line_never_a_traceback(kept, capsys):
    """Each memo keeps the schema (so only the history's own reading can refuse it): the
    listing names each in one line and lists the rest; compare and restore refuse them."""
    ws, _, runs, _ = kept
    evaluation = json.loads((ws.folder / "evals" / f"{runs[1.0][0]}.json").read_text())
    swept = next(sweep_folder(ws).glob("sweep-*.json"))
    written = []
    try:
        for number, kind in enumerate(SKEWS):
            sweep = kind.startswith("a sweep")
            memo = json.loads(swept.read_text()) if sweep else evaluation
            folder, prefix = (swept.parent, "sweep") if sweep else (ws.folder / "evals", "run")
            path = folder / f"{prefix}-ffff00000000000{number}.json"
            path.write_text(json.dumps(_skewed(memo, kind)))
            written.append(path)
        assert main(["runs"]) == 0
        out, err = capsys.readouterr()
        for path in written:
            assert sum(path.name in line for line in err.splitlines()) == 1, err
        assert "Traceback" not in out + err and runs[1.0][0] in out
        for path in written:
            _one_line_refusal(["runs", "--compare", path.stem, runs[1.0][0]], capsys)
            _one_line_refusal(["runs", "--url", path.stem], capsys)
    finally:
        for path in written:
            path.unlink()
