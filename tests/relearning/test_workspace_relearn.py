"""A relearning run on the small real workspace at tiny budgets: step 0 of every arm is the
un-relearned model exactly, every number has its n, the tuned weights are kept beside the
result and never over the model, a rerun is the memo, the fine-tuning text shares no
document with the held-out rows, and bad settings are refused before any work."""

import pytest
import torch

from core.cli import main
from core.errors import UserError
from core.evaluation.loss import loss_text, row_losses
from core.interventions.edits import Intervention, applied
from core.relearning.run import (
    RelearnSettings,
    relearn,
    relearn_documents,
    result_path,
    training_rows,
)
from core.relearning.summary import accuracy_table, loss_table
from core.workspace.workspace import Workspace

pytestmark = pytest.mark.model

TINY = RelearnSettings(
    steps=2, rows=4, context_length=16, batch_rows=2, checkpoints=1, eval_rows=2, mcq=2
)


@pytest.fixture(scope="module")
def relearned(small_app_env):
    """The tiny run, once for the module, and whether the workspace's model was unchanged."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in small_app_env.items():
            patch.setenv(key, value)
        return _relearned(Workspace.open("offline-gemma3-270m"))


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
    ws, iv, result, _ = run
    rows = loss_text(ws, TINY.eval_settings()).rows
    with applied(ws.model, ws.sae, ws.hook, iv):
        edited = {name: row_losses(ws.model, rows[name]).tolist() for name in ("forget", "retain")}
    for arm in ("relearn", "control"):
        assert {n: v[0] for n, v in result["arms"][arm]["losses"].items()} == edited
    reference = result["arms"]["reference"]["losses"]
    assert {n: v[0] for n, v in reference.items()} == result["clean"]["losses"]
    assert result["steps"] == [0, 2] and len(result["arms"]["relearn"]["train_loss"]) == 2


def test_every_number_has_its_n_and_the_weights_are_kept_apart(run):
    ws, iv, result, unchanged = run
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


@pytest.mark.parametrize(
    "bad, said",
    [
        ({"steps": -1}, "--steps must be 0 or more"),
        ({"batch_rows": 8, "rows": 4}, "as many rows as a step takes"),
        ({"lr": 2.0}, "learning rate"),
        ({"kind": "qlora"}, "Unknown fine-tuning"),
        ({"eval_rows": 1}, "standard error needs two"),
    ],
)
def test_bad_settings_are_refused_before_any_work(small_app_ws, bad, said):
    settings = RelearnSettings(**{**TINY.__dict__, **bad})
    with pytest.raises(UserError, match=said):
        relearn(small_app_ws, Intervention(features=(3,), values=(2.0,)), settings)


def test_the_cli_says_one_line_for_bad_settings(capsys):
    assert main(["relearn", "--features", "3", "--c", "2", "--steps", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be 0 or more, not -1."
