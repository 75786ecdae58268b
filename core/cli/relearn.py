"""`relearn`: does the unlearning survive a little fine-tuning on forget text (METHOD §14)?
Headless and memoised."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from core.cli.common import (
    Subcommands,
    check_out,
    chosen_features,
    command,
    open_workspace,
    progress_printer,
    write_out,
)
from core.interventions.edits import METHODS, Intervention
from core.interventions.gate import GATE_RULES


def _said(value: float, se: float | None) -> str:
    return f"{value:+.4f}" + ("" if se is None or math.isnan(se) else f" ± {se:.4f}")


def _share(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or math.isnan(value):
        return "not defined (the edit adds no forget loss)"
    if not isinstance(interval, tuple | list):  # None: unbounded
        return f"{value:.0%} (interval unbounded: the edit's own effect is not clear of 0)"
    return f"{value:.0%} [{interval[0]:.0%}, {interval[1]:.0%}]"


def _relearn(args: argparse.Namespace) -> None:
    from core.cli.effects import feature_scale
    from core.interventions.calibration import bound_gate, calibrate, describe
    from core.interventions.edits import make_intervention
    from core.labels.store import LabelStore
    from core.relearning.run import RelearnSettings, relearn, result_path
    from core.relearning.summary import SURVIVES, accuracy_table, loss_table

    settings = RelearnSettings(
        steps=args.steps,
        rows=args.rows,
        context_length=args.context,
        batch_rows=args.batch_rows,
        lr=args.lr,
        kind="full" if args.full else "lora",
        rank=args.rank,
        checkpoints=args.checkpoints,
        eval_rows=args.eval_rows,
        mcq=args.mcq,
        seed=args.seed,
    )
    settings.check()
    if args.out:
        check_out(Path(args.out))
    ws = open_workspace(args)
    chosen = chosen_features(args, ws)
    Intervention(chosen.features).check(ws.sae_width())  # the ids, before c or a gate is found
    gate = None
    kept = LabelStore.for_workspace(ws).get_set(args.set).gate if args.set else None
    if args.gate is not None:
        gate = calibrate(ws, list(chosen.features), args.gate, args.gate_rule)
    elif kept is not None:
        gate = bound_gate(ws, kept, chosen.features)
    c = args.c if args.c is not None else feature_scale(ws)
    iv = make_intervention(
        ws, list(chosen.features), chosen.values(c), args.method, 1.0, not args.edit_bos, gate=gate
    )
    result = relearn(ws, iv, settings, progress_printer())
    edit = f"{len(iv.features)} features, {args.method}, c = {c:g}"
    print(f"\n{ws.name}: {edit}" + (f"; gate: {describe(gate)}" if gate else ", ungated"))
    print(
        f"fine-tuning: {result['provenance']['fine_tuning']}, {settings.steps} steps of "
        f"{settings.batch_rows} rows, lr {result['settings']['lr']:g}, seed {settings.seed}"
    )
    print("loss added over the clean model on held-out rows (mean per row ± SE):")
    for row in loss_table(result).to_dict("records"):
        print(_loss_line(row))
    print(f"survives: {SURVIVES}")
    accuracy = accuracy_table(result)
    if accuracy is None:
        print("question accuracy: not measured (give --mcq N)")
    else:
        for row in accuracy.to_dict("records"):
            print(f"  {row['arm']:>9} {row['questions']} (n = {row['n']}): {_accuracy(row)}")
    print(f"kept in {result_path(ws, iv, settings).parent} (tuned weights beside the result)")
    if args.out:
        write_out(args.out, result | {"table": loss_table(result).to_dict("records")})


def _added(row: dict, name: str) -> str:
    return f"{name} {_said(row[f'{name}_added'], row[f'{name}_added_se'])} (n = {row[f'{name}_n']})"


def _loss_line(row: dict) -> str:
    """One arm at one step: the loss added on each text, and what survives of the edit's."""
    line = (
        f"  {row['arm']:>9} step {row['step']:>4}: {_added(row, 'forget')}, {_added(row, 'retain')}"
    )
    if row["arm"] != "reference":
        line += f"; survives {_share(row['survives'], row['survives_ci'])}"
    if row["arm"] == "relearn" and "survives_vs_reference" in row:
        said = _share(row["survives_vs_reference"], row["survives_vs_reference_ci"])
        line += f"; beyond the reference arm {said}"
    return line


def _accuracy(row: dict) -> str:
    if not row["n"]:
        return "not measured (no questions)"
    low, high = row["gained_ci"]
    return (
        f"{row['before']:.0%} -> {row['after']:.0%}, change {row['gained']:+.0%} "
        f"[{low:+.0%}, {high:+.0%}]"
    )


def add_commands(sub: Subcommands) -> None:
    cmd = command(
        sub,
        "relearn",
        _relearn,
        "Fine-tune copies of the model on forget text with the edit active (and the controls) "
        "and measure how much of the unlearning survives (METHOD §14); memoised.",
    )
    cmd.add_argument("--set", help="a saved feature set (its multipliers scale --c; its gate)")
    cmd.add_argument("--features", help="comma-separated feature ids")
    cmd.add_argument(
        "--c",
        type=float,
        help="clamp size (default: twice the median feature's largest activation on forget "
        "text, the SAE's own scale)",
    )
    cmd.add_argument("--method", choices=list(METHODS), default="clamp")
    cmd.add_argument("--edit-bos", action="store_true", help="edit position 0 too")
    cmd.add_argument("--gate", type=float, metavar="PERCENTILE", help="gate the edit (DSG)")
    cmd.add_argument(
        "--gate-rule", choices=list(GATE_RULES), default="per feature", help="rule inside"
    )
    cmd.add_argument("--steps", type=int, default=20, help="fine-tuning steps per arm (20)")
    cmd.add_argument("--rows", type=int, default=32, help="training rows per arm (32)")
    cmd.add_argument("--context", type=int, default=64, help="tokens per training row (64)")
    cmd.add_argument("--batch-rows", type=int, default=4, help="rows per step (4)")
    cmd.add_argument("--lr", type=float, help="learning rate (LoRA 1e-4, full 1e-5)")
    cmd.add_argument("--full", action="store_true", help="tune every weight instead of LoRA")
    cmd.add_argument("--rank", type=int, default=8, help="LoRA rank (8)")
    cmd.add_argument("--checkpoints", type=int, default=4, help="measured steps after 0 (4)")
    cmd.add_argument("--eval-rows", type=int, default=16, help="held-out rows per text (16)")
    cmd.add_argument(
        "--mcq", type=int, default=0, metavar="N", help="also score N questions per set (0: no)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of rows, adapters and batches")
    cmd.add_argument("--out", help="write the whole result as JSON")
