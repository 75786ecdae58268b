"""`python -m core ...`: everything the app does, headless.

Every command takes `--workspace NAME` (a preset under configs/ or a path to a TOML file;
default: the offline workspace). Problems with input print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from core.base.environment import configure_environment
from core.cli import (
    cache,
    convert,
    effects,
    evaluation,
    explore,
    features,
    labels,
    relearn,
    reproduce,
    runs,
    workspace,
)
from core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    groups = (
        workspace,
        cache,
        features,
        explore,
        effects,
        labels,
        evaluation,
        relearn,
        runs,
        convert,
        reproduce,
    )
    for group in groups:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
