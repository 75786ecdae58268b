"""`cache build | status | merge`: the sparse activation caches (docs/cache-format.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cache.spec import DEFAULT_SHARD_ROWS
from core.cli.common import Subcommands, TokenBars, command, open_workspace
from core.errors import UserError


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected i/n, e.g. 0/4") from exc
    return index, count


def _build(args: argparse.Namespace) -> None:
    import torch

    from core.cache.build import build_caches, check_build_arguments
    from core.cache.store import caches_for

    rows = 1 if args.rows is None else args.rows  # None: each corpus's budget
    check_build_arguments(rows, args.shard, args.shard_rows, args.batch_size)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be ≥ 1, not {args.threads}.")
        torch.set_num_threads(args.threads)
    if args.ray is not None:
        from core.scale.cluster import check_address

        check_address(args.ray or None)
    ws = open_workspace(args)
    report = TokenBars()
    caches = list(caches_for(ws, args.corpus))
    options = {"shard": args.shard, "shard_rows": args.shard_rows, "batch_size": args.batch_size}
    if args.ray is not None:
        from core.scale.cli import build_on_ray

        statuses = build_on_ray(ws, caches, args, report, options)
    else:
        statuses = build_caches(ws, caches, args.rows, report, **options)
    report.close()
    for status in statuses:
        print(status.describe())


def _status(args: argparse.Namespace) -> None:
    from core.cache.store import caches_for

    for cache in caches_for(open_workspace(args)):
        print(f"{cache.spec.role}: {cache.status().describe()}")


def _merge(args: argparse.Namespace) -> None:
    from core.cache.merge import merge_from
    from core.cache.store import caches_for

    for cache in caches_for(open_workspace(args), args.corpus):
        imported = merge_from(cache, [Path(p) for p in args.sources])
        print(f"{cache.spec.role}: imported {imported} shards; {cache.status().describe()}")


def add_commands(sub: Subcommands) -> None:
    cache = sub.add_parser(
        "cache",
        help="Sparse SAE activation caches: build, status, merge.",
        description="Sparse SAE activation caches (format: docs/cache-format.md).",
    )
    group = cache.add_subparsers(dest="cache_command", required=True)
    build = command(group, "build", _build, "Build, resume or extend the caches.")
    build.add_argument("--corpus", choices=["forget", "retain", "all"], default="all")
    build.add_argument("--rows", type=int, help="rows of context_length tokens (default: budgets)")
    build.add_argument("--shard", type=_parse_shard, default=(0, 1), help="build part i of n")
    build.add_argument(
        "--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, help="rows per shard file"
    )
    build.add_argument("--batch-size", type=int, default=8, help="rows per forward pass")
    build.add_argument(
        "--threads", type=int, help="torch threads (default: torch's; with --ray 1 per worker)"
    )
    build.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="shards as Ray tasks on the cluster at ADDRESS (alone: this machine); "
        "docs/scale-out.md",
    )
    build.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray worker")
    build.add_argument(
        "--return-shards",
        action="store_true",
        help="with --ray: workers send shards to this process (no shared filesystem)",
    )
    command(group, "status", _status, "Say what is complete in each cache.")
    merge = command(group, "merge", _merge, "Join shards built with --shard i/n.")
    merge.add_argument("sources", nargs="+", help="cache folders or cache roots to import from")
    merge.add_argument("--corpus", choices=["forget", "retain", "all"], default="all")
