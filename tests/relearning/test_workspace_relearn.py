"""A relearning run on the small real workspace at tiny budgets: step 0 of every arm is the
un-relearned model exactly, every number has its n, the tuned weights are kept beside the
result and never over the model, a rerun is the memo, the fine-tuning text shares no
document with the held-out rows, and bad settings are refused before any work. Hostile
cases (issue 25 §4): a run SIGKILLed mid-way keeps no result a rerun would trust; a damaged
result, or one whose tuned weights are gone, is moved aside with one line and run again."""

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
import torch

from core.base.paths import REPO_ROOT
from core.cli import main
from core.errors import UserError
from core.evaluation.loss import loss_text, row_losses
from core.interventions.edits import Intervention, applied
from core.labels.store import LabelStore
from core.relearning.run import (
    RelearnSettings,
    cached,
    relearn,
    relearn_documents,
    result_path,
    training_rows,
)
from core.relearning.summary import accuracy_table, loss_table
from core.workspace.workspace import Workspace
from tests.helpers import MEMO_DAMAGES, assert_moved_aside, damage_memo, folder_bytes

pytestmark = pytest.mark.model

TINY = RelearnSettings(
    steps=2, rows=4, context_length=16, batch_rows=2, checkpoints=1, eval_rows=2, mcq=2
)
TINY_FLAGS = ["--features", "3,7,11", "--c", "2", "--steps", "2", "--rows", "4", "--context"]
TINY_FLAGS += ["16", "--batch-rows", "2", "--checkpoints", "1", "--eval-rows", "2", "--mcq", "2"]


@pytest.fixture(scope="module")
def relearned(small_app_env):
    """The tiny run, once for the module: first by the CLI in a process SIGKILLed once its
    first arm's weights are kept (what that left), then here, whole; and whether the
    workspace's model was unchanged."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in small_app_env.items():
            patch.setenv(key, value)
        ws = Workspace.open("offline-gemma3-270m")
        killed = _killed_mid_run(ws, small_app_env)
        return (*_relearned(ws), killed)


def _killed_mid_run(ws, env: dict[str, str]) -> dict:
    """`relearn` at TINY in its own process, SIGKILLed as its second arm starts: its exit
    code, the files it left and what a rerun would read of them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "core", "relearn", *TINY_FLAGS],
        cwd=REPO_ROOT,
        env=os.environ | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    said = b""
    while b"control:" not in said:  # the relearn arm done and its weights kept
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, said.decode(errors="replace")
        said += chunk
    process.send_signal(signal.SIGKILL)
    code = process.wait(timeout=60)
    iv = Intervention(features=(3, 7, 11), values=(2.0, 2.0, 2.0))
    folder = result_path(ws, iv, TINY).parent
    return {"code": code, "left": sorted(folder_bytes(folder)), "read": cached(ws, iv, TINY)}


@pytest.fixture
def run(relearned, small_app_ws):
    return small_app_ws, *relearned


def _relearned(ws):
    iv = Intervention(features=(3, 7, 11), values=(2.0, 2.0, 2.0))
    before = {n: p.detach().clone() for n, p in ws.model.named_parameters()}
    result = relearn(ws, iv, TINY)
    unchanged = all(torch.equal(before[n], p) for n, p in ws.model.named_parameters())
    return iv, result, unchanged


def test_step_zero_is_the_model_before_relearning_exactly(run):
    ws, iv, result, *_ = run
    rows = loss_text(ws, TINY.eval_settings()).rows
    with applied(ws.model, ws.sae, ws.hook, iv):
        edited = {name: row_losses(ws.model, rows[name]).tolist() for name in ("forget", "retain")}
    for arm in ("relearn", "control"):
        assert {n: v[0] for n, v in result["arms"][arm]["losses"].items()} == edited
    reference = result["arms"]["reference"]["losses"]
    assert {n: v[0] for n, v in reference.items()} == result["clean"]["losses"]
    assert result["steps"] == [0, 2] and len(result["arms"]["relearn"]["train_loss"]) == 2


