"""A workspace's feature effects (METHOD §13), memoised on disk:

    effects = feature_effects(ws, EffectSettings(rows=16, c=20.0, top_k=100))
    effects.table()        # per feature: estimated forget/retain effect ± SE, ratio, measured
    effects.agreement()    # how well the estimate ranks the measured effect (Spearman, n)

The rows are drawn from the training documents of the forget and retain corpora, the text
selection already sees: never the held-out rows evaluations report loss on. The measured
effect is of the top `top_k` features by estimated forget effect.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from core.base.records import read_memo, record_key, write_atomic
from core.base.uncertainty import ratio_interval
from core.effects.compute import Report, estimated_effects, measured_effects
from core.errors import UserError
from core.interventions.edits import MAX_CLAMP, bos_rule
from core.loading import data
from core.loading.hub_cache import library_versions

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

EFFECTS_VERSION = 1
SETS = {"forget": "forget_corpus", "retain": "retain_corpus"}
ARRAYS = (
    "estimated_forget",
    "estimated_retain",
    "candidates",
    "measured_forget",
    "measured_retain",
)


@dataclass(frozen=True)
class EffectSettings:
    """Rows per corpus (of `context_length` tokens, BOS first), the clamp c, how many top
    candidates to measure, and whether BOS is left alone."""

    rows: int = 16
    context_length: int = 128
    c: float = 20.0
    top_k: int = 100
    skip_bos: bool = True

    def check(self, d_sae: int, n_ctx: int | None = None) -> None:
        """Refuse what cannot run; `n_ctx` (the model's) once the model is loaded."""
        if self.rows < 1:
            raise UserError(f"Effects need at least one row per corpus, not {self.rows}.")
        if not 8 <= self.context_length <= (n_ctx or self.context_length):
            limit = f"8 to {n_ctx}" if n_ctx else "at least 8"
            raise UserError(f"Rows must have {limit} tokens, not {self.context_length}.")
        if not (math.isfinite(self.c) and 0 < self.c <= MAX_CLAMP):
            raise UserError(f"c must be a number above 0 and at most {MAX_CLAMP:g}, not {self.c}.")
        if not 0 <= self.top_k <= d_sae:
            raise UserError(f"--top-k must be 0 to {d_sae} (the SAE's width), not {self.top_k}.")


@dataclass(frozen=True)
class FeatureEffects:
    """Per row the estimated effect of every feature, and the measured effect of the
    candidates, on each corpus; with where they came from."""

    arrays: dict[str, np.ndarray]
    provenance: dict

    def table(self) -> pd.DataFrame:
        """Per feature the mean effect per row and its SE on forget and retain text, their
        ratio with its 95% Fieller interval, and the measured effects (NaN: not measured)."""
        out = pd.DataFrame({"feature": np.arange(self.arrays["estimated_forget"].shape[1])})
        for name in SETS:
            each = self.arrays[f"estimated_{name}"]
            out[f"{name}_effect"] = each.mean(0)
            out[f"{name}_effect_se"] = _se(each)
            out[f"measured_{name}"] = np.nan
            out[f"measured_{name}_se"] = np.nan
            candidates = self.arrays["candidates"]
            measured = self.arrays[f"measured_{name}"]
            out.loc[candidates, f"measured_{name}"] = measured.mean(0)
            out.loc[candidates, f"measured_{name}_se"] = _se(measured)
        columns = ["forget_effect", "forget_effect_se", "retain_effect", "retain_effect_se"]
        intervals = [
            ratio_interval(*row) if math.isfinite(row[1]) else None
            for row in out[columns].to_numpy().tolist()
        ]
        out["ratio"] = out["forget_effect"] / out["retain_effect"].where(out["retain_effect"] != 0)
        out["ratio_low"] = [np.nan if i is None else i[0] for i in intervals]
        out["ratio_high"] = [np.nan if i is None else i[1] for i in intervals]
        return out

    def agreement(self) -> dict[str, dict]:
        """Per corpus the Spearman correlation of estimated and measured mean effects over
        the measured candidates, with its n and p (None below 3 candidates)."""
        found = {}
        for name in SETS:
            n = len(self.arrays["candidates"])
            if n < 3:
                found[name] = {"n": n, "spearman": None, "p": None}
                continue
            estimate = self.arrays[f"estimated_{name}"][:, self.arrays["candidates"]].mean(0)
            result = spearmanr(estimate, self.arrays[f"measured_{name}"].mean(0))
            found[name] = {"n": n, "spearman": float(result[0]), "p": float(result[1])}
        return found


def with_min_effect(table: pd.DataFrame, effects: FeatureEffects, least: float) -> pd.DataFrame:
    """The rows of a feature table whose estimated forget effect (mean loss added per row)
    is at least `least`: selection by effect, a filter before any other rule."""
    if not math.isfinite(least):
        raise UserError(f"The least effect must be a number, not {least}.")
    estimate = effects.table().set_index("feature")["forget_effect"]
    kept = table["feature"].map(estimate).to_numpy() >= least
    return table[kept].reset_index(drop=True)


def _se(per_row: np.ndarray) -> np.ndarray:
    """The standard error of each column's mean over rows (NaN with one row)."""
    if len(per_row) < 2:
        return np.full(per_row.shape[1], np.nan)
    return per_row.std(0, ddof=1) / np.sqrt(len(per_row))


def effect_rows(ws: Workspace, role: str, settings: EffectSettings) -> np.ndarray:
    """The first `settings.rows` seeded token rows of a corpus's training documents."""
    train, _ = ws.documents_split(role)
    rows = ws.token_rows(train, settings.context_length, None, ws.config.budgets.seed)
    return rows[: settings.rows]


def _provenance(ws: Workspace, settings: EffectSettings) -> dict:
    return {
        "workspace": ws.config.provenance_hash(),
        "sae": ws.sae_fingerprint(),
        "model": ws.model_fingerprint,
        "libraries": library_versions(),
        "data": {role: data.fingerprint(ws.config, role) for role in SETS.values()},
        "settings": asdict(settings),
        "bos": bos_rule(settings.skip_bos),
        "rows_from": "training documents (never the held-out rows evaluations report on)",
        "version": EFFECTS_VERSION,
    }


def _path(ws: Workspace, provenance: dict) -> Path:
    return ws.folder / "effects" / f"effects-{record_key(provenance)}.npz"


def kept_effects(ws: Workspace, settings: EffectSettings) -> FeatureEffects | None:
    """The effects of `settings` on `ws` when they were measured before (no model is run)."""
    settings.check(ws.sae_width())
    return _read(_path(ws, _provenance(ws, settings)))


def feature_effects(
    ws: Workspace, settings: EffectSettings, report: Report | None = None
) -> FeatureEffects:
    """The effects of `settings` on `ws`, from disk when they were measured before."""
    if (kept := kept_effects(ws, settings)) is not None:
        return kept
    settings.check(ws.sae_width(), ws.model.cfg.n_ctx)
    provenance = _provenance(ws, settings)
    path = _path(ws, provenance)
    rows = {name: effect_rows(ws, role, settings) for name, role in SETS.items()}
    total = 2 * sum(len(r) for r in rows.values())
    done = 0

    def step(offset: int) -> Report | None:
        return None if report is None else (lambda d, _t: report(offset + d, total))

    arrays: dict[str, np.ndarray] = {}
    for name, each in rows.items():
        arrays[f"estimated_{name}"] = estimated_effects(
            ws, each, settings.c, settings.skip_bos, report=step(done)
        )
        done += len(each)
    order = np.argsort(-arrays["estimated_forget"].mean(0), kind="stable")
    arrays["candidates"] = np.sort(order[: settings.top_k])
    for name, each in rows.items():
        candidates = arrays["candidates"].tolist()
        arrays[f"measured_{name}"] = measured_effects(
            ws, each, candidates, settings.c, settings.skip_bos, report=step(done)
        )
        done += len(each)
    provenance |= {"rows": {name: len(each) for name, each in rows.items()}}
    effects = FeatureEffects(arrays, provenance)
    _write(path, effects)
    return effects


def _write(path: Path, effects: FeatureEffects) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, provenance=np.array(json.dumps(effects.provenance)), **effects.arrays)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))


