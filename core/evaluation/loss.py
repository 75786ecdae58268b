"""Next-token cross-entropy on packed text rows, for the loss-added side effect (METHOD §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.runtime.forward import LOGIT_CHUNK, final_logits, final_resid

if TYPE_CHECKING:
    from core.loading.models import Model


@torch.no_grad()
def row_losses(
    model: Model, tokens: Int[np.ndarray, "rows ctx"] | Int[Tensor, "rows ctx"], batch_rows: int = 8
) -> Float[np.ndarray, " rows"]:
    """The mean next-token CE (nats) of each row; logits are built a chunk at a time."""
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    out = np.zeros(len(tokens), dtype=np.float64)
    for start in range(0, len(tokens), batch_rows):
        batch = tokens[start : start + batch_rows]
        resid = final_resid(model, batch)[:, :-1]
        targets = batch[:, 1:].to(resid.device)
        for row in range(len(batch)):
            total = 0.0
            for chunk in range(0, targets.shape[1], LOGIT_CHUNK):
                logits = final_logits(model, resid[row, chunk : chunk + LOGIT_CHUNK])
                want = targets[row, chunk : chunk + LOGIT_CHUNK]
                total += torch.nn.functional.cross_entropy(logits, want, reduction="sum").item()
            out[start + row] = total / targets.shape[1]
    return out