def test_every_number_has_its_n_and_the_weights_are_kept_apart(run):
    ws, iv, result, unchanged, _ = run
    table = loss_table(result)
    assert set(table["arm"]) == {"relearn", "control", "reference"}
    assert (table["forget_n"] == 2).all() and table["forget_added_se"].notna().all()
    assert "survives_vs_reference" in table and "survives" in table
    accuracy = accuracy_table(result)
    assert set(accuracy["questions"]) == {"WMDP-bio", "MMLU"} and (accuracy["n"] > 0).all()
    folder = result_path(ws, iv, TINY).parent
    for arm in result["arms"].values():
        assert (folder / arm["weights"]).stat().st_size > 0
    assert unchanged, "the workspace's model is never tuned"
    assert relearn(ws, iv, TINY) == result  # the memo


def test_the_fine_tuning_text_shares_no_document_or_row_with_the_held_out_rows(run):
    ws = run[0]
    held_out = loss_text(ws, TINY.eval_settings()).rows
    for corpus, role in (("forget", "forget_corpus"), ("retain", "retain_corpus")):
        _, heldout_docs = ws.documents_split(role)
        assert not set(relearn_documents(ws, role)) & set(heldout_docs)
        tuned = {row.tobytes() for row in training_rows(ws, TINY, corpus)}
        assert not tuned & {row.tobytes() for row in held_out[corpus]}


def test_a_kill_mid_run_leaves_no_result_and_the_rerun_runs_whole(run):
    ws, iv, result, _, killed = run
    assert killed["code"] == -signal.SIGKILL
    weights = result_path(ws, iv, TINY).stem + "-relearn.safetensors"
    assert weights in killed["left"], "killed after its first arm's weights were kept"
    assert result_path(ws, iv, TINY).name not in killed["left"] and killed["read"] is None
    assert cached(ws, iv, TINY) == result and set(result["arms"]) == {
        "relearn", "control", "reference"
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad, said",
    [
        ({"steps": -1}, "--steps must be 0 or more"),
        ({"batch_rows": 8, "rows": 4}, "as many rows as a step takes"),
        ({"rows": -4}, "as many rows as a step takes"),
        ({"lr": 2.0}, "learning rate"),
        ({"lr": float("nan")}, "learning rate must be above 0 and below 1, not nan"),
        ({"lr": float("inf")}, "learning rate must be above 0 and below 1, not inf"),
        ({"lr": -1e-4}, "learning rate must be above 0 and below 1, not -0.0001"),
        ({"kind": "qlora"}, "Unknown fine-tuning"),
        ({"eval_rows": 1}, "standard error needs two"),
        ({"context_length": 100_000}, "Training rows need 8 to "),
        ({"seed": -1}, "--seed must be 0 to 2147483647, not -1"),
        ({"seed": 10**23}, "--seed must be 0 to 2147483647"),
    ],
    ids=lambda value: (
        ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None
    ),
)
def test_bad_settings_are_refused_before_any_work(small_app_ws, bad, said):
    settings = RelearnSettings(**{**TINY.__dict__, **bad})
    with pytest.raises(UserError, match=said):
        relearn(small_app_ws, Intervention(features=(3,), values=(2.0,)), settings)


