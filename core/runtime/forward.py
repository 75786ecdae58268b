"""Forward passes every computation shares: right-padded batches grouped by length, the
residual after the last block, and logits at chosen positions only (the unembedding of a
262k-token vocabulary is never built for every position)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.runtime.tl_compat import cache_length, unembed

if TYPE_CHECKING:
    from core.loading.models import Model
    from core.runtime.tl_compat import KVCache

MAX_BATCH_TOKENS = 4096
LOGIT_CHUNK = 256
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RUN = threading.local()  # what hooks may need to know of the running forward pass
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Model) -> threading.RLock:
    """The model's own re-entrant lock. Hooks live on the one shared model object, so every
    forward pass, hooked or not, holds it: a run in one session never sees another session's
    intervention (and no memo is written from a run that overlapped another)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.RLock())


@contextmanager
def sequence_context(
    mask: Int[Tensor, "batch pos"] | None = None, span: int | None = None, offset: int = 0
) -> Iterator[None]:
    """Tell hooks run inside which positions are real tokens (`mask`, None: all), for
    generation how many of them are the prompt (`span`): a gate reads only those, and where
    in the sequences this pass starts (`offset`: tokens already in a key-value cache)."""
    previous = getattr(_RUN, "context", (None, None))
    _RUN.context = (mask, span if span is not None else previous[1])
    _RUN.offset, before = offset, getattr(_RUN, "offset", 0)
    try:
        yield
    finally:
        _RUN.context, _RUN.offset = previous, before


def sequence_positions() -> tuple[Int[Tensor, "batch pos"] | None, int | None]:
    """(mask, span) of the forward pass running in this thread (see `sequence_context`)."""
    return getattr(_RUN, "context", (None, None))


def sequence_offset() -> int:
    """The position of this pass's first token in its sequences (0 unless a cache holds
    earlier tokens)."""
    return getattr(_RUN, "offset", 0)


def batches(lengths: Sequence[int], max_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Indices grouped by length (longest first) so that rows x longest ≤ max_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for index in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= max_tokens:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def pad_right(
    rows: Sequence[Sequence[int]], pad: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """(tokens right-padded to the longest row, attention mask)."""
    longest = max(len(r) for r in rows)
    tokens = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return tokens, mask


def hook_resid(
    model: Model, tokens: Int[Tensor, "batch pos"], hook: str, layer: int
) -> Float[Tensor, "batch pos d_model"]:
    """Activations at `hook` (in block `layer`); the forward pass stops after that block."""
    with model_lock(model):
        _, cache = model.run_with_cache(
            tokens.to(model.cfg.device),
            names_filter=hook,
            stop_at_layer=layer + 1,
            return_type=None,
        )
    return cache[hook]


def final_resid(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    mask: Int[Tensor, "batch pos"] | None = None,
    past_kv_cache: KVCache | None = None,
) -> Float[Tensor, "batch pos d_model"]:
    """The residual after the last block (before the final norm). Pads sit after each row's
    real tokens, so positions and attention of real tokens are unaffected."""
    device = model.cfg.device
    offset = 0 if past_kv_cache is None else cache_length(past_kv_cache)
    with model_lock(model), sequence_context(mask, offset=offset):
        return model(
            tokens.to(device),
            stop_at_layer=model.cfg.n_layers,
            attention_mask=None if mask is None else mask.to(device),
            past_kv_cache=past_kv_cache,
        )


def final_logits(
    model: Model, resid: Float[Tensor, "*batch d_model"]
) -> Float[Tensor, "*batch d_vocab"]:
    """Logits from the last block's output, as the model's own forward computes them (without
    the copy of the 262k-wide unembedding that TransformerLens makes on every call), as float32
    at least (a float64 model's stay float64)."""
    logits = unembed(model, resid)
    return logits if logits.dtype == torch.float64 else logits.float()


def resume_layer(hook: str) -> int | None:
    """The block a forward pass resumes at from the residual at `hook`: L + 1 after block L's
    `hook_resid_post`, L at its `hook_resid_pre`; None for any other hook."""
    parts = hook.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        return None
    return {"hook_resid_post": int(parts[1]) + 1, "hook_resid_pre": int(parts[1])}.get(parts[2])


def resumed_final_resid(
    model: Model, resid: Float[Tensor, "batch pos d_model"], layer: int
) -> Float[Tensor, "batch pos d_model"]:
    """The residual after the last block, from the residual entering block `layer` (the
    blocks before it are not run again). Full rows only: no padding, no prefix cache."""
    return model(resid, start_at_layer=layer, stop_at_layer=model.cfg.n_layers)


def next_token_losses(
    model: Model, final: Float[Tensor, "batch n d_model"], targets: Int[Tensor, "batch n"]
) -> Float[Tensor, "batch n"]:
    """The cross-entropy (float64) of each target from the residual after the last block at
    the position before it; the logits a chunk of positions at a time. Differentiable."""
    targets = targets.to(final.device)
    losses = [torch.zeros(len(targets), 0, dtype=torch.float64, device=final.device)]
    for start in range(0, targets.shape[1], LOGIT_CHUNK):
        logits = final_logits(model, final[:, start : start + LOGIT_CHUNK])
        want = targets[:, start : start + LOGIT_CHUNK]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), want, reduction="none")
        losses.append(ce.double())
    return torch.cat(losses, 1)
