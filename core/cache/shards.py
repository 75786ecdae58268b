"""CSR shards: consecutive rows' active latents, each written into a temporary folder that
is renamed when whole, and validated whenever read."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
from jaxtyping import Float, Int

from core.cache.spec import CacheError

SHARD_NAME = re.compile(r"^rows-(\d{7})-(\d{7})$")

Shard = tuple[Int[np.ndarray, " tokens_plus_1"], Int[np.ndarray, " nnz"], Float[np.ndarray, " nnz"]]


def shard_name(start: int, end: int) -> str:
    return f"rows-{start:07d}-{end:07d}"


def shard_rows(name: str) -> tuple[int, int] | None:
    """(start, end) of a complete shard's folder name, None for anything else."""
    match = SHARD_NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def write_shard(shards_dir: Path, start: int, end: int, shard: Shard, d_sae: int) -> None:
    """Write (indptr, feature ids, values) as a shard folder, renamed into place when whole."""
    indptr, feature, value = shard
    feature_dtype = np.uint16 if d_sae <= 65536 else np.uint32
    name = shard_name(start, end)
    tmp = shards_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        np.save(tmp / "indptr.npy", indptr)
        np.save(tmp / "feature.npy", feature.astype(feature_dtype))
        np.save(tmp / "value.npy", value.astype(np.float16))
        os.rename(tmp, shards_dir / name)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CacheError(
            f"Could not write shard {name} in {shards_dir} ({exc.strerror or exc}). "
            "Complete shards are kept: free space (or fix permissions) and rerun "
            "`python -m core cache build` to resume."
        ) from exc


def read_shard(folder: Path, n_tokens: int, d_sae: int) -> Shard:
    """A shard's arrays, checked against its row count and the SAE's width."""
    try:
        indptr = np.load(folder / "indptr.npy")
        feature = np.load(folder / "feature.npy")
        value = np.load(folder / "value.npy")
    except (OSError, ValueError, EOFError) as exc:
        raise CacheError(f"Shard {folder.name} is unreadable ({exc}).") from exc
    if (
        indptr.shape != (n_tokens + 1,)
        or indptr[0] != 0
        or indptr[-1] != len(feature)
        or len(feature) != len(value)
        or np.any(np.diff(indptr) < 0)
        or (len(feature) and int(feature.max()) >= d_sae)
    ):
        raise CacheError(f"Shard {folder.name} is inconsistent (sizes or feature ids).")
    return indptr, feature, value
