"""rho (METHOD §10), the fraction of a sequence's positions after BOS where any selected
feature fires, over what a gate is calibrated on: the retain corpus's cache rows (read from
the activation cache, or by a forward pass to the SAE's hook when it is not built), windows
of those rows, or token sequences such as question prompts. Computed as the hooked edit
computes it (`gate.sequence_rho`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Bool, Float, Int

from core.cache.spec import cache_spec
from core.cache.store import SparseActivationStore
from core.interventions.gate import sequence_rho
from core.runtime.forward import MAX_BATCH_TOKENS, batches, pad_right
from core.sae.adapter import adapter_for

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace


def cached_fires(
    cache: SparseActivationStore, features: Sequence[int]
) -> Bool[np.ndarray, "rows ctx"]:
    """Per cached row and position: whether any of `features` fires there."""
    rows, ctx = cache.rows_final(), cache.spec.context_length
    indptr, token, _ = cache.csc()
    fires = np.zeros(rows * ctx, dtype=bool)
    for feature in features:
        fires[np.asarray(token[indptr[feature] : indptr[feature + 1]])] = True
    return fires.reshape(rows, ctx)


def forward_fires(
    ws: Workspace, features: Sequence[int], rows: int
) -> Bool[np.ndarray, "rows ctx"]:
    """`cached_fires` of the retain corpus's first `rows` cache rows (the same token rows the
    cache would hold), by a forward pass up to the SAE's hook: for when it is not built."""
    spec = cache_spec(ws, "retain_corpus")
    train, _ = ws.documents_split("retain_corpus")
    tokens = torch.from_numpy(ws.token_rows(train, spec.context_length, rows, spec.seed))
    out = np.zeros(tokens.shape, dtype=bool)
    adapter = adapter_for(ws.sae)
    for group in batches([tokens.shape[1]] * len(tokens), MAX_BATCH_TOKENS):
        acts = adapter.selected_activations(ws.residual(tokens[group]), list(features))
        out[group] = (acts > 0).any(dim=-1).cpu().numpy()
    return out


def window_rho(
    fires: Bool[np.ndarray, "rows ctx"], lengths: Int[np.ndarray, " rows"] | None = None
) -> Float[np.ndarray, " rows"]:
    """Per row, rho over its first `lengths[i]` positions (whole rows when None), computed as
    the hook computes it (`sequence_rho`). A causal model's activations on a row's first L
    tokens are those of the L-token window run alone."""
    active = torch.from_numpy(fires)
    mask = None
    if lengths is not None:
        mask = torch.arange(fires.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]
    return sequence_rho(active, mask).numpy().astype(np.float64)


@torch.no_grad()
def prompt_rho(
    ws: Workspace, targets: Sequence[int], sequences: Sequence[Sequence[int]]
) -> Float[np.ndarray, " n"]:
    """rho of each token sequence on the clean residual at the SAE's hook, as the hook
    computes it (batched, right-padded; real tokens after BOS)."""
    out = np.zeros(len(sequences))
    pad = ws.tokenizer.pad_token_id or 0
    adapter = adapter_for(ws.sae)
    for group in batches([len(s) for s in sequences], MAX_BATCH_TOKENS):
        tokens, mask = pad_right([sequences[i] for i in group], pad)
        acts = adapter.selected_activations(ws.residual(tokens), list(targets))
        out[group] = sequence_rho((acts > 0).any(dim=-1), mask).cpu().numpy()
    return out
