"""Dynamic gating (METHOD §10) around the intervention: calibrating alpha on retain text from
the activation cache (no model run), and the gate's decision on any token sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Bool, Float

from core.cache.store import ActivationCache
from core.errors import UserError
from core.interventions import Gate, Intervention, sequence_rho
from core.runtime.forward import MAX_BATCH_TOKENS, batches, pad_right
from core.sae.encoding import selected_activations

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

BOOTSTRAP = 100


def cached_rho(cache: ActivationCache, features: Sequence[int]) -> Float[np.ndarray, " rows"]:
    """Per cached row: the fraction of its positions after BOS where any of `features` fires."""
    rows, ctx = cache.rows_final(), cache.spec.context_length
    indptr, token, _ = cache.csc()
    fires = np.zeros(rows * ctx, dtype=bool)
    for feature in features:
        fires[np.asarray(token[indptr[feature] : indptr[feature + 1]])] = True
    return fires.reshape(rows, ctx)[:, 1:].mean(axis=1)


def calibrate(
    ws: Workspace,
    features: Sequence[int],
    percentile: float = 95.0,
    rule: str = "per feature",
    seed: int = 0,
) -> Gate:
    """A gate whose alpha is the `percentile`-th percentile of rho over the retain cache's
    rows, averaged over BOOTSTRAP seeded resamples of the rows (as DSG's code does)."""
    if not features:
        raise UserError("A gate needs features: choose some first.")
    if not 0 < percentile < 100:
        raise UserError(
            f"The gate's percentile must be strictly between 0 and 100, not {percentile}."
        )
    cache = ActivationCache.for_workspace(ws, "retain_corpus")
    if cache.rows_final() == 0:
        raise UserError(
            "Calibrating the gate reads the retain corpus's activation cache, which is not built: "
            f"run `python -m core cache build --workspace {ws.name}`."
        )
    rho = cached_rho(cache, features)
    samples = np.random.default_rng(seed).choice(rho, size=(BOOTSTRAP, len(rho)), replace=True)
    alpha = float(np.percentile(samples, percentile, axis=1).mean())
    calibration = {
        "corpus": cache.spec.corpus,
        "cache": cache.spec.key(),
        "rows": len(rho),
        "context_length": cache.spec.context_length,
        "percentile": percentile,
        "bootstrap": BOOTSTRAP,
        "seed": seed,
        "alpha": alpha,
        "rho": "fraction of a row's positions after BOS where any selected feature fires",
    }
    return Gate(alpha, rule, calibration)


@torch.no_grad()
def gated(
    ws: Workspace, iv: Intervention, sequences: Sequence[Sequence[int]]
) -> Bool[np.ndarray, " n"]:
    """Whether the gate edits each sequence: rho on the clean residual at the SAE's hook, as
    the hook itself computes it (nothing upstream of the hook is edited)."""
    assert iv.gate is not None
    targets = list(iv.targets(ws.sae.cfg.d_sae))
    out = np.zeros(len(sequences), dtype=bool)
    pad = ws.tokenizer.pad_token_id or 0
    for group in batches([len(s) for s in sequences], MAX_BATCH_TOKENS):
        tokens, mask = pad_right([sequences[i] for i in group], pad)
        acts = selected_activations(ws.sae, ws.residual(tokens), targets)
        rho = sequence_rho((acts > 0).any(dim=-1), mask)
        out[group] = (rho > iv.gate.alpha).cpu().numpy()
    return out
