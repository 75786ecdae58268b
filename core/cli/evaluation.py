"""Commands that measure interventions: eval, sweep, screen, the known-question filter, and
clean vs intervened generation."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from core.cli.common import (
    Subcommands,
    add_scoring_flags,
    check_out,
    chosen_features,
    command,
    open_workspace,
    progress_printer,
    settings,
    write_out,
)
from core.errors import UserError
from core.evaluation.protocol import look_note, overlap_note
from core.evaluation.report_rows import format_point, format_score, metric_rows, provenance_line
from core.interventions.calibration import CALIBRATIONS, RETAIN_ROWS, bound_gate, describe
from core.interventions.edits import METHODS, make_intervention
from core.interventions.gate import GATE_RULES
from core.labels.store import LabelStore


def _eval(args: argparse.Namespace) -> None:
    from core.evaluation.evaluator import Evaluator

    if args.save and not args.set:
        raise UserError(
            "--save keeps the result with a saved feature set: give --set NAME instead of "
            "--features (save the features as a set first, on the Features page or with "
            "`attribute --save-set NAME`)."
        )
    if args.out:
        check_out(Path(args.out))
    ws = open_workspace(args)
    evaluator = Evaluator(ws, settings(args, ws))
    chosen = chosen_features(args, ws)
    overlap_note(evaluator.protocol, chosen.chosen_on, args.allow_overlap)  # refused up front
    gate = None
    store = LabelStore.for_workspace(ws) if args.set else None
    kept = store.get_set(args.set).gate if store else None
    if args.gate is not None:
        features, on = list(chosen.features), args.gate_calibration
        gate, _ = evaluator.gate(features, args.gate, args.gate_rule, on)
    elif kept is not None:  # the set's own gate, as saved or imported
        gate = bound_gate(ws, kept, chosen.features)
        print(f"gated as the set keeps it, rule '{gate.rule}'")
    if gate is not None:
        print(f"gate: {describe(gate)}")
    iv = make_intervention(
        ws,
        list(chosen.features),
        chosen.values(args.c),
        args.method,
        1.0,
        not args.edit_bos,
        gate=gate,
    )
    found = evaluator.evaluate(iv, progress_printer(), chosen.chosen_on, args.allow_overlap)
    result = evaluator.look(iv, found)
    if store and args.save:
        summary = {k: v for k, v in result.items() if k != "questions"}
        store.add_results(args.set, summary, gate=None if gate is None else asdict(gate))
    print(f"{ws.name}: {len(chosen.features)} features, {args.method}, c = {args.c:g}")
    for row in metric_rows(result["metrics"]):
        print(
            f"  {row['measure']} (n = {row['n']}): {row['baseline']} -> {row['intervened']}; "
            f"change {row['change']}" + (f"; {row['test']}" if row["test"] else "")
        )
    for warning in result["warnings"]:
        print(f"note: {warning}")
    if "optimistic" in result:
        print(f"optimistic: {result['optimistic']}")
    print(f"{look_note(result['looks'])}.")
    print(provenance_line(result["provenance"], args.method, not args.edit_bos))
    if args.out:
        write_out(args.out, result)


def _sweep(args: argparse.Namespace) -> None:
    from core.evaluation.evaluator import Evaluator
    from core.sweeps.grid import SweepConfig
    from core.sweeps.run import sweep

    config = SweepConfig.from_text(
        args.thresholds,
        args.n,
        args.c,
        args.gates,
        variant=args.variant,
        method=args.method,
        skip_bos=not args.edit_bos,
        gate_rule=args.gate_rule,
        gate_calibration=args.gate_calibration,
    )
    config.check()
    check_out(Path(args.out))
    ws = open_workspace(args)

    def report(done: int, total: int, point: dict) -> None:
        gate = point["gate_percentile"]
        gate = "ungated" if gate is None else f"gate p{gate:g}"
        what = f"thr {point['threshold']} n {point['n']} c {point['c']} {gate}"
        print(f"[{done}/{total}] {what}: {_point_said(point)}")

    if args.ray is not None:
        from core.scale.cli import evaluations_on_ray
        from core.scale.sweeps import sweep_on_ray

        sweep = evaluations_on_ray(args, sweep_on_ray)
    result = sweep(Evaluator(ws, settings(args, ws)), config, report)
    if result["held_out_score"] is not None or result["questions"] == "report":
        held_out = format_score(result["held_out_score"], result["points"], held_out=True)
        print(f"Held-out score: {held_out}")
    print(f"SAEBench score: {format_score(result['saebench_score'], result['points'])}")
    write_out(args.out, result)


def _point_said(point: dict) -> str:
    return "skipped" if "skipped" in point else format_point(point)


def _drop(single: dict) -> str:
    """A screened feature's side-effect drop with its interval, n and verdict."""
    if single["side_drop"] is None:
        return "not measured, dropped"
    low, high = single["side_drop_ci"]
    n = single[f"mmlu_{single['side_questions']}_n"]
    verdict = "kept" if single["kept"] else "dropped"
    return f"{single['side_drop']:+.3f} [{low:+.3f}, {high:+.3f}] (n = {n}), {verdict}"


