"""`python -m core ...`: everything the app does, headless.

Every command takes `--workspace NAME` (a preset under configs/ or a path to a TOML file;
default: the offline workspace). Problems with input print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from core.config import default_workspace, list_workspaces
from core.environment import configure_environment
from core.errors import UserError
from core.records import write_json
from core.workspace import Workspace


def _cmd_workspaces(args: argparse.Namespace) -> None:
    for name in list_workspaces():
        marker = "*" if name == default_workspace() else " "
        print(f"{marker} {name}")


def _cmd_info(args: argparse.Namespace) -> None:
    ws = Workspace.open(args.workspace)
    for key, value in ws.provenance().items():
        print(f"{key:>22}: {value}")
    problems = ws.problems()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(2)


def _cmd_prepare(args: argparse.Namespace) -> None:
    """Make the workspace usable: convert the model if needed, load model and SAE, check
    they fit, build the default activation caches."""
    ws = Workspace.open(args.workspace)
    if args.if_needed and ws.is_prepared():
        print(f"ready: {ws.name} (prepared before)")
        return
    if problems := ws.problems():
        raise UserError(problems[0])
    sae = ws.sae
    from core.activation_cache import caches_for, default_rows

    for cache in caches_for(ws, "all"):
        status = cache.build(ws, default_rows(ws, cache.spec.role))
        print(f"{cache.spec.role}: {status.describe()}")
    ws.mark_prepared()
    print(
        f"ready: {ws.name}: {ws.config.model.name} + SAE d_sae={sae.cfg.d_sae} at {ws.hook} "
        f"({ws.config.model.dtype}, {ws.device})"
    )


def _cmd_train_sae(args: argparse.Namespace) -> None:
    from core.sae_training import train_sae

    ws = Workspace.open(args.workspace)
    path = train_sae(ws, fresh=args.fresh)
    print(f"saved: {path}")


def _cmd_health(args: argparse.Namespace) -> None:
    from core.health import sae_health

    ws = Workspace.open(args.workspace)
    print(f"SAE health of {ws.name} ({ws.provenance()['sae']} at {ws.hook}), BOS excluded")
    for item in sae_health(ws, args.rows):
        print(
            f"{item.corpus:>14}: {item.tokens:,} held-out tokens | L0 {item.l0:.2f} | "
            f"FVE {item.fve:.4f} ({item.fve_typical:.4f} without {item.massive_tokens} massive-"
            f"activation tokens) | dead {item.dead_features}/{item.d_sae} | CE clean "
            f"{item.ce_clean:.4f} spliced {item.ce_spliced:.4f} added {item.ce_added:+.4f}"
        )


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected i/n, e.g. 0/4") from exc
    return index, count


def _cmd_cache_build(args: argparse.Namespace) -> None:
    import torch

    from core.activation_cache import caches_for, default_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    ws = Workspace.open(args.workspace)
    for cache in caches_for(ws, args.corpus):
        rows = args.rows or default_rows(ws, cache.spec.role)
        status = cache.build(ws, rows, args.shard, args.shard_rows, args.batch_size)
        print(f"{cache.spec.role}: {status.describe()}")


def _cmd_cache_status(args: argparse.Namespace) -> None:
    from core.activation_cache import caches_for

    ws = Workspace.open(args.workspace)
    for cache in caches_for(ws, "all"):
        print(f"{cache.spec.role}: {cache.status().describe()}")


def _cmd_cache_merge(args: argparse.Namespace) -> None:
    from core.activation_cache import caches_for

    ws = Workspace.open(args.workspace)
    for cache in caches_for(ws, args.corpus):
        imported = cache.merge_from([Path(p) for p in args.sources])
        cache.finalize()
        print(f"{cache.spec.role}: imported {imported} shards; {cache.status().describe()}")


def _cmd_stats(args: argparse.Namespace) -> None:
    from core.stats import workspace_stats

    ws = Workspace.open(args.workspace)
    table, record = workspace_stats(ws, args.forget_rows, args.retain_rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        table.to_csv(out, index=False)
    else:
        table.to_parquet(out, index=False)
    write_json(out.with_name(out.name + ".provenance.json"), record, indent=2)
    print(f"wrote {len(table)} features to {out} (+ {out.name}.provenance.json)")


def _cmd_select(args: argparse.Namespace) -> None:
    from core.stats import select_features, workspace_stats

    ws = Workspace.open(args.workspace)
    table, record = workspace_stats(ws, args.forget_rows, args.retain_rows)
    chosen = select_features(table, args.threshold, args.n, args.variant)
    v = args.variant
    print(
        f"{ws.name}: retain threshold {args.threshold}, top {args.n}, variant {v} "
        f"({record['variants'][v]}); forget {record['forget']['tokens'][v]:,} tokens, "
        f"retain {record['retain']['tokens'][v]:,} tokens"
    )
    print(" rank  feature  forget_freq  retain_freq")
    for row in chosen.itertuples():
        print(
            f"{row.rank:5d}  {row.feature:7d}  {getattr(row, 'forget_freq_' + v):11.5f}  "
            f"{getattr(row, 'retain_freq_' + v):11.5f}"
        )
    if args.out:
        selection = {
            "features": chosen["feature"].tolist(),
            "threshold": args.threshold,
            "n": args.n,
            "variant": v,
            "provenance": record,
        }
        write_json(Path(args.out), selection, indent=2)
        print(f"wrote {args.out}")


def _cmd_examples(args: argparse.Namespace) -> None:
    from core.activation_cache import ActivationCache
    from core.examples import FeatureActivations, token_strings

    ws = Workspace.open(args.workspace)
    for role in ("forget_corpus", "retain_corpus"):
        cache = ActivationCache.for_workspace(ws, role)
        read = FeatureActivations.read(cache, args.feature)
        tokens = cache.rows_final() * cache.spec.context_length
        print(
            f"== feature {args.feature} on {role} ({tokens:,} cached tokens, {cache.spec.corpus})"
        )
        if not read.fires:
            print("   never fires")
        for context in read.top(args.k):
            strings = token_strings(ws, context.token_ids)
            strings[context.mark] = f"«{strings[context.mark]}»"
            text = "".join(strings).replace("\n", "↵")
            print(f"{context.value:8.2f}  row {context.row:5d} pos {context.position:4d}  {text}")


def _label_store(ws: Workspace):
    from core.labels import LabelStore

    return LabelStore(ws.folder / "labels.sqlite", ws.config.sae.identity(), ws.sae_width())


def _cmd_sets(args: argparse.Namespace) -> None:
    store = _label_store(Workspace.open(args.workspace))
    for name in store.set_names():
        feature_set = store.get_set(name)
        features = ", ".join(map(str, feature_set.features))
        print(f"{name}: {len(feature_set.features)} features [{features}]")


def _cmd_export(args: argparse.Namespace) -> None:
    from core import export

    ws = Workspace.open(args.workspace)
    store = _label_store(ws)
    if args.format != "labels" and not args.set:
        raise UserError(f"--format {args.format} needs --set NAME (see `python -m core sets`).")
    if args.format == "json":
        text = json.dumps(export.export_set(ws, store, args.set), indent=2) + "\n"
    elif args.format == "steered":
        text = export.steered_csv(ws, store, args.set, args.c)
    elif args.format == "neuronpedia":
        text = json.dumps(export.neuronpedia_payload(ws, store, args.set), indent=2) + "\n"
    else:
        text = export.labels_csv(store)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


def _cmd_import(args: argparse.Namespace) -> None:
    from core.export import import_set

    store = _label_store(Workspace.open(args.workspace))
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    name = import_set(store, path.read_bytes(), args.name, args.overwrite)
    print(f"imported set '{name}'")


def _settings(args: argparse.Namespace, ws: Workspace):
    from core.evaluation import EvalSettings

    overrides = {
        "scoring": args.scoring,
        "known_variant": args.known_variant,
        "split": args.split,
        "loss_rows": args.loss_rows,
        "known_filter": not args.skip_known,
    }
    if args.questions is not None:
        overrides["question_limit"] = args.questions or None
    return EvalSettings.for_device(ws.device, **overrides)


def _chosen_features(args: argparse.Namespace, ws: Workspace) -> tuple[list[int], list[float]]:
    """Features and their c from --set (its multipliers times --c) or --features."""
    if bool(args.set) == bool(args.features):
        raise UserError("Give exactly one of --set NAME or --features 1,2,3.")
    if args.set:
        feature_set = _label_store(ws).get_set(args.set)
        return list(feature_set.features), [args.c * m for m in feature_set.multipliers]
    try:
        features = [int(part) for part in args.features.split(",") if part.strip()]
    except ValueError as exc:
        raise UserError(f"--features must be comma-separated integers: {args.features!r}") from exc
    return features, [args.c] * len(features)


def _progress_printer():
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%")

    def report(stage: str, fraction: float) -> None:
        bar.set_description(stage)
        bar.n = round(100 * fraction)
        bar.refresh()

    return report


def _cmd_eval(args: argparse.Namespace) -> None:
    from core.evaluation import Evaluator, make_intervention

    ws = Workspace.open(args.workspace)
    features, values = _chosen_features(args, ws)
    iv = make_intervention(ws, features, values, args.method, 1.0, not args.edit_bos)
    evaluator = Evaluator(ws, _settings(args, ws))
    result = evaluator.evaluate(iv, _progress_printer())
    if args.set and args.save:
        summary = {k: v for k, v in result.items() if k != "questions"}
        _label_store(ws).add_results(args.set, summary)
    m = result["metrics"]
    print(f"{ws.name}: {len(features)} features, {args.method}, c = {args.c:g}")
    for name, value in m.items():
        if not isinstance(value, dict):
            print(f"  {name}: {'-' if value is None else round(value, 4)}")
    for warning in result["warnings"]:
        print(f"note: {warning}")
    if args.out:
        write_json(Path(args.out), result, indent=2)
        print(f"wrote {args.out}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from core.evaluation import Evaluator
    from core.sweeps import sweep

    ws = Workspace.open(args.workspace)
    evaluator = Evaluator(ws, _settings(args, ws))

    def report(done: int, total: int, point: dict) -> None:
        wmdp, loss = point.get("wmdp_all_accuracy"), point.get("loss_added")
        print(
            f"[{done}/{total}] thr {point['threshold']} n {point['n']} c {point['c']}: "
            f"WMDP (all) {wmdp}, loss added {loss}"
        )

    result = sweep(
        evaluator,
        _floats(args.thresholds),
        [int(x) for x in _floats(args.n)],
        _floats(args.c),
        args.variant,
        args.method,
        not args.edit_bos,
        report,
    )
    print(f"SAEBench score: {result['saebench_score']:.3f}")
    write_json(Path(args.out), result, indent=2)
    print(f"wrote {args.out}")


def _cmd_screen(args: argparse.Namespace) -> None:
    from core.evaluation import Evaluator
    from core.sweeps import screen

    ws = Workspace.open(args.workspace)
    features, _ = _chosen_features(args, ws)
    evaluator = Evaluator(ws, _settings(args, ws))

    def report(done: int, total: int, point: dict) -> None:
        if "feature" in point:
            what = f"feature {point['feature']} alone: MMLU drop {point['side_drop']}"
        else:
            what = f"first {point['k']} together: MMLU (all) {point['mmlu_all_accuracy']}"
        print(f"[{done}/{total}] {what}, WMDP (all) {point['wmdp_all_accuracy']}")

    result = screen(
        evaluator, features, args.c, args.tolerance, args.method, not args.edit_bos, report
    )
    print(f"kept {len(result['kept'])} of {len(features)}: {result['kept']}")
    write_json(Path(args.out), result, indent=2)
    print(f"wrote {args.out}")


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from exc


def _cmd_known(args: argparse.Namespace) -> None:
    from core.evaluation import FORGET, SIDE, Evaluator
    from core.known import VARIANTS

    ws = Workspace.open(args.workspace)
    evaluator = Evaluator(ws, _settings(args, ws))
    report = _progress_printer()
    for role in (FORGET, SIDE):
        known = evaluator.known(role, report)
        print(f"\n{role}: {len(known.questions)} questions scored in 24 orderings")
        for variant in VARIANTS:
            if variant == "correct-iff-question" and known.right_without_question is None:
                continue
            print(f"  {variant}: {len(known.indices(variant))} known")


def _cmd_attribute(args: argparse.Namespace) -> None:
    from core.attribution import TOP_K, Attributor
    from core.evaluation import FORGET, Evaluator

    ws = Workspace.open(args.workspace)
    attributor = Attributor(Evaluator(ws, _settings(args, ws)), FORGET)
    report = _progress_printer()
    found = attributor.attribute(lambda done, total: report("attribution", done / total))
    top = found.top(args.n)
    print(
        f"\n{ws.name}: gradient attribution on {found.provenance['questions_used']} {FORGET} "
        f"({found.provenance['metric']})"
    )
    print(f" rank  feature  mean_attribution  questions_in_top_{TOP_K}")
    for rank, feature in enumerate(top, 1):
        print(f"{rank:5d}  {feature:7d}  {found.mean[feature]:16.4f}  {found.hits[feature]:8d}")
    selection = {
        "features": top,
        "mode": "gradient attribution",
        "mean_attribution": [float(found.mean[j]) for j in top],
        "provenance": found.provenance,
    }
    if args.save_set:
        _label_store(ws).save_set(args.save_set, top, selection=selection)
        print(f"saved set '{args.save_set}'")
    if args.out:
        write_json(Path(args.out), selection, indent=2)
        print(f"wrote {args.out}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from core.evaluation import make_intervention
    from core.generation import generate

    ws = Workspace.open(args.workspace)
    features, values = _chosen_features(args, ws)
    iv = make_intervention(ws, features, values, args.method, 1.0, not args.edit_bos)
    print(f"clean:   {args.prompt}{generate(ws, args.prompt, None, args.tokens)}")
    print(f"clamped: {args.prompt}{generate(ws, args.prompt, iv, args.tokens)}")


def _command(group, name: str, func, help_text: str) -> argparse.ArgumentParser:
    cmd = group.add_parser(name, help=help_text, description=help_text)
    cmd.set_defaults(func=func)
    if name != "workspaces":
        cmd.add_argument(
            "--workspace",
            default=None,
            help=f"preset name or path to a TOML config (default: {default_workspace()})",
        )
    return cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _command(sub, "workspaces", _cmd_workspaces, "List the workspace presets (* = default).")
    _command(sub, "info", _cmd_info, "Show a workspace's provenance and what stops it loading.")
    prepare = _command(
        sub, "prepare", _cmd_prepare, "Load model and SAE, check they fit, build default caches."
    )
    prepare.add_argument(
        "--if-needed", action="store_true", help="do nothing if prepared with this config before"
    )
    train = _command(
        sub,
        "train-sae",
        _cmd_train_sae,
        "Train the workspace's own SAE (resumable; deterministic with the config's seed).",
    )
    train.add_argument("--fresh", action="store_true", help="discard checkpoints, keep activations")
    health = _command(sub, "health", _cmd_health, "SAE health on held-out text (cached).")
    health.add_argument("--rows", type=int, default=64, help="held-out rows per corpus")

    cache = sub.add_parser(
        "cache",
        help="Sparse SAE activation caches: build, status, merge.",
        description="Sparse SAE activation caches (format: docs/cache-format.md).",
    )
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    build = _command(cache_sub, "build", _cmd_cache_build, "Build, resume or extend the caches.")
    build.add_argument("--corpus", choices=["forget", "retain", "all"], default="all")
    build.add_argument("--rows", type=int, help="rows of context_length tokens (default: budgets)")
    build.add_argument("--shard", type=_parse_shard, default=(0, 1), help="build part i of n")
    build.add_argument("--shard-rows", type=int, default=32, help="rows per shard file")
    build.add_argument("--batch-size", type=int, default=8, help="rows per forward pass")
    build.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    _command(cache_sub, "status", _cmd_cache_status, "Say what is complete in each cache.")
    merge = _command(cache_sub, "merge", _cmd_cache_merge, "Join shards built with --shard i/n.")
    merge.add_argument("sources", nargs="+", help="cache folders or cache roots to import from")
    merge.add_argument("--corpus", choices=["forget", "retain", "all"], default="all")

    stats = _command(sub, "stats", _cmd_stats, "Write the per-feature statistics table.")
    stats.add_argument("--out", required=True, help="a .parquet or .csv path")
    select = _command(sub, "select", _cmd_select, "Select features the paper's way (METHOD §4).")
    select.add_argument("--threshold", type=float, default=0.01, help="retain frequency bound")
    select.add_argument("--n", type=int, default=20, help="how many features")
    select.add_argument("--variant", choices=["saebench", "authors"], default="saebench")
    select.add_argument("--out", help="write the selection as JSON")
    examples = _command(sub, "examples", _cmd_examples, "Top contexts of a feature (from caches).")
    examples.add_argument("--feature", type=int, required=True, help="feature id")
    examples.add_argument("--k", type=int, default=10, help="contexts per corpus")
    _command(sub, "sets", _cmd_sets, "List the saved feature sets.")
    export = _command(sub, "export", _cmd_export, "Export a feature set or the labels.")
    export.add_argument("--set", help="feature set name")
    export.add_argument(
        "--format", choices=["json", "steered", "neuronpedia", "labels"], default="json"
    )
    export.add_argument("--c", type=float, default=20.0, help="clamp value for steered CSV")
    export.add_argument("--out", required=True, help="file to write")
    imported = _command(sub, "import", _cmd_import, "Import a feature set exported as JSON.")
    imported.add_argument("file", help="the exported JSON file")
    imported.add_argument("--name", help="save under this name instead")
    imported.add_argument("--overwrite", action="store_true", help="replace a set of that name")
    for cmd in (stats, select):
        cmd.add_argument("--forget-rows", type=int, help="rows of the forget cache to count")
        cmd.add_argument("--retain-rows", type=int, help="rows of the retain cache to count")
    _add_evaluation_commands(sub)
    return parser


def _add_evaluation_commands(sub) -> None:
    from core.evaluation import SPLITS
    from core.interventions import METHODS
    from core.known import VARIANTS
    from core.mcq import SCORINGS

    evaluate = _command(sub, "eval", _cmd_eval, "Score WMDP-bio and side effects under a clamp.")
    sweep = _command(sub, "sweep", _cmd_sweep, "Evaluate thresholds x n x c (memoised points).")
    known = _command(sub, "known", _cmd_known, "Find the known questions (24 orderings each).")
    gen = _command(sub, "generate", _cmd_generate, "Greedy text, clean vs intervened.")
    attribute = _command(
        sub, "attribute", _cmd_attribute, "Rank features by gradient attribution to answers."
    )
    screen = _command(
        sub, "screen", _cmd_screen, "Keep features without side effects alone, then add them up."
    )
    for cmd in (evaluate, gen, screen):
        cmd.add_argument("--set", help="a saved feature set (its multipliers scale --c)")
        cmd.add_argument("--features", help="comma-separated feature ids")
        cmd.add_argument("--c", type=float, default=20.0, help="clamp size c (or scale m)")
    for cmd in (evaluate, sweep, gen, screen):
        cmd.add_argument("--method", choices=list(METHODS), default="clamp")
        cmd.add_argument("--edit-bos", action="store_true", help="edit position 0 too (authors)")
    for cmd in (evaluate, sweep, known, attribute, screen):
        cmd.add_argument("--scoring", choices=list(SCORINGS), default="letter")
        cmd.add_argument("--known-variant", choices=list(VARIANTS), default="correct")
        cmd.add_argument("--split", choices=list(SPLITS), default="all", help="known half used")
        cmd.add_argument(
            "--questions",
            type=int,
            help="questions per set, a seeded sample (0 = all; default 100 on a CPU, all on a GPU)",
        )
        cmd.add_argument("--loss-rows", type=int, default=16, help="rows of text per loss set")
        cmd.add_argument(
            "--skip-known", action="store_true", help="do not run the 24-ordering filter"
        )
    evaluate.add_argument("--save", action="store_true", help="store the result in --set")
    evaluate.add_argument("--out", help="write the full result (with drill-down) as JSON")
    sweep.add_argument("--thresholds", default="0.01", help="retain thresholds, e.g. 0.001,0.01")
    sweep.add_argument("--n", default="10,20", help="numbers of features, e.g. 10,20,50")
    sweep.add_argument("--c", default="20,50", help="clamp sizes, e.g. 20,50,100")
    sweep.add_argument("--variant", choices=["saebench", "authors"], default="saebench")
    sweep.add_argument("--out", required=True, help="JSON file for the points")
    screen.add_argument(
        "--tolerance", type=float, default=0.0, help="largest side-effect accuracy drop kept"
    )
    screen.add_argument("--out", required=True, help="JSON file for the screening")
    attribute.add_argument("--n", type=int, default=20, help="features to list (and save)")
    attribute.add_argument("--save-set", help="save the top n as a feature set of this name")
    attribute.add_argument("--out", help="write the ranking with its provenance as JSON")
    gen.add_argument("--prompt", default="The mitochondria is the", help="text to continue")
    gen.add_argument("--tokens", type=int, default=24, help="new tokens (at most 64)")


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
