"""`runs`: the workspace's run history (every kept evaluation and sweep), two runs compared
side by side, and the settings that set a run up again on the intervention page."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlencode

from core.cli.common import Subcommands, command, open_workspace


def _table(rows: list[dict]) -> None:
    """Rows as aligned text, one field a line per row."""
    for row in rows:
        width = max(map(len, row))
        print("\n".join(f"  {name:<{width}}  {value}" for name, value in row.items()))
        print()


def _runs(args: argparse.Namespace) -> None:
    from core.labels.store import LabelStore
    from core.sweeps.history import paired_rows, restore_params, run_history, side_by_side

    ws = open_workspace(args)
    found = run_history(ws, LabelStore.for_workspace(ws))
    for notice in found.notices:
        print(notice, file=sys.stderr)
    if args.compare:
        a, b = (found.get(key) for key in args.compare)
        print(f"A = {a.key}, B = {b.key}\n")
        for row in side_by_side(a, b):
            print(f"  {row['field']:<28}  A: {row['A']}\n  {'':<28}  B: {row['B']}")
        if a.kind == b.kind == "evaluation":
            print("\nPaired differences (the questions both runs scored):\n")
            _table(paired_rows(a, b))
        return
    if args.url:
        params = restore_params(found.get(args.url))
        print(f"intervene?{urlencode(params)}")
        return
    for run in found.runs:
        _table([run.row()])
    print(f"{len(found.runs)} runs ({sum(r.kind == 'sweep' for r in found.runs)} sweeps)")


def add_commands(sub: Subcommands) -> None:
    cmd = command(
        sub, "runs", _runs, "The run history: every kept evaluation and sweep, newest first."
    )
    cmd.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="two runs side by side (a key's start)"
    )
    cmd.add_argument(
        "--url", metavar="RUN", help="the intervention page's URL query that restores a run"
    )
