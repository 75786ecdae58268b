"""`cache build --ray`: the shards of each cache computed on Ray actors, then finalized by the
driver exactly like the serial build, so the files are byte-identical to it.

The driver tokenizes (it never loads the model), writes the token rows and the manifest,
and sends each shard's token ids to an actor. An actor that sees the driver's probe file in
the cache folder (a shared filesystem) writes its shard there itself, whole or not at all;
any other actor returns the shard's sparse arrays and the driver writes them. A failed call
stops the build; complete shards are kept and the next build resumes from them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.cache.build import build_lock, check_build_arguments, finalize, prepare_build, recover
from core.cache.shards import write_shard
from core.cache.spec import DEFAULT_SHARD_ROWS, default_rows
from core.cache.store import CacheStatus, SparseActivationStore, caches_for, resolved
from core.scale.cluster import WorkerPool
from core.scale.worker import ShardTarget, WorkspaceRef

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

Progress = Callable[[str, int, int], None]  # (role, tokens done, tokens to do)


def build_caches_on_ray(
    ws: Workspace,
    pool: WorkerPool,
    caches: list[SparseActivationStore] | None = None,
    rows: int | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
    shard_rows: int = DEFAULT_SHARD_ROWS,
    batch_size: int = 8,
    shared: bool | None = None,
) -> list[CacheStatus]:
    """Like core.cache.build.build_caches, each shard a call on one of `pool`'s actors.
    `shared`: None probes whether each worker sees the cache folder; False always returns
    the shards to the driver."""
    ref = WorkspaceRef.of(ws)
    statuses = []
    for asked in list(caches_for(ws)) if caches is None else caches:
        wanted = rows or default_rows(ws, asked.spec.role)
        check_build_arguments(wanted, shard, shard_rows, batch_size)
        cache = resolved(asked, ws)
        with build_lock(cache):  # the actors write shards while the driver holds it
            _build(cache, ws, ref, pool, wanted, shard, shard_rows, batch_size, shared, progress)
        statuses.append(cache.status(shard_rows))
    return statuses


def _build(
    cache: SparseActivationStore,
    ws: Workspace,
    ref: WorkspaceRef,
    pool: WorkerPool,
    rows: int,
    shard: tuple[int, int],
    shard_rows: int,
    batch_size: int,
    shared: bool | None,
    progress: Progress | None,
) -> None:
    role = cache.spec.role
    tokens, todo = prepare_build(cache, ws, rows, shard, shard_rows)
    token = secrets.token_hex(8)
    probe = cache.folder / f".tmp-ray-probe-{token}"  # `recover` clears a left-over one
    if shared is not False:
        probe.write_text(token)
    target = ShardTarget(str(cache.shards_dir), str(probe), token, cache.spec.d_sae)
    cache.shards_dir.mkdir(parents=True, exist_ok=True)
    ctx = tokens.shape[1]
    total = sum(end - start for start, end in todo) * ctx
    done = 0

    def written(index: int, arrays: tuple | None) -> None:
        nonlocal done
        start, end = todo[index]
        if arrays is not None:
            write_shard(cache.shards_dir, start, end, arrays, cache.spec.d_sae)
        done += (end - start) * ctx
        if progress is not None:
            progress(role, done, total)

    calls = [
        ("encode_shard", (ref, start, tokens[start:end], batch_size, target)) for start, end in todo
    ]
    try:
        pool.run(calls, written)
    finally:
        probe.unlink(missing_ok=True)
        recover(cache)  # temporary folders of killed attempts
    finalize(cache)