def _load(path: Path) -> dict:
    with np.load(path) as kept:
        return {name: kept[name] for name in ARRAYS} | {
            "provenance": json.loads(str(kept["provenance"]))
        }


def _read(path: Path) -> FeatureEffects | None:
    """Kept effects; None when there are none, or when they are damaged (moved aside and
    measured again, as every memo)."""
    kept = read_memo(path, {"provenance": dict}, check=_problem, load=_load)
    if kept is None:
        return None
    provenance = kept.pop("provenance")
    return FeatureEffects(kept, provenance)


def _problem(kept: dict) -> str | None:
    """What keeps kept effects from being shown, or None: rows counts or the BOS rule
    missing from their provenance, or arrays whose shapes do not fit together."""
    rows, bos = kept["provenance"].get("rows"), kept["provenance"].get("bos")
    if not isinstance(bos, str) or not isinstance(rows, dict):
        return "no rows or BOS rule in the provenance"
    candidates = kept["candidates"]
    for name in SETS:
        estimated, measured = kept[f"estimated_{name}"], kept[f"measured_{name}"]
        if estimated.ndim != 2 or rows.get(name) != len(estimated):
            return f"estimated_{name} of shape {estimated.shape}, not {rows.get(name)} rows"
        if measured.shape != (len(estimated), len(candidates)):
            return f"measured_{name} of shape {measured.shape}, not one column per candidate"
    width = kept["estimated_forget"].shape[1]
    if kept["estimated_retain"].shape[1] != width or candidates.ndim != 1:
        return "arrays of different widths"
    if candidates.dtype.kind not in "iu" or not ((candidates >= 0) & (candidates < width)).all():
        return f"candidates that are not features 0 to {width - 1}"
    return None
