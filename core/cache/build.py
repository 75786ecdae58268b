"""Building a cache: token rows, then CSR shards of consecutive rows (each written whole or
not at all), then the feature-major copy folded from them.

One build of a cache runs at a time (a lock in its folder): a second process or thread
waits, then finds the rows built. A build killed at any moment resumes from the last
complete shard. Extending a cache to more rows builds only the new rows: the rows are a
seeded permutation, so a larger budget has the smaller as its prefix. With `shard=(i, n)` a
machine builds every n-th shard; the parts are joined with core.cache.merge.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Int

from core.base.locks import file_lock
from core.base.records import save_array
from core.cache.shards import Shard, write_shard
from core.cache.spec import DEFAULT_SHARD_ROWS, CacheError, default_rows
from core.cache.store import CacheStatus, SparseActivationStore, caches_for, resolved
from core.sae.adapter import adapter_for
from core.workspace.throughput import estimate, record_throughput

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (tokens done, tokens to do)


def check_build_arguments(
    rows: int, shard: tuple[int, int], shard_rows: int, batch_size: int
) -> None:
    """Refuse numbers that cannot build a cache, before anything is written."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise CacheError(f"--shard {index}/{count}: need 0 ≤ i < n.")
    for name, value in (("rows", rows), ("shard rows", shard_rows), ("batch size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CacheError(f"The {name} must be a whole number ≥ 1, not {value!r}.")


def build(
    cache: SparseActivationStore,
    ws: Workspace,
    rows: int,
    shard: tuple[int, int] = (0, 1),
    shard_rows: int = DEFAULT_SHARD_ROWS,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> CacheStatus:
    """Build (or resume, or extend) the cache to `rows` rows; with `shard=(i, n)` only every
    n-th shard from the i-th. Finalizes when every shard is there."""
    check_build_arguments(rows, shard, shard_rows, batch_size)
    cache = resolved(cache, ws)
    try:
        with build_lock(cache):
            return _build(cache, ws, rows, shard, shard_rows, batch_size, progress)
    except OSError as exc:
        raise CacheError(
            f"Could not write the cache in {cache.folder} ({exc.strerror or exc}). Free space "
            "or fix permissions (or set UNLEARNING_LENS_CACHE_DIR to a writable folder) and "
            "rerun: complete shards are kept."
        ) from exc


def build_lock(cache: SparseActivationStore) -> AbstractContextManager[None]:
    """Held by whatever writes a cache's folder (build, merge, the Ray driver): `recover`
    clears every temporary file there, so it must never run beside another writer."""
    return file_lock(cache.folder / "build.lock", f"a build of {cache.folder.name}")


def _build(
    cache: SparseActivationStore,
    ws: Workspace,
    rows: int,
    shard: tuple[int, int],
    shard_rows: int,
    batch_size: int,
    progress: Progress | None,
) -> CacheStatus:
    tokens, todo = prepare_build(cache, ws, rows, shard, shard_rows)
    ctx = tokens.shape[1]
    total = sum(end - start for start, end in todo) * ctx
    done = 0
    started = time.perf_counter()
    for start, end in todo:
        _build_shard(cache, ws, tokens, start, end, batch_size)
        done += (end - start) * ctx
        if progress is not None:
            progress(done, total)
    if todo:
        seconds = time.perf_counter() - started
        rate = done / max(seconds, 1e-9)
        log.info("%s: %s tokens at %s tokens/s", cache.spec.role, f"{done:,}", f"{rate:,.0f}")
        record_throughput(ws, "cache build", done, seconds, hook_passes=1, full_passes=0)
    finalize(cache)
    return cache.status(shard_rows)


def prepare_build(
    cache: SparseActivationStore, ws: Workspace, rows: int, shard: tuple[int, int], shard_rows: int
) -> tuple[Int[np.ndarray, "rows ctx"], list[tuple[int, int]]]:
    """Recover, write the token rows and the manifest; the token rows and the shard row
    ranges still to build (every n-th from the i-th with `shard=(i, n)`)."""
    index, count = shard
    requested = max(rows, cache.rows_requested())
    cache.folder.mkdir(parents=True, exist_ok=True)
    recover(cache)
    tokens = ensure_tokens(cache, ws, requested)
    tokenizer = ws.tokenizer
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    cache.write_manifest(requested, sorted({i for i in special if i is not None}))
    quarantine_corrupt_shards(cache)
    complete = set(cache.complete_shards())
    todo = [
        r
        for i, r in enumerate(cache.plan(requested, shard_rows))
        if i % count == index and r not in complete
    ]
    return tokens, todo


def recover(cache: SparseActivationStore) -> None:
    """Undo what a killed process left: temporary files and folders (of this version and
    earlier ones), a half-swapped CSC copy, shards already folded into it; move a damaged
    CSC copy aside so the build redoes its rows. Only under `build_lock`."""
    leftovers = [
        *cache.folder.glob(".tmp-*"),
        *cache.folder.glob("*.partial"),
        *cache.folder.glob(".tokens-*.npy"),
        *cache.folder.glob(".manifest.json-*"),
        *cache.shards_dir.glob(".tmp-*"),
    ]
    for leftover in leftovers:
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    for old in cache.folder.glob(".old-csc-*"):
        if cache.csc_dir.exists():
            shutil.rmtree(old)
        else:
            old.rename(cache.csc_dir)
    if cache.csc_dir.exists() and (problem := cache.csc_problem()):
        aside = cache.folder / f"csc.damaged-{os.getpid()}"
        cache.csc_dir.rename(aside)
        log.warning("Damaged CSC copy (%s) moved aside as %s; rebuilding.", problem, aside.name)
    final = cache.rows_final()
    for start, end in cache.complete_shards():
        if end <= final:  # folded before a kill stopped their deletion
            shutil.rmtree(cache.shard_folder(start, end))


def ensure_tokens(
    cache: SparseActivationStore, ws: Workspace, rows: int
) -> Int[np.ndarray, "rows ctx"]:
    old = None
    if cache.tokens_path.exists():
        try:
            old = np.load(cache.tokens_path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            log.warning("%s is unreadable (%s); rebuilding it.", cache.tokens_path, exc)
        if old is not None and old.shape[0] >= rows:
            return np.array(old[:rows])
    train, _ = ws.documents_split(cache.spec.role)
    tokens = ws.token_rows(train, cache.spec.context_length, rows, cache.spec.seed)
    if old is not None and not np.array_equal(tokens[: len(old)], old):
        raise CacheError(
            f"{cache.tokens_path} does not match the rows rebuilt from the corpus. "
            "Move the folder away and rebuild."
        )
    save_array(cache.tokens_path, tokens)
    return tokens


def _build_shard(
    cache: SparseActivationStore,
    ws: Workspace,
    tokens: Int[np.ndarray, "rows ctx"],
    start: int,
    end: int,
    batch_size: int,
) -> None:
    shard = encode_rows(ws, tokens[start:end], batch_size)
    write_shard(cache.shards_dir, start, end, shard, cache.spec.d_sae)


def encode_rows(ws: Workspace, rows: Int[np.ndarray, "rows ctx"], batch_size: int) -> Shard:
    """One shard's arrays (CSR over the rows' tokens), `batch_size` rows per forward pass."""
    counts, features, values = [], [], []
    adapter = adapter_for(ws.sae)
    for first in range(0, len(rows), batch_size):
        batch = torch.from_numpy(rows[first : first + batch_size]).long()
        resid = ws.residual(batch)
        count, feature, value = adapter.sparse_encode(resid.reshape(-1, resid.shape[-1]))
        counts.append(count)
        features.append(feature)
        values.append(value)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return indptr, np.concatenate(features), np.concatenate(values)


def quarantine_corrupt_shards(cache: SparseActivationStore) -> list[str]:
    """Rename unreadable shards aside (never delete) so the build recomputes them."""
    moved = []
    for start, end in cache.complete_shards():
        try:
            cache.read_shard(start, end)
        except CacheError as exc:
            folder = cache.shard_folder(start, end)
            folder.rename(folder.with_name(f"{folder.name}.corrupt-{os.getpid()}"))
            log.warning("%s Moved aside as %s.corrupt-*; rebuilding it.", exc, folder.name)
            moved.append(folder.name)
    return moved


def finalize(cache: SparseActivationStore) -> bool:
    """Fold contiguous complete shards into the feature-major copy. True if final."""
    requested = cache.rows_requested()
    final = cache.rows_final()
    if final >= requested:
        return True
    complete = dict(cache.complete_shards())
    ranges, position = [], final
    while position < requested and position in complete:
        ranges.append((position, complete[position]))
        position = complete[position]
    if position < requested:
        return False
    d_sae, ctx = cache.spec.d_sae, cache.spec.context_length
    parts_feature, parts_token, parts_value = [], [], []
    if final:
        indptr, token, value = cache.csc()
        parts_feature.append(np.repeat(np.arange(d_sae, dtype=np.uint32), np.diff(indptr)))
        parts_token.append(np.asarray(token))
        parts_value.append(np.asarray(value))
    for start, end in ranges:
        indptr, feature, value = cache.read_shard(start, end)
        local = np.repeat(np.arange(len(indptr) - 1, dtype=np.uint32), np.diff(indptr))
        parts_feature.append(feature.astype(np.uint32))
        parts_token.append(local + np.uint32(start * ctx))
        parts_value.append(value)
    feature = np.concatenate(parts_feature)
    order = np.argsort(feature, kind="stable")
    counts = np.bincount(feature, minlength=d_sae)
    tmp = cache.folder / f".tmp-csc-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "indptr.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    np.save(tmp / "token.npy", np.concatenate(parts_token)[order])
    np.save(tmp / "value.npy", np.concatenate(parts_value)[order])
    (tmp / "meta.json").write_text(json.dumps({"rows": requested}) + "\n")
    old = cache.folder / f".old-csc-{os.getpid()}"
    if cache.csc_dir.exists():
        os.rename(cache.csc_dir, old)
    os.rename(tmp, cache.csc_dir)
    shutil.rmtree(old, ignore_errors=True)
    for start, end in ranges:
        shutil.rmtree(cache.shard_folder(start, end))
    return True


def pending_caches(ws: Workspace) -> list[SparseActivationStore]:
    """The workspace's caches that hold fewer final rows than its budgets ask."""
    return [c for c in caches_for(ws) if c.rows_final() < default_rows(ws, c.spec.role)]


def build_estimate(ws: Workspace, caches: list[SparseActivationStore]) -> str:
    """How long building `caches` to their budgets should take here (from throughput
    measured on this machine), or that nothing has been measured yet."""
    rows = sum(max(default_rows(ws, c.spec.role) - c.rows_final(), 0) for c in caches)
    tokens = rows * ws.config.budgets.context_length
    return estimate(ws, "cache build", tokens, hook_passes=1, full_passes=0)


def build_caches(
    ws: Workspace,
    caches: list[SparseActivationStore] | None = None,
    rows: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **options,
) -> list[CacheStatus]:
    """Build each cache (all of the workspace's by default) to `rows` or its budget;
    `progress` gets (role, tokens done, tokens to do); `options` go to `build`."""
    statuses = []
    for cache in list(caches_for(ws)) if caches is None else caches:
        role = cache.spec.role

        def report(done: int, total: int, role: str = role) -> None:
            if progress is not None:
                progress(role, done, total)

        wanted = rows or default_rows(ws, role)
        statuses.append(build(cache, ws, wanted, progress=report, **options))
    return statuses
