"""Joining caches built apart (`cache build --shard i/n` on several machines): complete
shards of the same cache (same key) are copied in, each whole or not at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.cache.build import build_lock, finalize, quarantine_corrupt_shards, recover
from core.cache.shards import shard_rows
from core.cache.spec import CacheError
from core.cache.store import SparseActivationStore


def merge_from(cache: SparseActivationStore, sources: list[Path]) -> int:
    """Copy complete shards of this same cache from other cache folders or cache roots, then
    fold them in (under the cache's build lock). Returns how many were new."""
    missing = [source for source in sources if not source.exists()]
    if missing:
        raise CacheError(f"{missing[0]} does not exist.")
    with build_lock(cache):
        imported = _merge(cache, sources)
        finalize(cache)
    return imported


def _merge(cache: SparseActivationStore, sources: list[Path]) -> int:
    others = _same_caches(cache, sources)  # all checked before anything is written
    recover(cache)
    imported = 0
    for other, recorded in others:
        if recorded["rows_requested"] > cache.rows_requested():
            shutil.copyfile(other / "tokens.npy", cache.folder / ".tmp-tokens.npy")
            os.replace(cache.folder / ".tmp-tokens.npy", cache.tokens_path)
            cache.write_manifest(recorded["rows_requested"], recorded["special_token_ids"])
        imported += _import_shards(cache, other)
    quarantine_corrupt_shards(cache)
    return imported


def _same_caches(cache: SparseActivationStore, sources: list[Path]) -> list[tuple[Path, dict]]:
    """The other folders of this same cache (same key) in `sources`, with their manifests;
    a CacheError naming a manifest that is unreadable or has a field of the wrong type."""
    found = []
    for source in sources:
        folders = [source] if (source / "manifest.json").exists() else []
        folders += [f for f in source.rglob(cache.folder.name) if (f / "manifest.json").exists()]
        for other in folders:
            if other.resolve() == cache.folder.resolve():
                continue
            recorded = SparseActivationStore(other, cache.spec).manifest()
            if recorded is not None and recorded.get("key") == cache.spec.key():
                found.append((other, recorded))
    return found


def _import_shards(cache: SparseActivationStore, other: Path) -> int:
    have = set(cache.complete_shards())
    final = cache.rows_final()
    imported = 0
    for shard in sorted((other / "shards").glob("rows-*")):
        rows = shard_rows(shard.name)
        if rows is None or rows in have or rows[1] <= final:
            continue
        tmp = cache.shards_dir / f".tmp-{shard.name}-{os.getpid()}"
        shutil.copytree(shard, tmp)
        os.rename(tmp, cache.shards_dir / shard.name)
        imported += 1
    return imported
