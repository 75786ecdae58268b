"""`effects`: what clamping each feature alone does (METHOD §13), headless and memoised."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.common import Subcommands, check_out, command, open_workspace, write_file
from core.errors import UserError

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace


def _number(row: dict, column: str) -> str:
    """A mean effect ± its SE, or "not measured"."""
    value, se = row[column], row[f"{column}_se"]
    if math.isnan(value):
        return "not measured"
    return f"{value:+.4f}" + ("" if math.isnan(se) else f" ± {se:.4f}")


def _ratio(row: dict) -> str:
    if math.isnan(row["ratio"]):
        return "ratio undefined (retain effect 0)"
    if math.isnan(row["ratio_low"]):
        return f"ratio {row['ratio']:+.2f} (interval unbounded)"
    return f"ratio {row['ratio']:+.2f} [{row['ratio_low']:+.2f}, {row['ratio_high']:+.2f}]"


def feature_scale(ws: Workspace) -> float:
    """A c on the SAE's own scale: twice the median of the features' largest activation on
    forget text (`sources.typical_clamp`), from the workspace's statistics."""
    from core.features.stats import workspace_stats
    from core.selection.sources import typical_clamp

    table, _ = workspace_stats(ws)
    return typical_clamp(table, table["feature"].tolist())


def _effects(args: argparse.Namespace) -> None:
    from core.effects.table import EffectSettings, feature_effects

    out = Path(args.out) if args.out else None
    if out is not None:
        check_out(out)
    if args.show < 0:
        raise UserError(f"--show must be 0 or more, not {args.show}.")
    ws = open_workspace(args)
    c = 1.0 if args.c is None else args.c  # the default's stand-in while the flags are checked
    settings = EffectSettings(args.rows, args.context, c, args.top_k, not args.edit_bos)
    settings.check(ws.sae_width())  # before the default is read from the caches' statistics
    if args.c is None:
        settings = replace(settings, c=feature_scale(ws))
    effects = feature_effects(
        ws, settings, lambda done, total: print(f"[{done}/{total}] rows", file=sys.stderr)
    )
    rows, bos = effects.provenance["rows"], effects.provenance["bos"]
    print(
        f"Clamping each feature alone to -{settings.c:g} where it fires ({bos}) on "
        f"{rows['forget']} forget and {rows['retain']} retain rows x {settings.context_length} "
        "tokens from the training documents: change in each row's mean loss, ± SE over rows."
    )
    for name, found in effects.agreement().items():
        said = (
            f"Spearman {found['spearman']:+.2f} (n = {found['n']} measured features, "
            f"p = {found['p']:.2g})"
            if found["spearman"] is not None
            else f"not computed ({found['n']} measured features; it needs 3)"
        )
        print(f"estimate vs measured on {name} text: {said}")
    table = effects.table()
    for row in (
        table.sort_values("forget_effect", ascending=False).head(args.show).to_dict("records")
    ):
        print(
            f"{int(row['feature']):>6}  estimated forget {_number(row, 'forget_effect')}"
            f"  retain {_number(row, 'retain_effect')}  {_ratio(row)}"
            f"  | measured forget {_number(row, 'measured_forget')}"
            f"  retain {_number(row, 'measured_retain')}"
        )
    if out is not None:
        text = table.to_csv(index=False, na_rep="not measured").encode()
        write_file(out, lambda handle: handle.write(text))
        print(f"wrote {out}")


def add_commands(sub: Subcommands) -> None:
    cmd = command(
        sub,
        "effects",
        _effects,
        "Estimate for every feature, and measure for the top candidates, the loss added on "
        "forget and retain text when it alone is clamped (METHOD §13); memoised.",
    )
    cmd.add_argument("--rows", type=int, default=16, help="rows per corpus (default 16)")
    cmd.add_argument("--context", type=int, default=128, help="tokens per row (default 128)")
    cmd.add_argument(
        "--c",
        type=float,
        help="clamp to -c where it fires (default: twice the median feature's largest "
        "activation on forget text, the SAE's own scale)",
    )
    cmd.add_argument(
        "--top-k", type=int, default=100, help="measure the top K by estimated forget effect"
    )
    cmd.add_argument("--edit-bos", action="store_true", help="edit position 0 (BOS) too")
    cmd.add_argument("--show", type=int, default=20, help="print the top N (default 20)")
    cmd.add_argument("--out", help="write every feature's effects as CSV")