@pytest.fixture
def hollow_set(small_app_ws) -> str:
    """A saved set whose members are gone (the store refuses to save one; an older or
    hand-edited database may still hold one)."""
    store = LabelStore.for_workspace(small_app_ws)
    if "relearn hollow" not in store.set_names():
        store.save_set("relearn hollow", [3])
    with sqlite3.connect(store.path) as db:
        db.execute(
            "DELETE FROM feature_set_members WHERE set_id = "
            "(SELECT id FROM feature_sets WHERE name = 'relearn hollow')"
        )
    return "relearn hollow"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--features", "3", "--c", "2", "--steps", "-1"], "--steps must be 0 or more, not -1."),
        (["--features", "3", "--c", "2", "--lr", "nan"], "above 0 and below 1, not nan."),
        (["--features", "3", "--c", "2", "--lr", "inf"], "above 0 and below 1, not inf."),
        (["--features", "3", "--c", "2", "--lr", "-1"], "above 0 and below 1, not -1.0."),
        (["--features", "3", "--c", "2", "--rows", "-3"], "(rows -3, rows per step 4)"),
        (["--features", "3", "--c", "2", "--rows", "0"], "(rows 0, rows per step 4)"),
        (["--features", "3", "--c", "2", "--context", "4"], "need at least 8 tokens, not 4."),
        (["--features", "3", "--c", "2", "--seed", "-1"], "--seed must be 0 to 2147483647"),
        (["--features", "3", "--c", "nan"], "Feature 3: the value nan is not a finite number."),
        (["--features", "3", "--c", "inf"], "Feature 3: the value inf is not a finite number."),
        (["--features", "3", "--c", "-5"], "Feature 3: c = -5 is negative."),
        (["--features", "99999", "--c", "2", "--gate", "95"], "out of range 0..4095: [99999]"),
        (["--features", "3", "--c", "2", "--gate", "nan"], "strictly between 0 and 100, not nan"),
        (["--set", "no such set", "--c", "2"], "No feature set named 'no such set'."),
        (["--set", "HOLLOW", "--c", "2"], "No features chosen"),
        (["--features", "3", "--c", "2", "--out", "/no/such/folder/r.json"], "does not exist"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_the_cli_says_one_line_for_bad_input_and_writes_nothing(
    small_app_ws, hollow_set, capsys, argv, said
):
    argv = [hollow_set if arg == "HOLLOW" else arg for arg in argv]
    before = folder_bytes(small_app_ws.folder / "relearn")
    assert main(["relearn", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert folder_bytes(small_app_ws.folder / "relearn") == before


@pytest.mark.parametrize("argv", [["--steps", "nan"], ["--rows", "inf"], ["--seed", "1.5"]])
def test_a_whole_number_flag_that_is_not_one_is_argparses_refusal(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(["relearn", "--features", "3", *argv])
    assert exit_.value.code == 2 and "invalid int value" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kind", [*MEMO_DAMAGES, "no arms", "a loss list cut short", "tuned weights deleted"]
)
def test_a_damaged_result_is_moved_aside_with_one_line(run, caplog, kind):
    """Read as none (so `relearn` runs it again, as after the kill above), kept aside, and
    said in one line. Before, the last three were trusted: arms the tables cannot read (a
    traceback), and a result printed as kept beside weights that were gone."""
    ws, iv, result, *_ = run
    path = result_path(ws, iv, TINY)
    whole = path.read_bytes()
    weights = path.parent / result["arms"]["relearn"]["weights"]
    tuned = weights.read_bytes()
    try:
        if kind in MEMO_DAMAGES:
            damaged = damage_memo(path, kind, "arms")
        elif kind == "tuned weights deleted":
            damaged = whole
            weights.unlink()
        else:
            memo = json.loads(whole)
            if kind == "no arms":
                memo["arms"] = {}
            else:
                memo["arms"]["control"]["losses"]["forget"] = [[1.0]]
            damaged = json.dumps(memo).encode()
            path.write_bytes(damaged)
        assert cached(ws, iv, TINY) is None and not path.exists()
        assert_moved_aside(path, damaged, caplog)
        if kind == "tuned weights deleted":
            assert f"the relearn arm's tuned weights {weights.name} are missing" in caplog.text
    finally:
        for aside in path.parent.glob(f"{path.name}.damaged-*"):
            aside.unlink()
        path.write_bytes(whole)
        weights.write_bytes(tuned)
    assert cached(ws, iv, TINY) == result
