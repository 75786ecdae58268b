"""The feature map: UMAP keeps separated groups of directions apart, and a map is stored
under the SAE's weights hash and its settings."""

import numpy as np
import pytest

from core.features.feature_map import (
    FeatureMapConfig,
    cached_feature_map,
    feature_map,
    save_feature_map,
    umap_layout,
)


def test_two_groups_of_directions_land_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 5
    directions = np.concatenate([c + rng.normal(size=(60, 16)) * 0.3 for c in centres])
    layout = umap_layout(directions, FeatureMapConfig(n_neighbors=10))
    assert layout.shape == (120, 2) and np.isfinite(layout).all()
    first, second = layout[:60].mean(0), layout[60:].mean(0)
    spread = max(layout[:60].std(0).max(), layout[60:].std(0).max())
    assert np.linalg.norm(first - second) > 3 * spread


@pytest.mark.model
def test_a_stored_map_is_read_back_for_its_settings_only(offline_ws):
    config = FeatureMapConfig(n_neighbors=7, seed=3)
    assert cached_feature_map(offline_ws, config) is None
    layout = np.random.default_rng(0).normal(size=(offline_ws.sae_width(), 2)).astype(np.float32)
    save_feature_map(offline_ws, layout, config)
    assert np.array_equal(feature_map(offline_ws, config), layout)  # read, not recomputed
    assert cached_feature_map(offline_ws, FeatureMapConfig(n_neighbors=8, seed=3)) is None
