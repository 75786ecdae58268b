"""Fine-tuning a copy of the workspace's model with the edit active at the hook: LoRA on the
MLP weights of every block (peft's parameter adapters; TransformerLens keeps its weights as
plain parameters) or every weight. The workspace's own model and SAE are never changed.

    tuned = tunable_copy(ws.model, "lora", rank=8, seed=0)
    losses = train(tuned, sae, hook, iv, rows, steps=20, lr=1e-4, batch_rows=4, seed=0)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Int

from core.errors import UserError
from core.interventions.edits import Intervention, applied
from core.runtime.forward import model_lock
from core.runtime.tl_compat import model_copy

if TYPE_CHECKING:
    from core.loading.models import Model
    from core.loading.saes import SAE

KINDS = {
    "lora": "LoRA adapters on every block's MLP weights (the base weights frozen)",
    "full": "every weight of the model",
}
DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}  # full: DSG's relearning rate (METHOD §14)
MLP_WEIGHTS = ("W_gate", "W_in", "W_out")
BATCH_STREAM = 5  # the training batches' random stream


def frozen_copy(sae: SAE) -> SAE:
    """A copy of the SAE that no gradient reaches (the shared one stays untouched)."""
    twin = copy.deepcopy(sae)
    twin.requires_grad_(False)
    return twin


def tunable_copy(model: Model, kind: str, rank: int, seed: int) -> Model:
    """A copy of `model` whose trainable parameters are LoRA adapters of `rank` (initialised
    from `seed`, their product zero: the copy starts equal to the model) or, for "full",
    all of its weights."""
    if kind not in KINDS:
        raise UserError(f"Unknown fine-tuning '{kind}'; choose one of {', '.join(KINDS)}.")
    with model_lock(model):  # no other run's hooks are on it while it is copied
        twin = model_copy(model)
    twin.reset_hooks()
    if kind == "full":
        twin.requires_grad_(True)
        return twin
    if rank < 1:
        raise UserError(f"The LoRA rank must be at least 1, not {rank}.")
    from peft import LoraConfig, inject_adapter_in_model

    names = {name.rsplit(".", 1)[-1] for name, _ in twin.named_parameters() if ".mlp." in name}
    targets = [f"mlp.{weight}" for weight in MLP_WEIGHTS if weight in names]
    if not targets:
        raise UserError("LoRA needs the blocks' MLP weights; this model has none: use --full.")
    twin.requires_grad_(False)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=[], target_parameters=targets)
    twin = inject_adapter_in_model(config, twin)
    for name, parameter in twin.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return twin


def trainable_state(model: Model) -> dict[str, torch.Tensor]:
    """The weights fine-tuning changes (the adapters, or every weight)."""
    return {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }


def train(
    model: Model,
    sae: SAE,
    hook: str,
    iv: Intervention | None,
    rows: Int[np.ndarray, "rows ctx"],
    steps: int,
    lr: float,
    batch_rows: int,
    seed: int,
    after_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """`steps` AdamW steps of next-token loss on `rows` (seeded batches of `batch_rows`,
    reshuffled each pass), with `iv` applied at `hook` (None: no edit). Returns each step's
    training loss; `after_step(step, loss)` runs after each (1-based) step."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, BATCH_STREAM])
    order: list[int] = []
    losses = []
    tokens = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    for step in range(1, steps + 1):
        if len(order) < batch_rows:
            order += rng.permutation(len(tokens)).tolist()
        batch, order = order[:batch_rows], order[batch_rows:]
        with applied(model, sae, hook, iv):
            loss = model(tokens[batch].to(model.cfg.device), return_type="loss")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if after_step is not None:
            after_step(step, losses[-1])
    return losses
