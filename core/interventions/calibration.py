"""Dynamic gating (METHOD §10) around the intervention: calibrating alpha on retain text from
the activation cache (no model run; a forward pass to the SAE's hook when the cache is not
built), memoised on disk, and the gate's decision on any token sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Bool, Float

from core.base.records import NUMBER, read_memo, record_key, write_json
from core.cache.spec import cache_spec, default_rows
from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.interventions.edits import Intervention
from core.interventions.gate import Gate, sequence_rho
from core.runtime.forward import MAX_BATCH_TOKENS, batches, pad_right
from core.sae.adapter import adapter_for

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

BOOTSTRAP = 100


def cached_rho(cache: SparseActivationStore, features: Sequence[int]) -> Float[np.ndarray, " rows"]:
    """Per cached row: the fraction of its positions after BOS where any of `features` fires."""
    rows, ctx = cache.rows_final(), cache.spec.context_length
    indptr, token, _ = cache.csc()
    fires = np.zeros(rows * ctx, dtype=bool)
    for feature in features:
        fires[np.asarray(token[indptr[feature] : indptr[feature + 1]])] = True
    return fires.reshape(rows, ctx)[:, 1:].mean(axis=1)


def forward_rho(ws: Workspace, features: Sequence[int], rows: int) -> Float[np.ndarray, " rows"]:
    """rho of the retain corpus's first `rows` cache rows (the same token rows the cache
    would hold), by a forward pass up to the SAE's hook: for when the cache is not built."""
    spec = cache_spec(ws, "retain_corpus")
    train, _ = ws.documents_split("retain_corpus")
    tokens = torch.from_numpy(ws.token_rows(train, spec.context_length, rows, spec.seed))
    out = np.zeros(len(tokens))
    adapter = adapter_for(ws.sae)
    for group in batches([tokens.shape[1]] * len(tokens), MAX_BATCH_TOKENS):
        acts = adapter.selected_activations(ws.residual(tokens[group]), list(features))
        out[group] = sequence_rho((acts > 0).any(dim=-1)).cpu().numpy()
    return out


def bootstrapped_percentile(rho: Float[np.ndarray, " rows"], percentile: float, seed: int) -> float:
    """The `percentile`-th percentile of rho, averaged over BOOTSTRAP seeded resamples."""
    samples = np.random.default_rng(seed).choice(rho, size=(BOOTSTRAP, len(rho)), replace=True)
    return float(np.percentile(samples, percentile, axis=1).mean())


def _unavailable(exc: UserError) -> UserError:
    return UserError(
        "Calibrating the gate needs the retain corpus's activation cache, which is not built, "
        f"or the model and SAE to compute it, which cannot load: {exc}"
    )


def _rho(ws: Workspace, features: Sequence[int]) -> tuple[np.ndarray, dict]:
    """rho per retain row, from the cache when it holds rows, else by a forward pass over the
    rows a full cache would hold; with where it came from."""
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")
    source = {
        "corpus": cache.spec.corpus,
        "cache": cache.spec.key(),
        "context_length": cache.spec.context_length,
    }
    if cache.rows_final() > 0:
        return cached_rho(cache, features), source | {"from": "activation cache"}
    try:
        ws.sae  # noqa: B018 (loads the model and SAE, or says why it cannot)
    except UserError as exc:
        raise _unavailable(exc) from exc
    rows = default_rows(ws, "retain_corpus")
    return forward_rho(ws, features, rows), source | {"from": "forward pass to the SAE's hook"}


