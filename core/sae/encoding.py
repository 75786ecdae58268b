"""Encoding residuals with the SAE: the selected latents only (where the architecture
allows), and every token's active latents in sparse form (what the caches store)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from core.loading.saes import SAE

PARTIAL_ENCODE_ARCHITECTURES = {"standard", "jumprelu"}


def linear_decoder(sae: SAE) -> bool:
    """Whether decoding is a plain linear map (no input normalisation to undo)."""
    return getattr(sae.cfg, "normalize_activations", "none") == "none"


def selected_activations(
    sae: SAE, x: Float[Tensor, "*batch d_in"], targets: list[int]
) -> Float[Tensor, "*batch n_targets"]:
    """a[..., targets]: the selected encoder columns only where the architecture allows it
    (standard, JumpReLU), else the full encode."""
    architecture = sae.cfg.architecture()
    if architecture not in PARTIAL_ENCODE_ARCHITECTURES or not linear_decoder(sae):
        return sae.encode(x)[..., targets]
    index = torch.as_tensor(targets, device=x.device)
    sae_in = sae.process_sae_in(x)
    hidden = sae_in @ sae.W_enc[:, index] + sae.b_enc[index]
    acts = torch.relu(hidden)
    if architecture == "jumprelu":
        acts = acts * (hidden > sae.threshold[index])
    return acts


@torch.no_grad()
def sparse_encode(
    sae: SAE, x: Float[Tensor, "tokens d_in"]
) -> tuple[Int[np.ndarray, " tokens"], Int[np.ndarray, " nnz"], Float[np.ndarray, " nnz"]]:
    """Active latents of each row of x: (count per token, feature ids, values), in token
    order and feature order within a token. TopK SAEs go straight from the top-k to this
    form; other architectures encode densely and keep the nonzeros."""
    if type(sae).__name__ == "TopKSAE" and not sae.cfg.rescale_acts_by_decoder_norm:
        pre = sae.process_sae_in(x) @ sae.W_enc + sae.b_enc
        values, indices = pre.topk(sae.cfg.k, dim=-1, sorted=False)
        indices, order = indices.sort(dim=-1)
        values = values.gather(-1, order).relu()
        active = values > 0
        return (
            active.sum(-1).cpu().numpy(),
            indices[active].cpu().numpy(),
            values[active].float().cpu().numpy(),
        )
    acts = sae.encode(x)
    rows, features = acts.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=x.shape[0])
    return counts.cpu().numpy(), features.cpu().numpy(), acts[rows, features].float().cpu().numpy()
