"""Dynamic gating (METHOD §10) around the intervention: calibrating alpha, memoised on disk,
and keeping a gate bound to what it was calibrated for. Alpha is a percentile of rho
(core.interventions.rho) over one of CALIBRATIONS: the retain corpus's activation-cache rows
(no model run; a forward pass to the SAE's hook when the cache is not built), those rows cut
to the lengths of the prompts the gate decides on, or question prompts no evaluation scores
(a `CalibrationText`, made by core.evaluation.gate_calibration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float

from core.base.records import NUMBER, read_memo, record_key, write_json
from core.cache.spec import default_rows
from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.interventions.gate import Gate
from core.interventions.rho import cached_fires, forward_fires, prompt_rho, window_rho

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

BOOTSTRAP = 100
RETAIN_ROWS = "retain-rows"
CALIBRATIONS = {
    RETAIN_ROWS: "the retain corpus's activation-cache rows, whole",
    "prompt-windows": "windows of the retain rows (each row's first L tokens, BOS first), L "
    "drawn from the sampled MMLU prompts' token lengths",
    "mmlu-dev": "MMLU prompts of questions outside the evaluated sample (never scored)",
}
WINDOW_STREAM = 4  # the window lengths' random stream


@dataclass(frozen=True)
class CalibrationText:
    """What a gate is calibrated on other than the retain rows.

    Args:
        on: a key of CALIBRATIONS other than RETAIN_ROWS.
        lengths: "prompt-windows": the prompts' token lengths the windows' lengths follow.
        sequences: "mmlu-dev": the prompts' tokens, BOS first.
        questions: "mmlu-dev": the prompts' question ids (a run scoring any is refused).
        said: what the text is, in words, kept with the calibration.
    """

    on: str
    lengths: tuple[int, ...] = ()
    sequences: tuple[tuple[int, ...], ...] = ()
    questions: tuple[str, ...] = ()
    said: str = ""


def bootstrapped_percentile(rho: Float[np.ndarray, " rows"], percentile: float, seed: int) -> float:
    """The `percentile`-th percentile of rho, averaged over BOOTSTRAP seeded resamples."""
    samples = np.random.default_rng(seed).choice(rho, size=(BOOTSTRAP, len(rho)), replace=True)
    return float(np.percentile(samples, percentile, axis=1).mean())


def _unavailable(exc: UserError) -> UserError:
    return UserError(
        "Calibrating the gate needs the retain corpus's activation cache, which is not built, "
        f"or the model and SAE to compute it, which cannot load: {exc}"
    )


def _need_model(ws: Workspace) -> None:
    """Load the model and SAE, or say why a calibration cannot run without them."""
    try:
        ws.sae  # noqa: B018
    except UserError as exc:
        raise _unavailable(exc) from exc


def _rho(
    ws: Workspace, features: Sequence[int], text: CalibrationText | None, seed: int
) -> tuple[np.ndarray, dict]:
    """rho per calibration sequence, with where it came from: per retain row (from the cache
    when it holds rows, else by a forward pass over the rows a full cache would hold), per
    window of those rows, or per prompt of `text`."""
    if text is not None and text.on == "mmlu-dev":
        _need_model(ws)
        rho = prompt_rho(ws, features, text.sequences)
        return rho, {"from": "forward pass to the SAE's hook", "prompts": len(rho)}
    cache = SparseActivationStore.for_workspace(ws, "retain_corpus")
    source = {
        "corpus": cache.spec.corpus,
        "cache": cache.spec.key(),
        "context_length": cache.spec.context_length,
    }
    if cache.rows_final() > 0:
        fires, source["from"] = cached_fires(cache, features), "activation cache"
    else:
        _need_model(ws)
        rows = default_rows(ws, "retain_corpus")
        fires, source["from"] = forward_fires(ws, features, rows), "forward pass to the SAE's hook"
    if text is None:  # as before windows existed: the cache's float64 mean, the hook's float32
        from_cache = source["from"] == "activation cache"
        return (fires[:, 1:].mean(axis=1) if from_cache else window_rho(fires)), source
    drawn = np.random.default_rng([seed, WINDOW_STREAM]).choice(sorted(text.lengths), len(fires))
    lengths = np.minimum(drawn, fires.shape[1])
    windows = {"windows": len(fires), "median_length": float(np.median(lengths))}
    return window_rho(fires, lengths), source | windows


def calibrate(
    ws: Workspace,
    features: Sequence[int],
    percentile: float = 95.0,
    rule: str = "per feature",
    seed: int = 0,
    text: CalibrationText | None = None,
) -> Gate:
    """A gate whose alpha is the `percentile`-th percentile of rho, averaged over BOOTSTRAP
    seeded resamples (as DSG's code does), over the retain corpus's rows (the cache's, or a
    forward pass's when it is not built), or over `text` (CALIBRATIONS). Memoised on disk by
    everything that determines it."""
    if not features:
        raise UserError("A gate needs features: choose some first.")
    if not 0 < percentile < 100:
        raise UserError(
            f"The gate's percentile must be strictly between 0 and 100, not {percentile}."
        )
    if text is not None and (text.on not in CALIBRATIONS or text.on == RETAIN_ROWS):
        raise UserError(
            f"Unknown gate calibration '{text.on}'; choose one of {', '.join(CALIBRATIONS)}."
        )
    try:
        cache = SparseActivationStore.for_workspace(ws, "retain_corpus")  # its key names the SAE
        width = ws.sae_width()
    except UserError as exc:
        raise _unavailable(exc) from exc
    if bad := [f for f in features if not 0 <= int(f) < width]:
        raise UserError(f"Feature ids out of range 0..{width - 1}: {bad[:10]}.")
    bound = _calibrated_for(ws, features, cache.spec.key())
    wanted = {
        "cache": bound["cache"],
        "rows": cache.rows_final() or default_rows(ws, "retain_corpus"),
        "features": bound["features"],
        "percentile": percentile,
        "bootstrap": BOOTSTRAP,
        "seed": seed,
    }
    if text is not None:  # the retain rows' keys stay as they were
        wanted |= {"on": text.on, "text": record_key([text.lengths, text.sequences])}
    path = ws.folder / "gates" / f"alpha-{record_key(wanted)}.json"
    memo = read_memo(path, {"alpha": NUMBER, "percentile": NUMBER}, _alpha_problem)
    if memo is not None:
        return Gate(memo["alpha"], rule, memo | bound)
    rho, source = _rho(ws, features, text, seed)
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
    if text is not None:
        calibration |= {"on": text.on, "text": text.said}
        if text.questions:
            calibration["questions"] = list(text.questions)
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
    percentile of another distribution, or names neither its SAE nor its retain cache (an
    older or hand-made record: nothing says what alpha is a percentile of). Records saved
    before features were kept name the retain cache only, which names the SAE."""
    calibration = kept["calibration"]
    if "sae" not in calibration and "cache" not in calibration:
        raise UserError(
            f"The set's kept gate (alpha {kept['alpha']:.4g}) does not say which SAE and retain "
            "cache it was calibrated on: calibrate a new one (--gate P, or another percentile "
            "on the page) or run without the gate."
        )
    retain = SparseActivationStore.for_workspace(ws, "retain_corpus")  # as `calibrate` reads it
    wanted = _calibrated_for(ws, features, retain.spec.key())
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
    ws: Workspace,
    kept: dict | None,
    features: Sequence[int],
    percentile: float,
    rule: str,
    on: str = RETAIN_ROWS,
) -> Gate | None:
    """A set's kept gate (`FeatureSet.gate`) when it is the one asked for, the same rule at
    the same percentile calibrated on the same kind of text (`on`): its alpha as saved or
    imported, not recalibrated here, and only for what it was calibrated for (`bound_gate`)."""
    if kept is None or kept["rule"] != rule or kept["calibration"]["percentile"] != percentile:
        return None
    if kept["calibration"].get("on", RETAIN_ROWS) != on:
        return None
    return bound_gate(ws, kept, features)


def describe(gate: Gate) -> str:
    """Where a gate's alpha came from, in a sentence's words."""
    calibration = gate.calibration
    said = f"alpha = {gate.alpha:.4f}, the {calibration['percentile']:g}th percentile of rho"
    on = calibration.get("on", RETAIN_ROWS)
    if on == "prompt-windows":
        said += (
            f" on {calibration['rows']} retain windows of the MMLU prompts' lengths (median "
            f"{calibration['median_length']:g} tokens)"
        )
    elif on == "mmlu-dev":
        said += f" on {calibration['rows']} MMLU prompts no evaluation scores"
    elif "rows" in calibration:
        said += f" on {calibration['rows']} retain rows"
    if "bootstrap" in calibration:
        said += f" ({calibration['bootstrap']} bootstrap resamples)"
    return said
