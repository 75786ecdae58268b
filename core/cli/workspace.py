"""Commands about the workspace itself: list, info, prepare, train the SAE, SAE health."""

from __future__ import annotations

import argparse
import sys

from core.base.config_files import default_workspace, list_workspaces
from core.cli.common import Subcommands, TokenBars, command, open_workspace
from core.errors import UserError


def _workspaces(args: argparse.Namespace) -> None:
    for name in list_workspaces():
        marker = "*" if name == default_workspace() else " "
        print(f"{marker} {name}")


def _info(args: argparse.Namespace) -> None:
    ws = open_workspace(args)
    for key, value in ws.provenance().items():
        print(f"{key:>22}: {value}")
    problems = ws.problems()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)


def _prepare(args: argparse.Namespace) -> None:
    """Make the workspace usable: convert the model if needed, load model and SAE, check
    they fit, build the default activation caches."""
    from core.cache.build import build_caches

    ws = open_workspace(args)
    if args.if_needed and ws.is_prepared():
        print(f"ready: {ws.name} (prepared before)")
        return
    if problems := ws.problems():
        raise UserError(problems[0])
    sae = ws.sae
    print("building the activation caches (first run only):", flush=True)
    bars = TokenBars()
    statuses = build_caches(ws, progress=bars)
    bars.close()
    for status in statuses:
        print(status.describe())
    ws.mark_prepared()
    print(
        f"ready: {ws.name}: {ws.config.model.name} + SAE d_sae={sae.cfg.d_sae} at {ws.hook} "
        f"({ws.config.model.dtype}, {ws.device})"
    )


def _train_sae(args: argparse.Namespace) -> None:
    from core.sae.training import train_sae

    path = train_sae(open_workspace(args), fresh=args.fresh)
    print(f"saved: {path}")


def _health(args: argparse.Namespace) -> None:
    from core.sae.health import health_measured_at, sae_health, with_se

    if args.rows < 1:
        raise UserError(f"--rows must be ≥ 1, not {args.rows}.")
    ws = open_workspace(args)
    print(
        f"SAE health of {ws.name} ({ws.provenance()['sae']} at {ws.hook}), BOS excluded; "
        "± one standard error over rows"
    )
    for item in sae_health(ws, args.rows, recompute=args.recompute):
        print(
            f"{item.corpus:>14}: {item.rows} rows, {item.tokens:,} held-out tokens | "
            f"L0 {with_se(item.l0, item.l0_se, item.rows, 2)} | "
            f"FVE {with_se(item.fve, item.fve_se, item.rows)} "
            f"({with_se(item.fve_typical, item.fve_typical_se, item.rows)} without "
            f"{item.massive_tokens} massive-activation tokens) | dead {item.dead_features}/"
            f"{item.d_sae} | CE clean {item.ce_clean:.4f} spliced {item.ce_spliced:.4f} added "
            f"{with_se(item.ce_added, item.ce_added_se, item.rows, sign='+')}"
        )
    print(f"measured {health_measured_at(ws, args.rows)}")


def add_commands(sub: Subcommands) -> None:
    command(sub, "workspaces", _workspaces, "List the workspace presets (* = default).")
    command(sub, "info", _info, "Show a workspace's provenance and what stops it loading.")
    prepare = command(
        sub, "prepare", _prepare, "Load model and SAE, check they fit, build default caches."
    )
    prepare.add_argument(
        "--if-needed", action="store_true", help="do nothing if prepared with this config before"
    )
    train = command(
        sub,
        "train-sae",
        _train_sae,
        "Train the workspace's own SAE (resumable; deterministic with the config's seed).",
    )
    train.add_argument("--fresh", action="store_true", help="discard checkpoints, keep activations")
    health = command(sub, "health", _health, "SAE health on held-out text (cached).")
    health.add_argument("--rows", type=int, default=64, help="held-out rows per corpus")
    health.add_argument("--recompute", action="store_true", help="measure again, not the kept")
