"""Co-occurrence from the sparse cache against a dense boolean computation on a small cache."""

import os

import numpy as np
import pandas as pd
import pytest

from core.cache.store import SparseActivationStore
from core.features import cooccurrence as module
from core.features.cooccurrence import (
    ORDERS,
    CooccurrenceConfig,
    cooccurrence,
    uncached_cooccurrence,
)

pytestmark = pytest.mark.model


@pytest.fixture
def cache(small_app_ws) -> SparseActivationStore:
    return SparseActivationStore.for_workspace(small_app_ws, "forget_corpus")


def dense_fires(cache: SparseActivationStore, skip_special: bool) -> np.ndarray:
    indptr, token, _ = cache.csc()
    tokens = np.asarray(cache.tokens()).reshape(-1)
    fires = np.zeros((len(tokens), cache.spec.d_sae), dtype=bool)
    for j in range(cache.spec.d_sae):
        fires[token[indptr[j] : indptr[j + 1]], j] = True
    if skip_special:
        fires[np.isin(tokens, cache.special_token_ids())] = False
    return fires


@pytest.mark.parametrize("skip_special", [True, False], ids=["saebench", "all-positions"])
@pytest.mark.parametrize("order", ["jaccard", "conditional"])
def test_cooccurrence_matches_dense_booleans(cache, skip_special, order):
    fires = dense_fires(cache, skip_special)
    feature = int(np.argsort(-fires.sum(0))[20])  # a frequent, but not the most frequent
    found = cooccurrence(
        cache, feature, CooccurrenceConfig(k=15, order=order, skip_special=skip_special)
    )
    mine = fires[:, feature]
    together = (fires & mine[:, None]).sum(0)
    union = (fires | mine[:, None]).sum(0)
    score = together / np.maximum(union, 1) if order == "jaccard" else together / mine.sum()
    score[feature] = -1
    best = np.lexsort((np.arange(len(score)), -together, -score))[:15]
    assert found["feature"].tolist() == best.tolist()
    np.testing.assert_allclose(found[order], score[best])
    assert (found["together"].to_numpy() == together[best]).all()
    assert (found["count"].to_numpy() == fires.sum(0)[best]).all()


def test_a_silent_feature_has_no_partners(cache):
    indptr, _, _ = cache.csc()
    silent = int(np.flatnonzero(np.diff(indptr) == 0)[0])
    assert cooccurrence(cache, silent).empty


def test_the_memo_equals_the_computation_afresh_and_follows_the_cache(cache):
    indptr, _, _ = cache.csc()
    features = [int(f) for f in np.argsort(-np.diff(indptr))[[0, 5, 40]]]
    configs = [
        CooccurrenceConfig(k=12, order=o, skip_special=s) for o in ORDERS for s in (True, False)
    ]
    for feature in features:
        for config in configs:
            afresh = uncached_cooccurrence(cache, feature, config)
            pd.testing.assert_frame_equal(cooccurrence(cache, feature, config), afresh)
            kept = cooccurrence(cache, feature, config)  # read back from the memo
            pd.testing.assert_frame_equal(kept, afresh)
            kept.loc[0, "together"] = -1  # the caller's copy: the memo is untouched
            pd.testing.assert_frame_equal(cooccurrence(cache, feature, config), afresh)
    version = cache.version()
    token = cache.csc_dir / "token.npy"
    os.utime(token, ns=(token.stat().st_atime_ns, token.stat().st_mtime_ns + 10**9))
    assert cache.version() != version  # the cache's files changed: counted afresh
    again = SparseActivationStore(cache.folder, cache.spec)
    pd.testing.assert_frame_equal(
        cooccurrence(again, features[0]), uncached_cooccurrence(again, features[0])
    )
    assert any(key[1] == cache.version() for key in module._TABLES)
