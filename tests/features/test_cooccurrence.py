"""Co-occurrence from the sparse cache against a dense boolean computation on a small cache."""

import numpy as np
import pytest

from core.cache.store import SparseActivationStore
from core.features.cooccurrence import CooccurrenceConfig, cooccurrence

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
