"""Decoder and encoder neighbours: for every feature, the features whose directions point most
the same way (cosine similarity), computed once per SAE by a chunked matmul and kept on disk
under the SAE's weights hash, so one feature's neighbours are a row read."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.base.records import record_key, save_array, write_json
from core.errors import UserError
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace

log = logging.getLogger(__name__)

DIRECTIONS = ("decoder", "encoder")


@dataclass(frozen=True)
class NeighbourConfig:
    """How the neighbour tables are computed.

    Args:
        k: neighbours kept per feature (the page and CLI show up to this many).
        chunk: rows of the similarity matrix computed at once (memory: chunk × d_sae floats).
    """

    k: int = 32
    chunk: int = 1024

    def check(self) -> None:
        if self.k < 1 or self.chunk < 1:
            raise UserError(f"Neighbours: k and chunk must be ≥ 1, not {self.k} and {self.chunk}.")


@torch.no_grad()
def top_cosine(
    directions: Float[Tensor, "d_sae d"], k: int, chunk: int = 1024
) -> tuple[Int[np.ndarray, "d_sae k"], Float[np.ndarray, "d_sae k"]]:
    """For each row, the k other rows of highest cosine similarity (descending), one chunk
    of the similarity matrix at a time; a row never counts itself."""
    unit = directions.float()
    unit = unit / unit.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n = unit.shape[0]
    k = min(k, n - 1)
    indices = np.empty((n, k), dtype=np.int32)
    cosines = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        block = unit[start : start + chunk] @ unit.T
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = -torch.inf
        values, found = block.topk(k, dim=-1)
        indices[start : start + chunk] = found.numpy()
        cosines[start : start + chunk] = values.numpy()
    return indices, cosines


class Neighbours:
    """The cached neighbour tables of one SAE, memory-mapped."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._arrays = {
            (direction, part): np.load(folder / f"{direction}_{part}.npy", mmap_mode="r")
            for direction in DIRECTIONS
            for part in ("index", "cosine")
        }

    @classmethod
    def for_workspace(cls, ws: Workspace, config: NeighbourConfig | None = None) -> Neighbours:
        """The tables for the workspace's SAE, computed the first time (seconds for 16k)."""
        config = config or NeighbourConfig()
        config.check()
        record = {"sae": ws.sae_fingerprint(), "config": asdict(config), "kind": "neighbours"}
        folder = ws.folder / "neighbours" / record_key(record)
        if not (folder / "provenance.json").exists():
            log.info("Computing decoder and encoder neighbours of %s", record["sae"])
            sae = ws.sae
            weights = {
                "decoder": adapter_for(sae).decoder_direction().detach().cpu(),
                "encoder": sae.W_enc.detach().cpu().T,
            }
            for direction, matrix in weights.items():
                index, cosine = top_cosine(matrix, config.k, config.chunk)
                save_array(folder / f"{direction}_index.npy", index)
                save_array(folder / f"{direction}_cosine.npy", cosine)
            write_json(folder / "provenance.json", record | {"d_sae": int(sae.cfg.d_sae)}, 2)
        return cls(folder)

    def of(self, feature: int, direction: str = "decoder", k: int = 10) -> tuple[list, list]:
        """(feature ids, cosines) of one feature's k nearest, nearest first."""
        index = self._arrays[(direction, "index")]
        if not 0 <= feature < len(index):
            raise UserError(f"Feature {feature} is out of range: this SAE has 0-{len(index) - 1}.")
        cosine = self._arrays[(direction, "cosine")]
        return index[feature, :k].tolist(), cosine[feature, :k].tolist()


def neighbour_table(
    neighbours: Neighbours,
    feature: int,
    table: pd.DataFrame,
    labels: Mapping[int, str],
    k: int = 10,
    variant: str = "saebench",
) -> pd.DataFrame:
    """One feature's decoder neighbours and, beside them, its encoder neighbours: ids,
    cosines, labels (feature id → label text) and forget/retain frequencies."""
    columns = {}
    for direction in DIRECTIONS:
        ids, cosines = neighbours.of(feature, direction, k)
        rows = table.set_index("feature").loc[ids]
        prefix = direction[:3]
        columns |= {
            f"{prefix}_feature": ids,
            f"{prefix}_cosine": cosines,
            f"{prefix}_label": [labels.get(f, "") for f in ids],
            f"{prefix}_forget_freq": rows[f"forget_freq_{variant}"].to_numpy(),
            f"{prefix}_retain_freq": rows[f"retain_freq_{variant}"].to_numpy(),
        }
    return pd.DataFrame(columns)
