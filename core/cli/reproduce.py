"""`reproduce`: the paper's table in one command, ours beside the references."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.common import Subcommands, check_out, command, open_workspace
from core.errors import UserError


def _reproduce(args: argparse.Namespace) -> None:
    from core.sweeps.reproduce import ReproduceConfig, reproduce
    from core.sweeps.reproduce_report import write_report

    for flag, value in (("--questions", args.questions), ("--loss-rows", args.loss_rows)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be ≥ 1, not {value}.")
    ws = open_workspace(args)
    out = Path(args.out or f"reproduce-{ws.name}.md")
    check_out(out)
    config = ReproduceConfig(
        args.reference, args.questions, args.loss_rows, args.allow_cpu, not args.skip_saebench
    )

    def report(done: int, total: int, point: dict) -> None:
        print(f"[{done}/{total}] thr {point['threshold']} n {point['n']} c {point['c']:g}")

    result = reproduce(ws, config, report)
    write_report(result, out)
    verdict = "reproduced" if result["reproduced"] else "NOT reproduced"
    print(f"{verdict}: wrote {out} (+ {out.with_suffix('.json').name})")
    if not result["reproduced"]:
        raise SystemExit(1)


def add_commands(sub: Subcommands) -> None:
    cmd = command(
        sub,
        "reproduce",
        _reproduce,
        "Run METHOD §8's points and SAEBench's 16 configs; write ours beside the paper's "
        "(exit 1 if a number falls outside its interval).",
    )
    cmd.add_argument("--out", help="the report (default reproduce-<workspace>.md here)")
    cmd.add_argument(
        "--reference", help="compare with this preset's numbers (default: the workspace's)"
    )
    cmd.add_argument("--questions", type=int, help="questions per set (default all)")
    cmd.add_argument("--loss-rows", type=int, help="rows of loss text (default 1600 on a GPU)")
    cmd.add_argument(
        "--allow-cpu", action="store_true", help="run on a CPU anyway (small budgets only)"
    )
    cmd.add_argument(
        "--skip-saebench", action="store_true", help="only the paper's points (9x quicker)"
    )