def calibrate(
    ws: Workspace,
    features: Sequence[int],
    percentile: float = 95.0,
    rule: str = "per feature",
    seed: int = 0,
) -> Gate:
    """A gate whose alpha is the `percentile`-th percentile of rho over the retain corpus's
    rows (the cache's, or a forward pass's when it is not built), averaged over BOOTSTRAP
    seeded resamples of the rows (as DSG's code does). Memoised on disk by everything that
    determines it."""
    if not features:
        raise UserError("A gate needs features: choose some first.")
    if not 0 < percentile < 100:
        raise UserError(
            f"The gate's percentile must be strictly between 0 and 100, not {percentile}."
        )
    try:
        cache = SparseActivationStore.for_workspace(ws, "retain_corpus")  # its key names the SAE
    except UserError as exc:
        raise _unavailable(exc) from exc
    bound = _calibrated_for(ws, features, cache.spec.key())
    wanted = {
        "cache": bound["cache"],
        "rows": cache.rows_final() or default_rows(ws, "retain_corpus"),
        "features": bound["features"],
        "percentile": percentile,
        "bootstrap": BOOTSTRAP,
        "seed": seed,
    }
    path = ws.folder / "gates" / f"alpha-{record_key(wanted)}.json"
    memo = read_memo(path, {"alpha": NUMBER, "percentile": NUMBER}, _alpha_problem)
    if memo is not None:
        return Gate(memo["alpha"], rule, memo | bound)
    rho, source = _rho(ws, features)
    alpha = bootstrapped_percentile(rho, percentile, seed)
    calibration = {
        **source,
        **bound,
        "rows": len(rho),
        "percentile": percentile,
        "bootstrap": BOOTSTRAP,
        "seed": seed,
        "alpha": alpha,
        "rho": "fraction of a row's positions after BOS where any selected feature fires",
    }
    write_json(path, calibration)
    return Gate(alpha, rule, calibration)


def _calibrated_for(ws: Workspace, features: Sequence[int], retain_cache: str) -> dict:
    """What a gate's alpha holds for only: its features, the SAE and the retain cache."""
    return {
        "features": sorted(int(f) for f in features),
        "sae": ws.sae_fingerprint(),
        "cache": retain_cache,
    }


def _alpha_problem(memo: dict) -> str | None:
    """A kept alpha that is no fraction of positions (a gate would refuse it)."""
    return None if 0 <= memo["alpha"] <= 1 else f"alpha {memo['alpha']} is not in [0, 1]"


def bound_gate(ws: Workspace, kept: dict, features: Sequence[int]) -> Gate:
    """A set's kept gate (as saved or imported) for `features` on `ws`; a UserError when its
    calibration names other features, another SAE or another retain cache: its alpha is a
    percentile of another distribution. (Records saved before these were kept name the
    retain cache only, which names the SAE.)"""
    calibration = kept["calibration"]
    wanted = _calibrated_for(ws, features, cache_spec(ws, "retain_corpus").key())
    said = {"features": "other features", "sae": "another SAE", "cache": "another retain cache"}
    differs = [said[k] for k, v in wanted.items() if k in calibration and calibration[k] != v]
    if differs:
        raise UserError(
            f"The set's kept gate (alpha {kept['alpha']:.4g}) was calibrated for "
            f"{' and '.join(differs)}: calibrate a new one (--gate P, or another percentile on "
            "the page) or run without the gate."
        )
    return Gate.from_record(kept)


def kept_gate(
    ws: Workspace, kept: dict | None, features: Sequence[int], percentile: float, rule: str
) -> Gate | None:
    """A set's kept gate (`FeatureSet.gate`) when it is the one asked for, the same rule at
    the same percentile: its alpha as saved or imported, not recalibrated here, and only for
    what it was calibrated for (`bound_gate`)."""
    if kept is None or kept["rule"] != rule or kept["calibration"]["percentile"] != percentile:
        return None
    return bound_gate(ws, kept, features)


def describe(gate: Gate) -> str:
    """Where a gate's alpha came from, in a sentence's words."""
    calibration = gate.calibration
    said = f"alpha = {gate.alpha:.4f}, the {calibration['percentile']:g}th percentile of rho"
    if "rows" in calibration:
        said += f" on {calibration['rows']} retain rows"
    if "bootstrap" in calibration:
        said += f" ({calibration['bootstrap']} bootstrap resamples)"
    return said


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
    adapter = adapter_for(ws.sae)
    for group in batches([len(s) for s in sequences], MAX_BATCH_TOKENS):
        tokens, mask = pad_right([sequences[i] for i in group], pad)
        acts = adapter.selected_activations(ws.residual(tokens), targets)
        rho = sequence_rho((acts > 0).any(dim=-1), mask)
        out[group] = (rho > iv.gate.alpha).cpu().numpy()
    return out
