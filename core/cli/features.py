"""Commands that find features: the statistics table, the paper's selection (by effect
too), activation examples, gradient attribution."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.common import (
    Subcommands,
    add_scoring_flags,
    check_out,
    command,
    open_workspace,
    settings,
    write_file,
    write_out,
)
from core.errors import UserError
from core.features.stats import VARIANTS
from core.labels.store import LabelStore

if TYPE_CHECKING:
    import pandas as pd

    from core.workspace.workspace import Workspace


def _check_rows(args: argparse.Namespace) -> None:
    for flag, rows in (("--forget-rows", args.forget_rows), ("--retain-rows", args.retain_rows)):
        if rows is not None and rows < 1:
            raise UserError(f"{flag} must be ≥ 1, not {rows}.")


def _stats(args: argparse.Namespace) -> None:
    from core.features.stats import workspace_stats

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: give a .csv or .parquet file name.")
    check_out(out)
    _check_rows(args)
    table, record = workspace_stats(open_workspace(args), args.forget_rows, args.retain_rows)
    if out.suffix == ".csv":
        write_file(out, lambda handle: table.to_csv(handle, index=False))
    else:
        write_file(out, lambda handle: table.to_parquet(handle, index=False))
    provenance = (json.dumps(record, indent=2) + "\n").encode()
    write_file(out.with_name(out.name + ".provenance.json"), lambda h: h.write(provenance))
    print(f"wrote {len(table)} features to {out} (+ {out.name}.provenance.json)")


def _select(args: argparse.Namespace) -> None:
    from core.features.stats import workspace_stats
    from core.selection.frequency import (
        DSGSelectionConfig,
        SelectionConfig,
        select_dsg,
        select_features,
        selection_record,
    )

    if args.mode == "dsg":
        config = DSGSelectionConfig(
            args.forget_percentile,
            args.retain_percentile,
            args.ratio_percentile,
            args.n,
            args.variant,
        )
    else:
        config = SelectionConfig(args.threshold, args.n, args.variant)
    config.check()
    _check_rows(args)
    if args.min_effect is not None and not math.isfinite(args.min_effect):
        raise UserError(f"--min-effect must be a number, not {args.min_effect}.")
    if args.out:
        check_out(Path(args.out))
    ws = open_workspace(args)
    table, record = workspace_stats(ws, args.forget_rows, args.retain_rows)
    if args.min_effect is not None:
        table, record = _by_effect(ws, table, record, args)
    dsg = isinstance(config, DSGSelectionConfig)
    chosen = select_dsg(table, config) if dsg else select_features(table, config)
    v = config.variant
    rule = (
        f"DSG percentiles forget ≥ {config.forget_percentile}, retain ≤ "
        f"{config.retain_percentile}, ratio ≥ {config.ratio_percentile}"
        if dsg
        else f"retain threshold {config.threshold}"
    )
    print(
        f"{ws.name}: {rule}, top {config.n}, variant {v} "
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
        write_out(args.out, selection_record(config, chosen["feature"].tolist(), record))


def _by_effect(
    ws: Workspace, table: pd.DataFrame, record: dict, args: argparse.Namespace
) -> tuple[pd.DataFrame, dict]:
    """The features whose estimated forget effect is at least --min-effect (METHOD §13;
    the estimate alone decides, computed once per setting), and the rule in the record."""
    from core.cli.effects import feature_scale
    from core.effects.table import EffectSettings, feature_effects, with_min_effect

    least = args.min_effect
    c = args.effect_c if args.effect_c is not None else feature_scale(ws)
    settings = EffectSettings(args.effect_rows, args.effect_context, c, top_k=0)
    kept = with_min_effect(table, feature_effects(ws, settings), least)
    rule = (
        f"estimated forget effect ≥ {least:g} (loss added per row when clamped alone to "
        f"-{settings.c:g}; {settings.rows} rows x {settings.context_length} tokens of training "
        "documents per corpus)"
    )
    print(f"{rule}: {len(kept):,} of {len(table):,} features kept")
    return kept, record | {"min_effect": rule}


def _examples(args: argparse.Namespace) -> None:
    from core.cache.store import SparseActivationStore
    from core.features.examples import FeatureActivations, token_strings

    if args.k < 1:
        raise UserError(f"--k (contexts per corpus) must be ≥ 1, not {args.k}.")
    ws = open_workspace(args)
    for role in ("forget_corpus", "retain_corpus"):
        cache = SparseActivationStore.for_workspace(ws, role)
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


def _attribute(args: argparse.Namespace) -> None:
    from core.cli.common import progress_printer
    from core.evaluation.evaluator import Evaluator
    from core.evaluation.settings import FORGET
    from core.selection.attribution import TOP_K, AttributionConfig, Attributor

    config = AttributionConfig(FORGET, None, args.n)
    config.check()
    if args.out:
        check_out(Path(args.out))
    ws = open_workspace(args)
    attributor = Attributor(Evaluator(ws, settings(args, ws)), config)
    report = progress_printer()
    found = attributor.attribute(lambda done, total: report("attribution", done / total))
    record = found.selection_record(config)
    top = record["features"]
    print(
        f"\n{ws.name}: gradient attribution on {found.provenance['questions_used']} {FORGET} "
        f"({found.provenance['metric']})"
    )
    print(f" rank  feature  mean_attribution  95%_interval (n = {found.questions})  in_top_{TOP_K}")
    low, high = found.interval(top)
    for rank, feature in enumerate(top, 1):
        interval = f"[{low[rank - 1]:.4f}, {high[rank - 1]:.4f}]"
        print(
            f"{rank:5d}  {feature:7d}  {found.mean[feature]:16.4f}  {interval:>27}  "
            f"{found.hits[feature]:9d}"
        )
    if args.save_set:
        _save_attribution(LabelStore.for_workspace(ws), args.save_set, top, record)
    if args.out:
        write_out(args.out, record)


def _save_attribution(store: LabelStore, name: str, top: list[int], record: dict) -> None:
    """Save a whole attribution as a set (never before it is whole); a rerun, after a kill
    or not, finds the same one kept instead of refusing the name as taken."""
    if name in store.set_names():
        held = store.get_set(name)
        if list(held.features) == top and held.selection == json.loads(json.dumps(record)):
            print(f"set '{name}' holds this attribution already")
            return
    store.save_set(name, top, selection=record)
    print(f"saved set '{name}'")


def add_commands(sub: Subcommands) -> None:
    stats = command(sub, "stats", _stats, "Write the per-feature statistics table.")
    stats.add_argument("--out", required=True, help="a .parquet or .csv path")
    select = command(sub, "select", _select, "Select features the paper's way (METHOD §4).")
    select.add_argument(
        "--mode",
        choices=["frequency", "dsg"],
        default="frequency",
        help="METHOD §4's retain threshold, or DSG's importance percentiles (METHOD §10)",
    )
    select.add_argument("--threshold", type=float, default=0.01, help="retain frequency bound")
    select.add_argument("--forget-percentile", type=float, default=5.0, help="dsg: lower bound")
    select.add_argument("--retain-percentile", type=float, default=100.0, help="dsg: upper bound")
    select.add_argument("--ratio-percentile", type=float, default=90.0, help="dsg: lower bound")
    select.add_argument("--n", type=int, default=20, help="how many features")
    select.add_argument("--variant", choices=list(VARIANTS), default="saebench")
    select.add_argument("--out", help="write the selection as JSON")
    select.add_argument(
        "--min-effect",
        type=float,
        help="keep only features whose estimated forget effect (loss added per row) is ≥ this",
    )
    select.add_argument("--effect-rows", type=int, default=16, help="rows per corpus (16)")
    select.add_argument("--effect-context", type=int, default=128, help="tokens per row (128)")
    select.add_argument("--effect-c", type=float, help="the clamp's c (the SAE's own scale)")
    for cmd in (stats, select):
        cmd.add_argument("--forget-rows", type=int, help="rows of the forget cache to count")
        cmd.add_argument("--retain-rows", type=int, help="rows of the retain cache to count")
    examples = command(sub, "examples", _examples, "Top contexts of a feature (from caches).")
    examples.add_argument("--feature", type=int, required=True, help="feature id")
    examples.add_argument("--k", type=int, default=10, help="contexts per corpus")
    attribute = command(
        sub, "attribute", _attribute, "Rank features by gradient attribution to answers."
    )
    attribute.add_argument("--n", type=int, default=20, help="features to list (and save)")
    attribute.add_argument("--save-set", help="save the top n as a feature set of this name")
    attribute.add_argument("--out", help="write the ranking with its provenance as JSON")
    add_scoring_flags(attribute, split="selection")
