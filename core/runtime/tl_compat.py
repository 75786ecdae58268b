"""TransformerLens internals behind one door: the only module of core/ that reaches past the
model's public API. TransformerLens is pinned in requirements.txt, and
tests/runtime/test_tl_compat.py checks every function here against plain TransformerLens
(Gemma-2's softcaps and sliding windows included), so a version bump fails there first.

The rule. Anywhere in core/ may use HookedTransformer's public API: calling the model (with
stop_at_layer, attention_mask, past_kv_cache, return_type), run_with_cache, run_with_hooks,
hooks(), hook_dict, loss_fn, to_tokens, hook names such as "blocks.9.hook_resid_post",
cfg.device, cfg.n_layers, cfg.d_model, and the HookPoint / HookedTransformer types in
annotations. Everything else comes from here: the key-value cache classes and their
fields, the blocks' attention modules (rotary tables, rotation, mask fill value, local or
global), config fields only TransformerLens's internals read (positional embedding,
rotary variants, local-attention window, softcaps), the final norm and unembedding, and
transformer_lens submodules. core/loading/models.py, which loads the model, keeps its own
loading-time calls.

A key-value cache holds per layer keys and values before rotation, [rows, positions,
kv_heads, d_head], and which positions are real; a forward pass given one appends to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache as KVCache
    from transformer_lens.components import AbstractAttention
    from transformer_lens.hook_points import HookPoint

    from core.loading.models import Model

# TransformerLens is imported inside the functions below: it pulls in transformers, and
# importing the runtime must stay cheap for code that never runs a model.

KV = tuple[Float[Tensor, "rows len kv_heads d_head"], Float[Tensor, "rows len kv_heads d_head"]]
UNMOVABLE_POSITIONS = ("use_yarn_rope", "use_dynamic_ntk_rope", "use_logn_attn")  # cfg flags


def new_cache(model: Model, rows: int) -> KVCache:
    """An empty key-value cache for `rows` rows."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    return TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, rows)


def cache_from(model: Model, kv: Sequence[KV]) -> KVCache:
    """A cache holding per layer these keys and values, every position a real token."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entries = [TransformerLensKeyValueCacheEntry(keys, values) for keys, values in kv]
    seen = torch.ones(*kv[0][0].shape[:2], dtype=torch.long, device=model.cfg.device)
    return TransformerLensKeyValueCache(entries, seen)


def cache_kv(cache: KVCache) -> list[KV]:
    """Per layer, the (keys, values) a cache holds."""
    return [(entry.past_keys, entry.past_values) for entry in cache.entries]


def zero_kv(model: Model, rows: int, width: int) -> list[KV]:
    """Per layer, zero keys and values of `rows` rows by `width` positions, of the dtype and
    on the device the model's cache keeps them."""
    kv = []
    for keys, values in cache_kv(new_cache(model, rows)):
        shape = (rows, width, *keys.shape[2:])
        kv.append((keys.new_zeros(shape), values.new_zeros(shape)))
    return kv


def cache_length(cache: KVCache) -> int:
    """The number of positions a cache holds (where a run given it starts)."""
    return cache.previous_attention_mask.shape[1]


def movable_positions(model: Model) -> bool:
    """Whether positions enter only as plain rotary tables inside attention (then a token can
    be moved to another position by rotating its queries and keys)."""
    cfg = model.cfg
    return cfg.positional_embedding_type == "rotary" and not any(
        getattr(cfg, flag, False) for flag in UNMOVABLE_POSITIONS
    )


def attention_window(model: Model) -> int | None:
    """How far back local-attention layers see (None: every layer sees all)."""
    cfg = model.cfg
    return cfg.window_size if getattr(cfg, "use_local_attn", False) else None


