"""Loss added's rows and their CE against the model's own loss, on the real offline model."""

import numpy as np
import pytest
import torch

from core.evaluation.loss import describe_loss_text, loss_text, row_losses
from core.evaluation.settings import LOSS_SETS, EvalSettings

pytestmark = pytest.mark.model


@torch.no_grad()
def test_row_losses_equal_the_models_own_cross_entropy(offline_ws):
    docs = [d for d in offline_ws.documents("retain_corpus") if len(d) > 400][:3]
    tokens = offline_ws.token_rows(docs, context_length=48, n_rows=3, seed=0)
    found = row_losses(offline_ws.model, tokens, batch_rows=2)
    expected = offline_ws.model(
        torch.from_numpy(tokens).long(), return_type="loss", loss_per_token=True
    )
    np.testing.assert_allclose(found, expected.mean(dim=1).numpy(), rtol=1e-4)


def test_every_loss_set_has_its_rows_and_says_where_they_come_from(offline_ws):
    settings = EvalSettings(loss_rows=2, loss_context=32)
    text = loss_text(offline_ws, settings)
    assert set(text.rows) == set(LOSS_SETS) and not text.training  # held-out rows exist
    assert all(rows.shape == (2, 32) for rows in text.rows.values())
    assert np.array_equal(text.rows["retain"], loss_text(offline_ws, settings).rows["retain"])
    described = describe_loss_text(offline_ws, settings, text)
    assert "2 rows x 32 tokens" in described["forget"]


def test_a_cancel_during_loss_stops_after_the_batch_it_is_asked_in(offline_ws):
    from core.runtime.jobs import Cancelled, Job

    docs = [d for d in offline_ws.documents("retain_corpus") if len(d) > 400][:5]
    tokens = offline_ws.token_rows(docs, context_length=16, n_rows=5, seed=0)
    job, seen = Job("loss"), []

    def report(done: int, total: int) -> None:
        seen.append((done, total))
        job.cancel()  # the user presses Cancel during the first batch
        job.report("loss", done / total)

    with pytest.raises(Cancelled):
        row_losses(offline_ws.model, tokens, batch_rows=2, report=report)
    assert seen == [(2, 5)]  # one batch of two rows, not the whole text