def _screen(args: argparse.Namespace) -> None:
    from core.evaluation.evaluator import Evaluator
    from core.selection.screening import ScreenConfig, screen

    check_out(Path(args.out))
    ws = open_workspace(args)
    chosen = chosen_features(args, ws)
    config = ScreenConfig(chosen.features, args.c, args.tolerance, args.method, not args.edit_bos)

    def report(done: int, total: int, point: dict) -> None:
        if "feature" in point:
            what = f"feature {point['feature']} alone: MMLU drop {_drop(point)}"
        else:
            what = f"first {point['k']} together"
        print(f"[{done}/{total}] {what}: {_point_said(point)}")

    if args.ray is not None:
        from core.scale.cli import evaluations_on_ray
        from core.scale.sweeps import screen_on_ray

        screen = evaluations_on_ray(args, screen_on_ray)
    result = screen(Evaluator(ws, settings(args, ws)), config, report)
    print(f"kept {len(result['kept'])} of {len(chosen.features)}: {result['kept']}")
    write_out(args.out, result)


def _known(args: argparse.Namespace) -> None:
    from core.evaluation.evaluator import Evaluator
    from core.evaluation.known import VARIANTS
    from core.evaluation.settings import FORGET, SIDE

    ws = open_workspace(args)
    evaluator = Evaluator(ws, settings(args, ws))
    if args.ray is not None:
        from core.scale.cli import known_on_ray_cli

        known_on_ray_cli(args, evaluator)
    report = progress_printer()
    for role in (FORGET, SIDE):
        known = evaluator.known(role, report)
        print(f"\n{role}: {len(known.questions)} questions scored in 24 orderings")
        for variant in VARIANTS:
            if variant == "correct-iff-question" and known.right_without_question is None:
                continue
            print(f"  {variant}: {len(known.indices(variant))} known")


def _generate(args: argparse.Namespace) -> None:
    from core.interventions.generation import MAX_NEW_TOKENS, generate

    if not 1 <= args.tokens <= MAX_NEW_TOKENS:
        raise UserError(f"--tokens must be between 1 and {MAX_NEW_TOKENS}, not {args.tokens}.")
    ws = open_workspace(args)
    chosen = chosen_features(args, ws)
    iv = make_intervention(
        ws, list(chosen.features), chosen.values(args.c), args.method, 1.0, not args.edit_bos
    )
    print(f"clean:   {args.prompt}{generate(ws, args.prompt, None, args.tokens)}")
    print(f"clamped: {args.prompt}{generate(ws, args.prompt, iv, args.tokens)}")


def add_commands(sub: Subcommands) -> None:
    evaluate = command(sub, "eval", _eval, "Score WMDP-bio and side effects under a clamp.")
    sweep = command(sub, "sweep", _sweep, "Evaluate thresholds x n x c (memoised points).")
    known = command(sub, "known", _known, "Find the known questions (24 orderings each).")
    gen = command(sub, "generate", _generate, "Greedy text, clean vs intervened.")
    screen = command(
        sub, "screen", _screen, "Keep features without side effects alone, then add them up."
    )
    for cmd in (evaluate, gen, screen):
        cmd.add_argument("--set", help="a saved feature set (its multipliers scale --c)")
        cmd.add_argument("--features", help="comma-separated feature ids")
        cmd.add_argument("--c", type=float, default=20.0, help="clamp size c (or scale m)")
    for cmd in (evaluate, sweep, gen, screen):
        cmd.add_argument("--method", choices=list(METHODS), default="clamp")
        cmd.add_argument("--edit-bos", action="store_true", help="edit position 0 too (authors)")
    add_scoring_flags(evaluate, split="selection")  # tuning; --report looks once, counted
    for cmd in (sweep, known):
        add_scoring_flags(cmd)
    add_scoring_flags(screen, split="selection")
    for cmd in (sweep, screen, known):
        cmd.add_argument(
            "--ray",
            nargs="?",
            const="",
            metavar="ADDRESS",
            help="evaluations on the Ray cluster at ADDRESS (alone: this machine)",
        )
    evaluate.add_argument(
        "--gate",
        type=float,
        metavar="PERCENTILE",
        help="gate the edit (DSG, METHOD §10): alpha = this percentile of rho (on the text "
        "--gate-calibration names)",
    )
    for cmd in (evaluate, sweep):
        cmd.add_argument(
            "--gate-rule", choices=list(GATE_RULES), default="per feature", help="rule inside"
        )
        cmd.add_argument(
            "--gate-calibration",
            choices=list(CALIBRATIONS),
            default=RETAIN_ROWS,
            help="what alpha's percentile is taken over: "
            + "; ".join(f"{k}: {v}" for k, v in CALIBRATIONS.items()),
        )
    evaluate.add_argument(
        "--save", action="store_true", help="store the result (and a --gate) in --set"
    )
    evaluate.add_argument("--out", help="write the full result (with drill-down) as JSON")
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="score on the held-out report split (--split report): the result says after how "
        "many selection-split runs of these features it came",
    )
    evaluate.add_argument(
        "--allow-overlap",
        action="store_true",
        help="score a set on questions that chose it (its selection record's), labelled optimistic",
    )
    sweep.add_argument("--thresholds", default="0.01", help="retain thresholds, e.g. 0.001,0.01")
    sweep.add_argument("--n", default="10,20", help="numbers of features, e.g. 10,20,50")
    sweep.add_argument("--c", default="20,50", help="clamp sizes, e.g. 20,50,100")
    sweep.add_argument(
        "--gates",
        default="off",
        help='gate percentiles as an axis, "off" for ungated, e.g. off,95 (METHOD §10)',
    )
    sweep.add_argument("--variant", choices=["saebench", "authors"], default="saebench")
    sweep.add_argument("--out", required=True, help="JSON file for the points")
    screen.add_argument(
        "--tolerance", type=float, default=0.0, help="largest side-effect accuracy drop kept"
    )
    screen.add_argument("--out", required=True, help="JSON file for the screening")
    gen.add_argument("--prompt", default="The mitochondria is the", help="text to continue")
    gen.add_argument("--tokens", type=int, default=24, help="new tokens (at most 64)")
