"""Sequences that share prefixes, run as token trees (tree attention).

    resid = tree_resid(model, sequences, pad)  # [n, longest, d_model], as n plain runs give

The sequences' token trie is cut into rows of at most `row_limit` tokens. A row is a stem
(the path from the root to some node, run once as a plain prompt and kept as a key-value
cache) and a body: one or more subtrees below the stem's end, each token once, ancestors
before descendants. In the body's forward pass a token attends only to its stem and its
ancestors and is rotated to its depth (its position in its own sequence), so every
sequence's residuals are those of its plain run while each shared token is computed once.
Each stem sits right before its body, so distances within a row bound true distances and a
row fits the model's local-attention window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.runtime.forward import MAX_BATCH_TOKENS, batches, final_resid, model_lock, pad_right
from core.runtime.tl_compat import (
    attention_window,
    cache_from,
    cache_kv,
    movable_positions,
    new_cache,
    tree_hooks,
    zero_kv,
)

if TYPE_CHECKING:
    from core.loading.models import Model
    from core.runtime.tl_compat import KVCache

StemKV = tuple[Float[Tensor, "len kv_heads d_head"], Float[Tensor, "len kv_heads d_head"]]
ROW_LIMIT = 512


class TreeUnavailable(Exception):
    """A sequence is longer than a row may be, or the model's positions cannot be moved
    (absolute embeddings, or rotary tables that are scaled or depend on length): run the
    sequences plainly."""


@dataclass
class TreeRows:
    """The trie of some sequences cut into rows. Per stem its tokens; per row its stem, body
    tokens and each body token's parent (index in the body, -1 for the stem's end); per
    sequence its row, how many of its tokens are in the stem, and its body tokens' indices."""

    stems: list[list[int]]
    stem_of: list[int]
    tokens: list[list[int]]
    parents: list[list[int]]
    paths: list[tuple[int, int, list[int]]]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]], row_limit: int = ROW_LIMIT) -> TreeRows:
        if max((len(s) for s in sequences), default=0) > row_limit:
            raise TreeUnavailable
        token, parent, children = [-1], [-1], [dict()]  # node 0: an empty root
        ends = []
        for sequence in sequences:
            node = 0
            for t in sequence:
                if t not in children[node]:
                    children[node][t] = len(token)
                    token.append(t)
                    parent.append(node)
                    children.append({})
                node = children[node][t]
            ends.append(node)
        size = [1] * len(token)
        for node in range(len(token) - 1, 0, -1):  # children come after their parents
            size[parent[node]] += size[node]

        def subtree(node: int) -> list[int]:
            out, stack = [], [node]
            while stack:
                out.append(stack.pop())
                stack += reversed(children[out[-1]].values())
            return out

        rows: list[tuple[list[int], list[int]]] = []  # (stem nodes, body nodes)

        def lay_out(node: int, stem: list[int]) -> None:
            """Rows for the subtrees below `node`, each after `stem` (root to node)."""
            group: list[int] = []
            for child in children[node].values():
                if len(stem) + size[child] > row_limit:
                    lay_out(child, [*stem, child])
                    continue
                if group and len(stem) + sum(size[c] for c in group) + size[child] > row_limit:
                    rows.append((stem, [n for c in group for n in subtree(c)]))
                    group = []
                group.append(child)
            if group:
                rows.append((stem, [n for c in group for n in subtree(c)]))

        lay_out(0, [])
        stem_index: dict[tuple[int, ...], int] = {}
        for stem, _ in rows:
            stem_index.setdefault(tuple(stem), len(stem_index))
        where: dict[int, int] = {}
        for r, (stem, body) in enumerate(rows):
            for node in stem + body:
                where.setdefault(node, r)
        paths = []
        for end in ends:
            stem, body = rows[where[end]]
            index = {node: i for i, node in enumerate(body)}
            path, node = [], end
            while node and node in index:
                path.append(index[node])
                node = parent[node]
            in_stem = stem.index(node) + 1 if node else 0
            paths.append((where[end], in_stem, path[::-1]))
        body_parents = []
        for _, body in rows:
            index = {node: i for i, node in enumerate(body)}
            body_parents.append([index.get(parent[node], -1) for node in body])
        return cls(
            stems=[[token[n] for n in stem] for stem in stem_index],
            stem_of=[stem_index[tuple(stem)] for stem, _ in rows],
            tokens=[[token[n] for n in body] for _, body in rows],
            parents=body_parents,
            paths=paths,
        )


