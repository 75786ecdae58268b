"""Co-occurrence: the features that fire at the same token positions as a given one, read
from a cache's feature-major (CSC) copy. One pass over the sparse entries with a mask of the
feature's positions: no dense feature × feature (or token × feature) matrix is ever built."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Bool, Int

from core.cache.store import SparseActivationStore
from core.errors import UserError

ORDERS = ("jaccard", "conditional")


@dataclass(frozen=True)
class CooccurrenceConfig:
    """What counts as firing together and how the partners are ranked.

    Args:
        k: partners returned.
        order: "jaccard" (|i ∧ j| / |i ∨ j|) or "conditional" (P(j fires | i fires)).
        skip_special: leave out BOS, EOS and PAD positions (as SAEBench counts).
    """

    k: int = 10
    order: str = "jaccard"
    skip_special: bool = True

    def check(self) -> None:
        if self.k < 1:
            raise UserError(f"Co-occurrence: k must be ≥ 1, not {self.k}.")
        if self.order not in ORDERS:
            raise UserError(f"Co-occurrence order {self.order!r}: choose one of {ORDERS}.")


def counted_positions(
    cache: SparseActivationStore, skip_special: bool
) -> Bool[np.ndarray, " tokens"]:
    """Which token positions of the cache count (all, or all but special tokens)."""
    tokens = np.asarray(cache.tokens()).reshape(-1)
    if not skip_special:
        return np.ones(len(tokens), dtype=bool)
    return ~np.isin(tokens, cache.special_token_ids())


def together_counts(
    indptr: Int[np.ndarray, " d_sae_plus_1"],
    token: Int[np.ndarray, " nnz"],
    marked: Bool[np.ndarray, " tokens"],
) -> Int[np.ndarray, " d_sae"]:
    """For every feature, how many of its entries fall on a marked position."""
    hits = np.cumsum(marked[token], dtype=np.int64)
    ends = np.concatenate([[0], hits])
    return ends[indptr[1:]] - ends[indptr[:-1]]


# In-process memos keyed by the cache's folder and its files' version (a rebuilt or
# extended cache is counted afresh): the pass that does not depend on the feature, per
# cache; and the last features' tables, so a page's rerun reads them back.
_COUNTED: dict[tuple, tuple[Bool[np.ndarray, " tokens"], Int[np.ndarray, " d_sae"]]] = {}
_TABLES: dict[tuple, pd.DataFrame] = {}
_COUNTED_KEPT, _TABLES_KEPT = 4, 64


_WRITING = threading.Lock()  # pages of several sessions run in threads of one process


def _remember(memo: dict, kept: int, key: tuple, value: object) -> None:
    with _WRITING:
        while len(memo) >= kept:  # the oldest goes
            del memo[next(iter(memo))]
        memo[key] = value


def cooccurrence(
    cache: SparseActivationStore, feature: int, config: CooccurrenceConfig | None = None
) -> pd.DataFrame:
    """The features that fire most with `feature` on this cache's text: partner id, positions
    where both fire, each one's count, Jaccard and P(partner | feature); best first.
    Computed once per feature, config and version of the cache in a process."""
    config = _checked(cache, feature, config)
    cache.rows_final()  # a damaged copy is refused before its version keys anything
    version = (cache.folder, cache.version())
    key = (*version, feature, config)
    if (found := _TABLES.get(key)) is None:
        base = (*version, config.skip_special)
        if (counts := _COUNTED.get(base)) is None:
            counts = _counts(cache, config.skip_special)
            _remember(_COUNTED, _COUNTED_KEPT, base, counts)
        found = _ranked(cache, feature, config, *counts)
        _remember(_TABLES, _TABLES_KEPT, key, found)
    return found.copy()


def uncached_cooccurrence(
    cache: SparseActivationStore, feature: int, config: CooccurrenceConfig | None = None
) -> pd.DataFrame:
    """`cooccurrence` computed afresh, both passes (what the memos must equal)."""
    config = _checked(cache, feature, config)
    return _ranked(cache, feature, config, *_counts(cache, config.skip_special))


def _checked(
    cache: SparseActivationStore, feature: int, config: CooccurrenceConfig | None
) -> CooccurrenceConfig:
    config = config or CooccurrenceConfig()
    config.check()
    if not 0 <= feature < cache.spec.d_sae:
        raise UserError(
            f"Feature {feature} is out of range: this SAE has 0-{cache.spec.d_sae - 1}."
        )
    return config


def _counts(
    cache: SparseActivationStore, skip_special: bool
) -> tuple[Bool[np.ndarray, " tokens"], Int[np.ndarray, " d_sae"]]:
    """The feature-independent pass: which positions count, and every feature's count there."""
    indptr, token, _ = cache.csc()
    counted = counted_positions(cache, skip_special)
    return counted, together_counts(indptr, token, counted)


def _ranked(
    cache: SparseActivationStore,
    feature: int,
    config: CooccurrenceConfig,
    counted: Bool[np.ndarray, " tokens"],
    all_counts: Int[np.ndarray, " d_sae"],
) -> pd.DataFrame:
    indptr, token, _ = cache.csc()
    own = np.asarray(token[indptr[feature] : indptr[feature + 1]])
    own = own[counted[own]]
    columns = ["feature", "together", "count", "own_count", "jaccard", "conditional"]
    if not len(own):
        return pd.DataFrame(columns=columns)
    marked = np.zeros(len(counted), dtype=bool)
    marked[own] = True
    together = together_counts(indptr, token, marked)
    together[feature] = 0
    partners = np.flatnonzero(together)
    counts = all_counts[partners]
    both = together[partners]
    frame = pd.DataFrame(
        {
            "feature": partners,
            "together": both,
            "count": counts,
            "own_count": len(own),
            "jaccard": both / (len(own) + counts - both),
            "conditional": both / len(own),
        }
    )
    ranked = frame.sort_values(
        [config.order, "together", "feature"], ascending=[False, False, True]
    )
    return ranked.head(config.k).reset_index(drop=True)
