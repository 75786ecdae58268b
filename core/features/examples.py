"""What a feature reads: top-activating contexts and examples per activation interval (from
the cache only), logit effects (through the unembedding), and features on pasted text."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from jaxtyping import Float, Int

from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.runtime.tl_compat import unembed_direction
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace

MAX_PASTED_TOKENS = 512


@dataclass(frozen=True)
class Context:
    """A window of one cached row around a token where the feature fires."""

    row: int
    position: int  # the marked token, in row coordinates
    start: int  # first token of the window, in row coordinates
    token_ids: tuple[int, ...]
    values: tuple[float, ...]  # the feature's activation on every window token

    @property
    def value(self) -> float:
        return self.values[self.position - self.start]

    @property
    def mark(self) -> int:
        return self.position - self.start


@dataclass
class FeatureActivations:
    """Where one feature fires in one cache: token indices ascending, values."""

    cache: SparseActivationStore
    feature: int
    tokens: Int[np.ndarray, " n"]  # row * context_length + position, ascending
    values: Float[np.ndarray, " n"]

    @classmethod
    def read(cls, cache: SparseActivationStore, feature: int) -> FeatureActivations:
        where, values = cache.feature(feature)
        return cls(cache, feature, where.astype(np.int64), values.astype(np.float32))

    @property
    def fires(self) -> bool:
        return len(self.values) > 0

    @cached_property
    def _row_maxima(self) -> tuple[np.ndarray, np.ndarray]:
        ctx = self.cache.spec.context_length
        rows = self.tokens // ctx  # non-decreasing: tokens are ascending
        starts = np.flatnonzero(np.concatenate([[len(rows) > 0], rows[1:] != rows[:-1]]))
        maxima = np.maximum.reduceat(self.values, starts) if len(starts) else self.values[:0]
        counts = np.diff(np.append(starts, len(rows)))
        at_max = np.flatnonzero(self.values == np.repeat(maxima, counts))
        first = np.unique(rows[at_max], return_index=True)[1]
        return rows[starts], at_max[first]

    def row_maxima(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, index into tokens of the row's first maximum) for every row where it fires,
        in O(n): no sort of the feature's entries."""
        return self._row_maxima

    def context(self, index: int, left: int, right: int) -> Context:
        ctx = self.cache.spec.context_length
        row, position = divmod(int(self.tokens[index]), ctx)
        start, end = max(0, position - left), min(ctx, position + right + 1)
        token_ids = np.asarray(self.cache.tokens()[row, start:end])
        lo, hi = np.searchsorted(self.tokens, [row * ctx + start, row * ctx + end])
        values = np.zeros(end - start, dtype=np.float32)
        values[self.tokens[lo:hi] - row * ctx - start] = self.values[lo:hi]
        return Context(
            row, position, start, tuple(int(t) for t in token_ids), tuple(values.tolist())
        )

    def top(self, k: int = 10, left: int = 24, right: int = 8) -> list[Context]:
        """The k rows with the highest maxima, one context per row around its maximum."""
        rows, indices = self.row_maxima()
        best = indices[np.lexsort((rows, -self.values[indices]))][:k]
        return [self.context(int(i), left, right) for i in best]

    def by_interval(
        self,
        intervals: int = 4,
        per_interval: int = 3,
        left: int = 24,
        right: int = 8,
        seed: int = 0,
    ) -> list[tuple[float, float, list[Context]]]:
        """Examples whose row maximum falls in each of `intervals` equal-width value ranges
        (lo, hi] from 0 to the feature's maximum, weakest first; drawn with a seed."""
        if not self.fires:
            return []
        _, indices = self.row_maxima()
        maxima = self.values[indices]
        edges = np.linspace(0.0, float(maxima.max()), intervals + 1)
        rng = np.random.default_rng(seed)
        found = []
        for lo, hi in itertools.pairwise(edges):
            members = indices[(maxima > lo) & (maxima <= hi)]
            chosen = rng.choice(members, size=min(per_interval, len(members)), replace=False)
            examples = [self.context(int(i), left, right) for i in sorted(chosen.tolist())]
            found.append((float(lo), float(hi), examples))
        return found


def token_strings(ws: Workspace, token_ids: tuple[int, ...] | list[int]) -> list[str]:
    return [ws.tokenizer.decode([token]) for token in token_ids]


@torch.no_grad()
def logit_effects(ws: Workspace, feature: int, k: int = 10) -> tuple[list, list]:
    """Tokens the feature's decoder direction promotes and suppresses most: the direction
    through the final norm's weight and the unembedding. (RMSNorm's division by the
    residual's norm is a positive scale, so it changes no ranking.)"""
    model, sae = ws.model, ws.sae
    if not 0 <= feature < sae.cfg.d_sae:
        raise UserError(f"Feature {feature} is out of range: this SAE has 0-{sae.cfg.d_sae - 1}.")
    logits = unembed_direction(model, adapter_for(sae).decoder_direction([feature])[0])
    top = logits.topk(k)
    bottom = (-logits).topk(k)
    promote = [(ws.tokenizer.decode([int(i)]), float(v)) for v, i in zip(*top, strict=True)]
    suppress = [(ws.tokenizer.decode([int(i)]), -float(v)) for v, i in zip(*bottom, strict=True)]
    return promote, suppress


@torch.no_grad()
def features_on_text(ws: Workspace, text: str, top: int = 5) -> tuple[list[dict], bool]:
    """Per token of the pasted text: its top features and values (runs the model up to the
    SAE's layer only). Returns (rows, truncated)."""
    if not text.strip():
        raise UserError("Paste some text first.")
    ids = ws.tokenizer(text, add_special_tokens=False)["input_ids"]
    truncated = len(ids) > MAX_PASTED_TOKENS
    ids = [ws.tokenizer.bos_token_id, *ids[:MAX_PASTED_TOKENS]]
    resid = ws.residual(torch.tensor([ids]))
    acts = adapter_for(ws.sae).encode(resid)[0]
    values, features = acts.topk(top, dim=-1)
    rows = []
    for position, token in enumerate(ids):
        active = [
            (int(f), float(v))
            for f, v in zip(features[position], values[position], strict=True)
            if v > 0
        ]
        rows.append(
            {"position": position, "token": ws.tokenizer.decode([token]), "features": active}
        )
    return rows, truncated