def ancestry(
    parents: Sequence[Sequence[int]], stems: Sequence[int], stem_width: int, width: int
) -> tuple[Bool[Tensor, "rows width keys"], Int[Tensor, "rows keys"]]:
    """For bodies right-padded to `width` after stems right-aligned in `stem_width` columns
    (keys = stem_width + width): (mask: who may attend to whom, shift: each key's index minus
    its depth). Body pads attend to themselves only."""
    mask = np.zeros((len(parents), width, stem_width + width), dtype=bool)
    depth = np.zeros((len(parents), stem_width + width), dtype=np.int64)
    for r, (row, stem) in enumerate(zip(parents, stems, strict=True)):
        start = stem_width - stem  # the stem's first column
        mask[r, : len(row), start:stem_width] = True
        depth[r, start:stem_width] = np.arange(stem)
        for i, p in enumerate(row):
            if p >= 0:
                mask[r, i, stem_width:] = mask[r, p, stem_width:]
            depth[r, stem_width + i] = stem if p < 0 else depth[r, stem_width + p] + 1
            mask[r, i, stem_width + i] = True
        pads = np.arange(len(row), width)
        mask[r, pads, stem_width + pads] = True
        depth[r, stem_width + pads] = stem_width + pads
    shift = np.arange(stem_width + width) - depth  # ≥ 0; stem pads (depth 0) never attended
    return torch.from_numpy(mask), torch.from_numpy(shift)


@contextmanager
def tree_attention(
    model: Model, mask: Bool[Tensor, "rows queries keys"], shift: Int[Tensor, "rows keys"]
) -> Iterator[None]:
    """Run `model` on bodies as trees: attention limited to `mask` and every key and query
    rotated back by `shift` (index − depth), the queries being the last keys. Hooks are gone
    on exit."""
    hooks = tree_hooks(model, mask, shift)
    with model_lock(model), model.hooks(fwd_hooks=hooks):
        yield


def _run_stems(
    model: Model, stems: list[list[int]], pad: int, max_tokens: int
) -> tuple[list[Float[Tensor, "len d_model"]], list[list[StemKV]]]:
    """Per stem, as a plain prompt: its residuals and per layer its unrotated (keys,
    values). Empty stems get empty tensors."""
    resid = [torch.zeros(0, model.cfg.d_model, device=model.cfg.device) for _ in stems]
    kv: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in stems]
    ran = [i for i, stem in enumerate(stems) if stem]
    for group in batches([len(stems[i]) for i in ran], max_tokens):
        group = [ran[g] for g in group]
        tokens, _ = pad_right([stems[i] for i in group], pad)
        cache = new_cache(model, len(group))
        out = final_resid(model, tokens, torch.ones_like(tokens), cache)
        for b, i in enumerate(group):
            resid[i] = out[b, : len(stems[i])]
            kv[i] = [(k[b, : len(stems[i])], v[b, : len(stems[i])]) for k, v in cache_kv(cache)]
    return resid, kv


def _stem_cache(model: Model, kv: list[list[StemKV]], stems: list[int], width: int) -> KVCache:
    """A cache whose row r holds stem `stems[r]`'s keys and values right-aligned in `width`
    columns (the rest zeros, never attended)."""
    layers = zero_kv(model, len(stems), width)
    for layer, (keys, values) in enumerate(layers):
        for row, stem in enumerate(stems):
            if kv[stem]:
                stem_keys, stem_values = kv[stem][layer]
                keys[row, width - len(stem_keys) :] = stem_keys
                values[row, width - len(stem_values) :] = stem_values
    return cache_from(model, layers)


@torch.no_grad()
def tree_resid(
    model: Model,
    sequences: Sequence[Sequence[int]],
    pad: int,
    row_limit: int = ROW_LIMIT,
    max_tokens: int = MAX_BATCH_TOKENS,
) -> Float[Tensor, "n longest d_model"]:
    """Final residuals of `sequences` (right-padded), each shared prefix run once.
    Raises TreeUnavailable when that cannot be done (callers run them plainly)."""
    if not movable_positions(model):
        raise TreeUnavailable
    window = attention_window(model)
    layout = TreeRows.build(sequences, min(row_limit, window or row_limit))
    device = model.cfg.device
    out = torch.zeros(len(sequences), max(len(s) for s in sequences), model.cfg.d_model)
    out = out.to(device)
    stem_lengths = [len(s) for s in layout.stems]
    stem_resid, kv = _run_stems(model, layout.stems, pad, max_tokens)
    by_row: dict[int, list[int]] = {}
    for s, (r, in_stem, _) in enumerate(layout.paths):
        by_row.setdefault(r, []).append(s)
        if in_stem:
            out[s, :in_stem] = stem_resid[layout.stem_of[r]][:in_stem]
    lengths = [stem_lengths[s] + len(t) for s, t in zip(layout.stem_of, layout.tokens, strict=True)]
    for group in batches(lengths, max_tokens):
        stems = [layout.stem_of[r] for r in group]
        tokens, _ = pad_right([layout.tokens[r] for r in group], pad)
        widest = max(stem_lengths[s] for s in stems)
        mask, shift = ancestry(
            [layout.parents[r] for r in group],
            [stem_lengths[s] for s in stems],
            widest,
            tokens.shape[1],
        )
        cache = None
        if widest:
            cache = _stem_cache(model, kv, stems, widest)
        with tree_attention(model, mask, shift):
            resid = final_resid(model, tokens, torch.ones_like(tokens), cache)
        for b, r in enumerate(group):
            for s in by_row.get(r, []):
                _, in_stem, path = layout.paths[s]
                out[s, in_stem : len(sequences[s])] = resid[b, path]
    return out
