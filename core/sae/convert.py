"""Convert the paper authors' SAE checkpoints (`.pt`) to sae-lens's on-disk format.

The authors' code (GitHub `efarrell1/unlearning_with_saes`, `sae/sparse_autoencoder.py`,
`SparseAutoencoder.save_model`) writes `torch.save({"cfg": Config, "state_dict": ...})`:
`cfg` is their `sae.config.Config` dataclass (`d_in`, `expansion_factor`, `hook_point`,
`model_name`, `activation_function` "relu" | "topk", `topk_amount`,
`subtract_b_dec_from_inputs`, ...), the state dict holds `W_enc` [d_in, d_sae], `b_enc`,
`W_dec` [d_sae, d_in], `b_dec` and `b_pre` (the input bias: the same tensor as `b_dec` unless
it was trained apart). Their forward pass: a = act((x − b_pre)·W_enc + b_enc) (b_pre only
when `subtract_b_dec_from_inputs`), x̂ = a·W_dec + b_dec. Their own loader
(`load_saved_sae`) builds a plain `SparseAutoencoder`, so gated checkpoints do not load there
either and are refused here.

The file is unpickled with `weights_only=True`: their Config class is stood in for by a
plain class, so no code from the checkpoint runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.errors import UserError

AUTHORS_CONFIG = "sae.config.Config"
ACTIVATIONS = ("relu", "topk")


class AuthorsConfig:
    """Stands in for the authors' `sae.config.Config` while unpickling: keeps its fields."""


AuthorsConfig.__module__, AuthorsConfig.__qualname__ = AUTHORS_CONFIG.rsplit(".", 1)
AuthorsConfig.__name__ = AuthorsConfig.__qualname__


def read_authors_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config fields, state dict) of an authors' `.pt` file; a UserError if it is not one."""
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    try:
        with torch.serialization.safe_globals([AuthorsConfig]):
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign pickles and bad files
        raise UserError(
            f"{path} is not an authors' SAE checkpoint (torch.save of cfg + state_dict): {exc}"
        ) from exc
    if not isinstance(saved, dict) or not {"cfg", "state_dict"} <= set(saved):
        raise UserError(f"{path}: expected a dict with 'cfg' and 'state_dict'.")
    cfg = saved["cfg"]
    fields = vars(cfg) if isinstance(cfg, AuthorsConfig) else cfg
    if not isinstance(fields, dict):
        raise UserError(f"{path}: 'cfg' is neither their Config nor a dict.")
    state = saved["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: 'state_dict' is not a dict of tensors.")
    if not_tensors := [str(key) for key, value in state.items() if not torch.is_tensor(value)]:
        raise UserError(f"{path}: the state dict's {', '.join(not_tensors)} are not tensors.")
    return fields, state


def convert_authors_sae(path: Path, out: Path) -> Path:
    """Write the checkpoint at `path` as a sae-lens folder (cfg.json +
    sae_weights.safetensors) at `out`; returns `out`. Nothing is written on bad input."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    cfg, state = read_authors_checkpoint(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder: choose a new folder.")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty: choose a new folder.")
    if cfg.get("use_gated_sparse_autoencoder") or "r_mag" in state:
        raise UserError(f"{path} is a gated SAE; only relu and topk SAEs are converted.")
    if cfg.get("different_output"):
        raise UserError(f"{path} is a transcoder (different_output); only SAEs are converted.")
    activation = cfg.get("activation_function", "relu")
    if activation not in ACTIVATIONS:
        raise UserError(f"{path}: activation {activation!r} is not one of {ACTIVATIONS}.")
    missing = [key for key in ("W_enc", "b_enc", "W_dec", "b_dec") if key not in state]
    if missing:
        raise UserError(f"{path}: the state dict has no {', '.join(missing)}.")
    w_enc, b_enc = state["W_enc"].float(), state["b_enc"].float()
    w_dec, b_dec = state["W_dec"].float(), state["b_dec"].float()
    if w_enc.ndim != 2:
        raise UserError(f"{path}: W_enc has shape {tuple(w_enc.shape)}, not [d_in, d_sae].")
    d_in, d_sae = w_enc.shape
    if w_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise UserError(
            f"{path}: shapes do not fit an SAE (W_enc {tuple(w_enc.shape)}, W_dec "
            f"{tuple(w_dec.shape)}, b_enc {tuple(b_enc.shape)}, b_dec {tuple(b_dec.shape)})."
        )
    b_pre = state.get("b_pre", b_dec).float()
    if b_pre.shape != b_dec.shape:
        raise UserError(f"{path}: b_pre has shape {tuple(b_pre.shape)}, not ({d_in},).")
    subtract = bool(cfg.get("subtract_b_dec_from_inputs", False))
    shared_bias = subtract and torch.equal(b_pre, b_dec)
    if subtract and not shared_bias:
        b_enc = b_enc - b_pre @ w_enc  # (x − b_pre)·W + b = x·W + (b − b_pre·W)
    metadata = SAEMetadata(
        model_name=cfg.get("model_name"),
        hook_name=cfg.get("hook_point"),
        context_size=cfg.get("context_size"),
        converted_from=f"authors' .pt ({path.name})",
    )
    common = dict(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=shared_bias, metadata=metadata)
    if activation == "topk":
        sae = TopKSAE(TopKSAEConfig(k=_topk_amount(path, cfg, d_sae), **common))
    else:
        sae = StandardSAE(StandardSAEConfig(**common))
    sae.load_state_dict(
        {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec}, strict=True
    )
    sae.save_model(out)
    return out


def _topk_amount(path: Path, cfg: dict[str, Any], d_sae: int) -> int:
    """The checkpoint's k: a whole number from 1 to the SAE's width."""
    k = cfg.get("topk_amount", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae:
        raise UserError(f"{path}: topk_amount {k!r} is not a whole number from 1 to {d_sae}.")
    return k