def tree_hooks(
    model: Model, mask: Bool[Tensor, "rows queries keys"], shift: Int[Tensor, "rows keys"]
) -> list[tuple[str, Callable]]:
    """Forward hooks making attention a tree: a query sees only the keys `mask` allows, and
    every key and query (the last keys) is rotated back by `shift` positions."""
    device = model.cfg.device
    blocked = ~mask.to(device)[:, None]
    shift = shift.to(device)
    turns: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def rotate_back(
        x: Float[Tensor, "rows pos heads d_head"], hook: HookPoint, attn: AbstractAttention
    ) -> Float[Tensor, "rows pos heads d_head"]:
        """Rotation by index then by −shift is rotation by index − shift."""
        key = (attn.attn_type, x.shape[1])  # local and global layers' rotary bases differ
        if key not in turns:
            back = shift[:, -x.shape[1] :]
            turns[key] = (
                attn.rotary_cos[back][:, :, None].to(x.dtype),
                attn.rotary_sin[back][:, :, None].to(x.dtype),
            )
        cos, sin = turns[key]
        dim = attn.cfg.rotary_dim
        head = x[..., :dim]
        turned = head * cos - attn.rotate_every_two(head) * sin
        return turned if dim == x.shape[-1] else torch.cat([turned, x[..., dim:]], -1)

    def limit(
        scores: Float[Tensor, "rows heads queries keys"],
        hook: HookPoint,
        attn: AbstractAttention,
    ) -> Float[Tensor, "rows heads queries keys"]:
        return scores.masked_fill_(blocked, attn.IGNORE.item())

    hooks = []
    for i, block in enumerate(model.blocks):

        def bound(fn: Callable, attn: AbstractAttention = block.attn) -> Callable:
            return lambda x, hook: fn(x, hook, attn)

        hooks += [
            (f"blocks.{i}.attn.hook_rot_q", bound(rotate_back)),
            (f"blocks.{i}.attn.hook_rot_k", bound(rotate_back)),
            (f"blocks.{i}.attn.hook_attn_scores", bound(limit)),
        ]
    return hooks


def unembed(
    model: Model, resid: Float[Tensor, "*batch d_model"]
) -> Float[Tensor, "*batch d_vocab"]:
    """Logits from the last block's output as the model's forward computes them: final norm,
    unembedding, output softcap (without the copy of the unembedding that TransformerLens's
    Unembed makes on every call), in the model's dtype."""
    logits = model.ln_final(resid) @ model.W_U + model.b_U
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0) or -1.0
    if cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def unembed_direction(
    model: Model, direction: Float[Tensor, " d_model"]
) -> Float[Tensor, " d_vocab"]:
    """A residual direction through the final norm's weight (if it has one) and the
    unembedding: what it adds to the logits, up to the norm's positive scale."""
    direction = direction.to(model.W_U.dtype)
    norm_weight = getattr(model.ln_final, "w", None)
    if norm_weight is not None:
        direction = direction * norm_weight
    return direction @ model.W_U


def pretrained_config(name: str) -> HookedTransformerConfig:
    """TransformerLens's config of a model it knows by name (Gemma's: no download)."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    return get_pretrained_model_config(name)


def model_copy(model: Model) -> Model:
    """A deep copy of `model` that runs on its own weights. deepcopy keeps functions as they
    are, and sae-lens's HookedSAETransformer gives each MLP an instance `forward`, a closure
    over the *original* MLP that runs its `hook_in` first: the copy's MLPs would run the
    original's weights. Each is bound again to its copy."""
    import copy

    twin = copy.deepcopy(model)
    for module in twin.modules():
        if "forward" in vars(module) and hasattr(module, "hook_in"):
            del module.forward  # the class's forward, bound to this copy
            module.forward = partial(_hooked_in, module.forward, module.hook_in)
    return twin


def _hooked_in(forward: Callable, hook_in: HookPoint, x: Tensor) -> Tensor:
    return forward(hook_in(x))


def weight_counts(model: Model, layers: int) -> tuple[int, int]:
    """(weights of the first `layers` blocks, weights of every block and the unembedding):
    what one token costs in a pass to a hook and in a full forward."""
    blocks = [sum(p.numel() for p in block.parameters()) for block in model.blocks]
    return int(sum(blocks[:layers])), int(sum(blocks) + model.W_U.numel())
