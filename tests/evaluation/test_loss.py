"""Loss added's building block against the model's own loss, on the real offline model."""

import numpy as np
import pytest
import torch

from core.evaluation.loss import row_losses

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
