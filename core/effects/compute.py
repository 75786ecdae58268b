"""Per-feature effects of a clamp alone (METHOD §13) on full token rows.

    estimate = estimated_effects(ws, rows, c=20.0)            # rows x d_sae, every feature
    measured = measured_effects(ws, rows, [12, 40], c=20.0)   # rows x 2, those features

Both are the change in each row's mean next-token cross-entropy when feature j is set to −c
where it fires (error term kept; BOS left alone unless asked). The estimate is first order:
the gradient of the row's loss with respect to the residual at the hook, along j's decoder
direction, times the change the clamp makes there, summed over positions: one forward and
one backward pass per batch for all features. The measured value runs the blocks before the
hook once per batch and only the blocks after it per feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.errors import UserError
from core.interventions.edits import Intervention, edit
from core.runtime.forward import (
    LOGIT_CHUNK,
    model_lock,
    next_token_losses,
    resume_layer,
    resumed_final_resid,
)
from core.sae.adapter import adapter_for

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

Report = Callable[[int, int], None]  # (rows done, rows to do)


def _resume_at(hook: str) -> int:
    layer = resume_layer(hook)
    if layer is None:
        raise UserError(
            f"Effects need an SAE on the residual stream (hook_resid_post or hook_resid_pre), "
            f"not {hook}."
        )
    return layer


def _row_batches(rows: np.ndarray, batch_rows: int, device: str) -> list[tuple[int, Tensor]]:
    return [
        (start, torch.as_tensor(rows[start : start + batch_rows], dtype=torch.long, device=device))
        for start in range(0, len(rows), batch_rows)
    ]


def _residual_gradient(
    ws: Workspace, x: Float[Tensor, "batch pos d_in"], tokens: Int[Tensor, "batch pos"], layer: int
) -> Float[Tensor, "batch pos d_in"]:
    """d(each row's mean CE)/d(residual at the hook); the unembedding a chunk at a time, so
    only one chunk's logits are ever held."""
    model = ws.model
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), model_lock(model):
        final = resumed_final_resid(model, x, layer)
        leaf = final.detach().requires_grad_(True)
        targets, n = tokens[:, 1:], tokens.shape[1] - 1
        for start in range(0, n, LOGIT_CHUNK):
            chunk = slice(start, start + LOGIT_CHUNK)
            (
                next_token_losses(model, leaf[:, :-1][:, chunk], targets[:, chunk]).sum() / n
            ).backward()
        (grad,) = torch.autograd.grad(final, x, grad_outputs=leaf.grad)
    return grad


def estimated_effects(
    ws: Workspace,
    rows: Int[np.ndarray, "rows ctx"],
    c: float,
    skip_bos: bool = True,
    batch_rows: int = 4,
    report: Report | None = None,
) -> Float[np.ndarray, "rows d_sae"]:
    """Per row and feature the first-order change in the row's mean CE when the feature
    alone is clamped to −c where it fires."""
    layer, adapter = _resume_at(ws.hook), adapter_for(ws.sae)
    directions = adapter.decoder_direction().detach()
    out = np.zeros((len(rows), directions.shape[0]))
    for start, tokens in _row_batches(rows, batch_rows, ws.device):
        x = ws.residual(tokens)
        with torch.no_grad():
            acts = adapter.encode(x)
            change = torch.where(acts > 0, -c - acts, torch.zeros_like(acts))
            if skip_bos:
                change[:, 0] = 0
        grad = _residual_gradient(ws, x, tokens, layer)
        with torch.no_grad():
            along = grad.to(directions.dtype) @ directions.T  # [batch, pos, d_sae]
            out[start : start + len(tokens)] = (change * along).sum(1).double().cpu().numpy()
        if report is not None:
            report(start + len(tokens), len(rows))
    return out


@torch.no_grad()
def measured_effects(
    ws: Workspace,
    rows: Int[np.ndarray, "rows ctx"],
    features: Sequence[int],
    c: float,
    skip_bos: bool = True,
    batch_rows: int = 4,
    report: Report | None = None,
) -> Float[np.ndarray, "rows features"]:
    """Per row and feature the change in the row's mean CE when the feature alone is clamped
    to −c where it fires. The blocks before the hook run once per batch; per feature only
    the rows it fires in run the blocks after it, and only the positions from the first it
    changes are unembedded (attention is causal: the ones before are the clean ones)."""
    layer, adapter, model = _resume_at(ws.hook), adapter_for(ws.sae), ws.model
    out = np.zeros((len(rows), len(features)))
    for start, tokens in _row_batches(rows, batch_rows, ws.device):
        x, targets = ws.residual(tokens), tokens[:, 1:]
        with model_lock(model):
            clean = next_token_losses(model, resumed_final_resid(model, x, layer)[:, :-1], targets)
            for column, feature in enumerate(features):
                iv = Intervention((int(feature),), (float(c),), skip_bos=skip_bos)
                edited = edit(adapter, x, iv, [int(feature)])
                changed = (edited != x).any(-1)[:, :-1]  # at positions that predict a token
                hit = changed.any(1).nonzero().flatten()
                if len(hit) == 0:
                    continue  # it fires nowhere here: nothing changes
                first = int(changed[hit].float().argmax(1).min())
                final = resumed_final_resid(model, edited[hit], layer)[:, first:-1]
                added = next_token_losses(model, final, targets[hit, first:]) - clean[hit, first:]
                out[start + hit.cpu().numpy(), column] = (
                    (added.sum(1) / targets.shape[1]).cpu().numpy()
                )
        if report is not None:
            report(start + len(tokens), len(rows))
    return out
