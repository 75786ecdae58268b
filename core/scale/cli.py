"""What `--ray [ADDRESS]` does in the commands (core/cli): join the cluster (or start one
here), make the pool of model-holding actors, run, take the pool down. A terminal bar shows
what is done of what, with an ETA."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.scale.cache_build import build_caches_on_ray
from core.scale.cluster import WorkerPool, connect
from core.scale.known import known_on_ray
from core.scale.sweeps import restarts_note

if TYPE_CHECKING:
    from core.cache.store import CacheStatus, SparseActivationStore
    from core.evaluation.evaluator import Evaluator
    from core.workspace.workspace import Workspace


def pool_for(args: argparse.Namespace) -> WorkerPool:
    """Connect as `--ray` says and make one actor per worker the cluster has room for."""
    threads = getattr(args, "threads", None) or 1
    num_gpus = getattr(args, "num_gpus", 0.0)
    if num_gpus < 0:
        raise UserError(f"--num-gpus must be ≥ 0, not {num_gpus}.")
    connect(args.ray or None)
    return WorkerPool(threads=threads, num_gpus=num_gpus)


def build_on_ray(
    ws: Workspace,
    caches: list[SparseActivationStore],
    args: argparse.Namespace,
    progress: Callable[[str, int, int], None],
    options: dict[str, Any],
) -> list[CacheStatus]:
    shared = False if args.return_shards else None
    with pool_for(args) as pool:
        return build_caches_on_ray(ws, pool, caches, args.rows, progress, shared=shared, **options)


def evaluations_on_ray(args: argparse.Namespace, func: Callable) -> Callable:
    """`func` (core.scale.sweeps.sweep_on_ray or screen_on_ray) as the serial function is
    called, (evaluator, config, progress), with a bar of evaluations done instead of the
    serial per-point lines."""
    from tqdm import tqdm

    def run(evaluator: Evaluator, config: Any, _: object = None) -> dict:
        with pool_for(args) as pool:
            bar = tqdm(unit="eval", desc="evaluations on Ray")

            def report(done: int, total: int, point: dict) -> None:
                if bar.total != total or done < bar.n:  # screening: singles, then prefixes
                    bar.reset(total)
                bar.set_postfix_str(restarts_note(point).removeprefix("; "), refresh=False)
                bar.update(done - bar.n)

            try:
                return func(evaluator, config, pool, report)
            finally:
                bar.close()

    return run


def known_on_ray_cli(args: argparse.Namespace, evaluator: Evaluator) -> None:
    """Compute the known records on Ray (the command then reads them)."""
    from tqdm import tqdm

    with pool_for(args) as pool:
        bar = tqdm(unit="question", desc="known filter on Ray")

        def report(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            known_on_ray(evaluator, pool, report)
        finally:
            bar.close()
