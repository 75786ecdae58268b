"""Edits of SAE latents at the SAE's hook, error term kept (METHOD §5).

    iv = Intervention(features=(12, 40), values=(20.0, 20.0))  # clamp to -20 where active
    with applied(ws.model, ws.sae, ws.hook, iv):
        logits = ws.model(tokens)

Only the selected latents change: x' = x + Σ_j (a'_j − a_j)·d_j, d_j the feature's decoder
direction, so every position where no selected feature changes is bit-identical to the clean
run. The SAE's adapter (core.sae.adapter) encodes the selected latents as its architecture
allows; SAEs whose decoder is not a plain linear map (input normalisation) fall back to
decode(a') − decode(a).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from core.errors import UserError
from core.features.stats import feature_means
from core.interventions.gate import GATE_RULES, Gate, sequence_rho
from core.runtime.forward import model_lock, sequence_offset, sequence_positions
from core.runtime.gate_record import note_decisions
from core.sae.adapter import SAEAdapter, adapter_for

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens.hook_points import HookPoint

    from core.loading.models import Model
    from core.loading.saes import SAE
    from core.workspace.workspace import Workspace

METHODS = {
    "clamp": "a_j ← −c where a_j > 0 (c per feature, times the global multiplier)",
    "scale": "a_j ← (1 − m)·a_j (m per feature, times the global multiplier)",
    "zero": "a_j ← 0 (zero ablation)",
    "mean": "a_j ← mean of a_j over the retain corpus, at every position (mean ablation)",
    "random": "clamp feature (j + 1) mod d_sae instead of j (random control)",
}
MAX_CLAMP = 10_000.0
MAX_SCALE = 100.0


def check_edit(method: str, values: tuple[float, ...]) -> None:
    """A method and the c (or m) values it is run with, as a sweep or a screen gives them."""
    if method not in METHODS:
        raise UserError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
    if not values:
        raise UserError("Give at least one c value.")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise UserError(f"c must be a finite number ≥ 0, not {bad[0]!r}.")


def bos_rule(skip_bos: bool) -> str:
    return "position 0 left alone" if skip_bos else "position 0 edited too"


@dataclass(frozen=True)
class Intervention:
    """What to do to which latents. `values` is c (clamp, random) or m (scale) per feature;
    `multiplier` scales all of them; `means` are the mean-ablation targets (method "mean")."""

    features: tuple[int, ...]
    values: tuple[float, ...] = ()
    method: str = "clamp"
    multiplier: float = 1.0
    skip_bos: bool = True
    means: tuple[float, ...] = ()
    gate: Gate | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        values = self.values or (1.0,) * len(self.features)
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        object.__setattr__(self, "means", tuple(float(v) for v in self.means))

    def check(self, d_sae: int) -> None:
        """Raise a UserError on anything that cannot be run."""
        if self.method not in METHODS:
            raise UserError(f"Unknown method '{self.method}'; choose one of {', '.join(METHODS)}.")
        if not self.features:
            raise UserError("No features chosen: pick a feature set, the top-n, or type ids.")
        bad = [f for f in self.features if not 0 <= f < d_sae]
        if bad:
            raise UserError(f"Feature ids out of range 0..{d_sae - 1}: {bad[:10]}.")
        if len(set(self.features)) != len(self.features):
            raise UserError("A feature is listed twice; give each feature once.")
        if len(self.values) != len(self.features):
            raise UserError(f"{len(self.features)} features but {len(self.values)} values.")
        if self.method == "mean" and len(self.means) != len(self.features):
            raise UserError("Mean ablation needs each feature's mean activation.")
        if self.gate is not None:
            self.gate.check(self.method)
        for feature, value in zip(self.features, self.effective_values(), strict=True):
            if not math.isfinite(value):
                raise UserError(f"Feature {feature}: the value {value} is not a finite number.")
            if self.method in ("clamp", "random") and value < 0:
                raise UserError(
                    f"Feature {feature}: c = {value:g} is negative. c is the size of the "
                    "clamp; the feature is set to −c where it fires."
                )
            if self.method in ("clamp", "random") and value > MAX_CLAMP:
                raise UserError(
                    f"Feature {feature}: c = {value:g} is absurd (limit {MAX_CLAMP:g}); "
                    "typical values are 10–100 SAE activation units."
                )
            if self.method == "scale" and abs(value) > MAX_SCALE:
                raise UserError(f"Feature {feature}: m = {value:g} is outside ±{MAX_SCALE:g}.")

    def effective_values(self) -> tuple[float, ...]:
        return tuple(v * self.multiplier for v in self.values)

    def targets(self, d_sae: int) -> tuple[int, ...]:
        """The latents actually edited (the random control shifts each id by one)."""
        if self.method == "random":
            return tuple((f + 1) % d_sae for f in self.features)
        return self.features

    def record(self) -> dict:
        """A JSON-able description, stored with every result."""
        record = asdict(self)
        record["features"], record["values"] = list(self.features), list(self.values)
        record["means"] = list(self.means)
        record["rule"] = METHODS.get(self.method, "")
        record["bos"] = bos_rule(self.skip_bos)
        if self.gate is None:
            del record["gate"]  # ungated runs keep the memo keys they had before gates
        else:
            record["gate"]["rule_text"] = GATE_RULES.get(self.gate.rule, "")
        return record


def edit(
    adapter: SAEAdapter, x: Float[Tensor, "*batch pos d_in"], iv: Intervention, targets: list[int]
) -> Float[Tensor, "*batch pos d_in"]:
    """x with the intervention applied; positions where nothing changes keep x exactly."""
    acts = adapter.selected_activations(x, targets)
    values = torch.tensor(iv.effective_values(), dtype=acts.dtype, device=acts.device)
    fires = acts > 0
    any_fires = fires.any(dim=-1, keepdim=True) if iv.gate is not None else None
    if any_fires is not None and iv.gate.rule == "any selected":
        fires = any_fires.expand_as(acts)
    if iv.method in ("clamp", "random"):
        new = torch.where(fires, -values, acts)
    elif iv.method == "scale":
        new = (1 - values) * acts
    elif iv.method == "zero":
        new = torch.zeros_like(acts)
    else:  # mean
        new = torch.tensor(iv.means, dtype=acts.dtype, device=acts.device).expand_as(acts)
    change = new - acts
    offset = sequence_offset()
    if iv.skip_bos and change.shape[-2] > 0 and offset == 0:
        change[..., 0, :] = 0
    if iv.gate is not None:
        assert offset == 0, "a gate reads whole sequences: run them without a prefix cache"
        on = sequence_rho(any_fires[..., 0], *sequence_positions()) > iv.gate.alpha
        note_decisions(on)  # the run's record of what it edited (core.runtime.gate_record)
        change = change * on[:, None, None].to(change.dtype)
    touched = (change != 0).any(dim=-1, keepdim=True)
    if not touched.any():
        return x
    if adapter.linear_decoder:
        delta = change @ adapter.decoder_direction(targets)
    else:
        full = adapter.encode(x)
        edited = full.clone()
        edited[..., targets] += change
        delta = adapter.decode(edited) - adapter.decode(full)
    return torch.where(touched, x + delta.to(x.dtype), x)


@contextmanager
def applied(model: Model, sae: SAE, hook: str, iv: Intervention | None) -> Iterator[None]:
    """Run the model with the intervention at `hook`; the hook is gone on exit, exception or
    not. `None` runs the clean model. Either way the model is this thread's until exit."""
    if iv is None:
        with model_lock(model):
            yield
        return
    iv.check(sae.cfg.d_sae)
    targets = list(iv.targets(sae.cfg.d_sae))
    adapter = adapter_for(sae)

    def hook_fn(
        x: Float[Tensor, "batch pos d_in"], hook: HookPoint
    ) -> Float[Tensor, "batch pos d_in"]:
        return edit(adapter, x, iv, targets)

    with model_lock(model), model.hooks(fwd_hooks=[(hook, hook_fn)]):
        yield


def make_intervention(
    ws: Workspace,
    features: list[int],
    values: list[float],
    method: str = "clamp",
    multiplier: float = 1.0,
    skip_bos: bool = True,
    table: pd.DataFrame | None = None,
    gate: Gate | None = None,
) -> Intervention:
    """An intervention checked against the workspace's SAE (mean ablation gets its means,
    from `table` when given: the workspace's feature table), gated when `gate` is given."""
    means: tuple[float, ...] = ()
    if method == "mean":
        Intervention(tuple(features), tuple(values)).check(ws.sae_width())  # ids before lookup
        means = feature_means(ws, features, table)
    iv = Intervention(tuple(features), tuple(values), method, multiplier, skip_bos, means, gate)
    iv.check(ws.sae_width())
    return iv
