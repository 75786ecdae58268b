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
from core.runtime.tl_compat import cache_from, cache_kv, new_cache

if TYPE_CHECKING:
    from core.loading.models import Model
    from core.runtime.tl_compat import KVCache

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
    cache = new_cache(model, 1)
    tokens = torch.tensor([list(prefix)])
    with model_lock(model):
        final_resid(model, tokens, torch.ones_like(tokens), cache)
    return [(keys[0], values[0]) for keys, values in cache_kv(cache)]


def _cache(model: Model, kv: PrefixKV, rows: int) -> KVCache:
    """A fresh cache holding the prefix for each of `rows` rows (a run appends to it)."""
    return cache_from(model, [(k.expand(rows, *k.shape), v.expand(rows, *v.shape)) for k, v in kv])


@torch.no_grad()
def resid_after(
    model: Model, kv: PrefixKV, rests: Sequence[Sequence[int]], pad: int
) -> Float[Tensor, "batch rest d_model"]:
    """Final residuals of the tokens after the prefix (right-padded), as if each sequence ran
    whole."""
    tokens, mask = pad_right(rests, pad)
    return final_resid(model, tokens, mask, _cache(model, kv, len(rests)))
