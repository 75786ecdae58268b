"""One adapter per SAE architecture family, chosen once from sae-lens's architecture name:
everything that encodes, decodes or reads decoder directions goes through it.

    adapter = adapter_for(ws.sae)
    acts = adapter.selected_activations(x, [12, 40])  # a[..., [12, 40]]
    delta = change @ adapter.decoder_direction([12, 40])

Standard and JumpReLU SAEs (BatchTopK SAEs are saved as JumpReLU ones) encode selected
latents from their encoder columns alone; TopK SAEs need every latent (the top k is taken
over all of them), and go straight from the top k to the sparse form unless activations are
rescaled by decoder norms, which also rescales their decoder directions. Anything else is
encoded in full with sae-lens's own encode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from core.loading.saes import SAE


@dataclass(frozen=True)
class SAEAdapter:
    """Any architecture: sae-lens's encode and decode, and the decoder rows as saved."""

    sae: SAE

    @property
    def linear_decoder(self) -> bool:
        """Whether decode(a') − decode(a) = (a' − a) @ decoder_direction (no input
        normalisation to undo)."""
        return self.sae.cfg.normalize_activations == "none"

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        return self.sae.encode(x)

    def decode(self, acts: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        return self.sae.decode(acts)

    def selected_activations(
        self, x: Float[Tensor, "*batch d_in"], targets: list[int]
    ) -> Float[Tensor, "*batch n_targets"]:
        """a[..., targets]."""
        return self.encode(x)[..., targets]

    @torch.no_grad()
    def sparse_encode(
        self, x: Float[Tensor, "tokens d_in"]
    ) -> tuple[Int[np.ndarray, " tokens"], Int[np.ndarray, " nnz"], Float[np.ndarray, " nnz"]]:
        """Active latents of each row of x: (count per token, feature ids, values), in token
        order and feature order within a token."""
        acts = self.encode(x)
        rows, features = acts.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=x.shape[0])
        values = acts[rows, features].float().cpu().numpy()
        return counts.cpu().numpy(), features.cpu().numpy(), values

    def decoder_direction(
        self, features: Sequence[int] | None = None
    ) -> Float[Tensor, "n_features d_in"]:
        """What one unit of each feature adds to the reconstruction: the decoder rows of
        `features` (all of them when None)."""
        return self.sae.W_dec if features is None else self.sae.W_dec[list(features)]


class StandardAdapter(SAEAdapter):
    """ReLU of an affine encode: each latent needs only its own encoder column."""

    def selected_activations(
        self, x: Float[Tensor, "*batch d_in"], targets: list[int]
    ) -> Float[Tensor, "*batch n_targets"]:
        """a[..., targets] from the targets' encoder columns alone."""
        # sae-lens's input normalisation is stateful between encode and decode: encode fully.
        if not self.linear_decoder:
            return super().selected_activations(x, targets)
        index = torch.as_tensor(targets, device=x.device)
        hidden = self.sae.process_sae_in(x) @ self.sae.W_enc[:, index] + self.sae.b_enc[index]
        return self._activate(hidden, index)

    def _activate(
        self, hidden: Float[Tensor, "*batch n_targets"], index: Int[Tensor, " n_targets"]
    ) -> Float[Tensor, "*batch n_targets"]:
        return torch.relu(hidden)


class JumpReLUAdapter(StandardAdapter):
    """ReLU zeroed at or under each latent's threshold."""

    def _activate(
        self, hidden: Float[Tensor, "*batch n_targets"], index: Int[Tensor, " n_targets"]
    ) -> Float[Tensor, "*batch n_targets"]:
        return torch.relu(hidden) * (hidden > self.sae.threshold[index])


class TopKAdapter(SAEAdapter):
    """The k largest pre-activations of each token (ReLU'd), optionally ranked and decoded
    with activations rescaled by decoder norms."""

    @property
    def rescaled(self) -> bool:
        return bool(self.sae.cfg.rescale_acts_by_decoder_norm)

    @torch.no_grad()
    def sparse_encode(
        self, x: Float[Tensor, "tokens d_in"]
    ) -> tuple[Int[np.ndarray, " tokens"], Int[np.ndarray, " nnz"], Float[np.ndarray, " nnz"]]:
        """As SAEAdapter.sparse_encode, from the top k without the dense [tokens, d_sae]."""
        if self.rescaled:
            return super().sparse_encode(x)
        pre = self.sae.process_sae_in(x) @ self.sae.W_enc + self.sae.b_enc
        values, indices = pre.topk(self.sae.cfg.k, dim=-1, sorted=False)
        indices, order = indices.sort(dim=-1)
        values = values.gather(-1, order).relu()
        active = values > 0
        return (
            active.sum(-1).cpu().numpy(),
            indices[active].cpu().numpy(),
            values[active].float().cpu().numpy(),
        )

    def decoder_direction(
        self, features: Sequence[int] | None = None
    ) -> Float[Tensor, "n_features d_in"]:
        rows = super().decoder_direction(features)
        # sae-lens decodes a·(1/‖W_dec[j]‖)·W_dec[j] when rescaling
        return rows * (1 / rows.norm(dim=-1))[:, None] if self.rescaled else rows


class AbsTopKAdapter(TopKAdapter):
    """The k largest |pre-activations|, signs kept: encoded densely by sae-lens."""

    sparse_encode = SAEAdapter.sparse_encode


ADAPTERS: dict[str, type[SAEAdapter]] = {
    "standard": StandardAdapter,
    "jumprelu": JumpReLUAdapter,
    "topk": TopKAdapter,
    "abstopk": AbsTopKAdapter,
}


def adapter_for(sae: SAE) -> SAEAdapter:
    """The adapter of the SAE's architecture (sae-lens's name for it)."""
    return ADAPTERS.get(sae.cfg.architecture(), SAEAdapter)(sae)


@torch.no_grad()
def fold_decoder_norms(sae: SAE) -> None:
    """Make a decoder-norm-rescaling TopK SAE's decoder rows exactly unit-norm and stop
    rescaling: the same SAE function, with activations a plain encode returns."""
    norms = sae.W_dec.norm(dim=-1)
    sae.W_enc.mul_(norms)
    sae.b_enc.mul_(norms)
    sae.W_dec.div_(norms[:, None])
    sae.cfg.rescale_acts_by_decoder_norm = False
