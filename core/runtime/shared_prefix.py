"""Sequences that all start with the same tokens (a k-shot block): the prefix runs once and
is kept as a key-value cache, and each batch runs only the sequences' own tokens after it.

    kv = prefix_kv(model, prefix)
    resid = resid_after(model, kv, [s[len(prefix):] for s in sequences], pad)

Positions continue after the prefix (rotary offsets, local-attention windows and the causal
mask are TransformerLens's own, as in generation), so residuals equal plain runs'. Hooks see
`sequence_offset()` = the prefix length, so an edit that spares BOS spares only the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from core.runtime.forward import final_resid, model_lock, pad_right

if TYPE_CHECKING:
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    from core.loading.models import Model

PrefixKV = list[tuple[Float[Tensor, "len kv_heads d_head"], Float[Tensor, "len kv_heads d_head"]]]


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens every sequence shares."""
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for s in sequences[1:]:
        same = 0
        while same < length and s[same] == first[same]:
            same += 1
        length = same
    return length


@torch.no_grad()
def prefix_kv(model: Model, prefix: Sequence[int]) -> PrefixKV:
    """Per layer, the prefix's keys and values from one plain run (hooks apply as usual)."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, 1)
    tokens = torch.tensor([list(prefix)])
    with model_lock(model):
        final_resid(model, tokens, torch.ones_like(tokens), cache)
    return [(e.past_keys[0], e.past_values[0]) for e in cache.entries]


def _cache(model: Model, kv: PrefixKV, rows: int) -> TransformerLensKeyValueCache:
    """A fresh cache holding the prefix for each of `rows` rows (a run appends to it)."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entries = [
        TransformerLensKeyValueCacheEntry(
            keys.expand(rows, *keys.shape), values.expand(rows, *values.shape)
        )
        for keys, values in kv
    ]
    seen = torch.ones(rows, kv[0][0].shape[0], dtype=torch.long, device=model.cfg.device)
    return TransformerLensKeyValueCache(entries, seen)


@torch.no_grad()
def resid_after(
    model: Model, kv: PrefixKV, rests: Sequence[Sequence[int]], pad: int
) -> Float[Tensor, "batch rest d_model"]:
    """Final residuals of the tokens after the prefix (right-padded), as if each sequence ran
    whole."""
    tokens, mask = pad_right(rests, pad)
    return final_resid(model, tokens, mask, _cache(model, kv, len(rests)))
