"""The feature map: every feature as a point in 2-D, a UMAP of its decoder direction (cosine
distance), computed once per SAE and kept on disk under its weights hash and the settings."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float

from core.base.records import record_key, save_array, write_json
from core.errors import UserError
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureMapConfig:
    """UMAP settings of the map (umap-learn).

    Args:
        n_neighbors: neighbourhood size: larger keeps more global structure.
        min_dist: how tightly points may pack.
        seed: random state; fixed, so a map is reproducible (and single-threaded).
        pca_dims: the unit directions are first projected on their top principal
            components (cosine distance becomes nearly Euclidean there); 0 keeps them all.
        n_epochs: layout optimisation epochs (umap-learn's default is 200 to 500).
    """

    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    pca_dims: int = 64
    n_epochs: int = 200

    def check(self) -> None:
        if self.n_neighbors < 2 or not 0.0 <= self.min_dist <= 1.0 or self.n_epochs < 1:
            raise UserError(
                "Feature map: n_neighbors must be ≥ 2, min_dist in [0, 1], n_epochs ≥ 1."
            )
        if self.pca_dims < 0:
            raise UserError(f"Feature map: pca_dims must be ≥ 0, not {self.pca_dims}.")


def umap_layout(
    directions: Float[np.ndarray, "d_sae d"], config: FeatureMapConfig
) -> Float[np.ndarray, "d_sae 2"]:
    import umap

    unit = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    if 0 < config.pca_dims < unit.shape[1]:
        centred = unit - unit.mean(0)
        _, vectors = np.linalg.eigh(centred.T @ centred)  # d × d: cheaper than an SVD
        unit = centred @ vectors[:, ::-1][:, : config.pca_dims]
    reducer = umap.UMAP(
        n_neighbors=min(config.n_neighbors, len(directions) - 1),
        min_dist=config.min_dist,
        n_epochs=config.n_epochs,
        random_state=config.seed,
    )
    return reducer.fit_transform(unit.astype(np.float32)).astype(np.float32)


def map_record(ws: Workspace, config: FeatureMapConfig) -> dict:
    return {"kind": "feature map", "sae": ws.sae_fingerprint(), "config": asdict(config)}


def _path(ws: Workspace, config: FeatureMapConfig) -> Path:
    return ws.folder / "feature_map" / f"{record_key(map_record(ws, config))}.npy"


def cached_feature_map(
    ws: Workspace, config: FeatureMapConfig | None = None
) -> Float[np.ndarray, "d_sae 2"] | None:
    """The stored map, or None when it has not been computed for this SAE and config."""
    path = _path(ws, config or FeatureMapConfig())
    return np.load(path) if path.exists() else None


def save_feature_map(
    ws: Workspace, layout: Float[np.ndarray, "d_sae 2"], config: FeatureMapConfig
) -> None:
    """Keep a map with its provenance (the SAE's weights hash and the settings)."""
    path = _path(ws, config)
    save_array(path, layout)
    write_json(path.with_suffix(".json"), map_record(ws, config) | {"d_sae": len(layout)}, 2)


def feature_map(
    ws: Workspace, config: FeatureMapConfig | None = None
) -> Float[np.ndarray, "d_sae 2"]:
    """The map of the workspace's SAE (x, y per feature), computed the first time."""
    config = config or FeatureMapConfig()
    config.check()
    found = cached_feature_map(ws, config)
    if found is not None:
        return found
    log.info("Computing the feature map of %s (UMAP)", ws.sae_fingerprint())
    directions = adapter_for(ws.sae).decoder_direction()
    layout = umap_layout(directions.detach().float().cpu().numpy(), config)
    save_feature_map(ws, layout, config)
    return layout
