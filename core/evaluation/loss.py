"""The loss-added side effect (METHOD §7): the packed text rows every run is measured on,
and their next-token cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.evaluation.settings import LOSS_SETS, EvalSettings
from core.runtime.forward import LOGIT_CHUNK, final_logits, final_resid
from core.runtime.gate_record import run_rows

if TYPE_CHECKING:
    from core.loading.models import Model
    from core.workspace.workspace import Workspace

LOSS_DOCUMENTS = 20_000  # of the general loss text: a hub corpus is streamed, never all read


@dataclass(frozen=True)
class LossText:
    """Per loss set its packed rows, the same every run, and the sets with no held-out
    documents (their training documents are used)."""

    rows: dict[str, np.ndarray]
    training: frozenset[str]


def loss_text(ws: Workspace, settings: EvalSettings) -> LossText:
    """The rows of each loss set: held-out documents of its text role, packed BOS first."""
    rows, training = {}, set()
    for name, (role, _) in LOSS_SETS.items():
        limit = LOSS_DOCUMENTS if role == "loss_text" else None
        _, heldout = ws.documents_split(role, limit)
        if not heldout:
            training.add(name)
        rows[name] = ws.token_rows(
            heldout or ws.documents(role, limit),
            settings.loss_context,
            None,
            ws.config.budgets.seed,
        )[: settings.loss_rows]
    return LossText(rows, frozenset(training))


def describe_loss_text(ws: Workspace, settings: EvalSettings, text: LossText) -> dict[str, str]:
    """Per loss set where its rows come from, as a result's provenance records it."""
    budgets = ws.config.budgets
    return {
        name: f"{ws.describe_source(role, portable=True)}: {label}, "
        f"{len(text.rows[name])} rows x {settings.loss_context} tokens, "
        f"BOS first, held-out fraction {budgets.heldout_fraction}, seed {budgets.seed}"
        + (f", of its first {LOSS_DOCUMENTS:,} documents" if role == "loss_text" else "")
        + (" (no held-out documents: training documents used)" if name in text.training else "")
        for name, (role, label) in LOSS_SETS.items()
    }


@torch.no_grad()
def row_losses(
    model: Model,
    tokens: Int[np.ndarray, "rows ctx"] | Int[Tensor, "rows ctx"],
    batch_rows: int = 8,
    report: Callable[[int, int], None] | None = None,
) -> Float[np.ndarray, " rows"]:
    """The mean next-token CE (nats) of each row; logits are built a chunk at a time.
    `report(rows done, rows)` after each batch (a cancelled run stops there)."""
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    out = np.zeros(len(tokens), dtype=np.float64)
    for start in range(0, len(tokens), batch_rows):
        batch = tokens[start : start + batch_rows]
        with run_rows(range(start, start + len(batch))):
            resid = final_resid(model, batch)[:, :-1]
        targets = batch[:, 1:].to(resid.device)
        for row in range(len(batch)):
            total = 0.0
            for chunk in range(0, targets.shape[1], LOGIT_CHUNK):
                logits = final_logits(model, resid[row, chunk : chunk + LOGIT_CHUNK])
                want = targets[row, chunk : chunk + LOGIT_CHUNK]
                total += torch.nn.functional.cross_entropy(logits, want, reduction="sum").item()
            out[start + row] = total / targets.shape[1]
        if report is not None:
            report(start + len(batch), len(tokens))
    return out
