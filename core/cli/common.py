"""What every command group shares: registering a command, the workspace option, evaluation
settings and feature choices from flags, progress on the terminal, JSON outputs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from core.base.config_files import default_workspace
from core.base.records import write_atomic
from core.errors import UserError
from core.evaluation.settings import EvalSettings
from core.labels.store import LabelStore
from core.selection import sources
from core.selection.sources import FeatureChoice
from core.workspace.workspace import Workspace

Handler = Callable[[argparse.Namespace], None]
Subcommands = argparse._SubParsersAction  # what add_subparsers returns


def command(
    group: Subcommands, name: str, func: Handler, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand that runs `func`; every one but `workspaces` takes --workspace."""
    cmd = group.add_parser(name, help=help_text, description=help_text)
    cmd.set_defaults(func=func)
    if name != "workspaces":
        cmd.add_argument(
            "--workspace",
            default=None,
            help=f"preset name or path to a TOML config (default: {default_workspace()})",
        )
    return cmd


def add_scoring_flags(cmd: argparse.ArgumentParser, split: str = "report") -> None:
    """The flags that make EvalSettings (see `settings`); `split` is the command's default
    (what chooses features runs on "selection", what reports on "report")."""
    from core.evaluation.known import VARIANTS
    from core.evaluation.mcq import SCORINGS
    from core.evaluation.settings import SPLITS

    cmd.add_argument("--scoring", choices=list(SCORINGS), default="letter")
    cmd.add_argument("--known-variant", choices=list(VARIANTS), default="correct")
    cmd.add_argument(
        "--split",
        choices=list(SPLITS),
        default=split,
        help="questions used: the seeded report or selection half of the sample, or all "
        f"(optimistic); default {split}",
    )
    cmd.add_argument(
        "--questions",
        type=int,
        help="questions per set, a seeded sample (0 = all; default 100 on a CPU, all on a GPU)",
    )
    cmd.add_argument(
        "--loss-rows", type=int, help="rows of text per loss set (default 64 on a CPU, 1600 else)"
    )
    cmd.add_argument("--skip-known", action="store_true", help="do not run the 24-ordering filter")
    cmd.add_argument(
        "--shots",
        type=int,
        default=0,
        metavar="K",
        help="also score with K solved examples before each question, beside k = 0 (METHOD §12)",
    )


def open_workspace(args: argparse.Namespace) -> Workspace:
    return Workspace.open(args.workspace)


def settings(args: argparse.Namespace, ws: Workspace) -> EvalSettings:
    """Evaluation settings from the scoring flags (device defaults for the rest)."""
    split = "report" if getattr(args, "report", False) else args.split  # eval's --report
    if split != args.split and args.split != "selection":
        raise UserError(f"--report is --split report: give one, not --split {args.split}.")
    overrides: dict[str, Any] = {
        "scoring": args.scoring,
        "known_variant": args.known_variant,
        "split": split,
        "known_filter": not args.skip_known,
        "shots": args.shots,
    }
    if args.loss_rows is not None:
        overrides["loss_rows"] = args.loss_rows
    if args.questions is not None:
        if args.questions < 0:
            raise UserError(f"--questions must be ≥ 0 (0 = all), not {args.questions}.")
        overrides["question_limit"] = args.questions or None
    found = EvalSettings.for_device(ws.device, **overrides)
    found.check()
    return found


def chosen_features(args: argparse.Namespace, ws: Workspace) -> FeatureChoice:
    """The features of --set (with its multipliers) or --features (multipliers 1)."""
    if bool(args.set) == bool(args.features):
        raise UserError("Give exactly one of --set NAME or --features 1,2,3.")
    if args.set:
        return sources.from_set(LabelStore.for_workspace(ws).get_set(args.set))
    return sources.from_ids(args.features)


def progress_printer() -> Callable[[str, float], None]:
    """A terminal bar for (stage, fraction done) reports."""
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%")

    def report(stage: str, fraction: float) -> None:
        bar.set_description(stage)
        bar.n = round(100 * fraction)
        bar.refresh()

    return report


class TokenBars:
    """A terminal bar per cache being built, (role, tokens done, tokens to do) reports, with
    tokens/s and time left; `close()` ends them."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, role: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.setdefault(
            role, tqdm(total=total, unit="tok", unit_scale=True, desc=f"building {role} cache")
        )
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def check_out(path: Path) -> None:
    """Refuse an output path whose folder does not exist, before any work is done."""
    if not path.parent.is_dir():
        raise UserError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    if path.is_dir():
        raise UserError(f"Cannot write {path}: it is a folder.")


def write_file(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a command's output file whole or not at all (a temporary file, renamed; a
    device such as /dev/stdout written as it is); a write that fails (a full disk) is one
    line and leaves no partial file."""
    try:
        if path.exists() and not path.is_file():
            with open(path, "wb") as handle:
                write(handle)
        else:
            write_atomic(path, write)
    except OSError as exc:
        raise UserError(
            f"Could not write {path}: {exc.strerror or exc}. Nothing of it was kept."
        ) from exc


def write_out(path: str, record: Any) -> None:
    """Write a command's JSON result (indented) and say where."""
    text = json.dumps(record, indent=2) + "\n"
    write_file(Path(path), lambda handle: handle.write(text.encode()))
    print(f"wrote {path}")
