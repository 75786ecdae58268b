"""Commands that explore around features: decoder/encoder neighbours, co-occurrence, the
feature map, contrast search, suggested labels, and full-text search of labels."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli.common import Subcommands, check_out, command, open_workspace, write_out
from core.errors import UserError
from core.labels.store import LabelStore

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace


def _neighbours(args: argparse.Namespace) -> None:
    from core.features.neighbours import Neighbours, neighbour_table
    from core.features.stats import workspace_stats

    ws = open_workspace(args)
    store = LabelStore.for_workspace(ws)
    table, _ = workspace_stats(ws)
    found = neighbour_table(
        Neighbours.for_workspace(ws), args.feature, table, store.label_texts(), args.k
    )
    print(f"== neighbours of feature {args.feature} (cosine of decoder | encoder directions)")
    print(found.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _cooccurrence(args: argparse.Namespace) -> None:
    from core.cache.store import SparseActivationStore
    from core.features.cooccurrence import CooccurrenceConfig, cooccurrence

    config = CooccurrenceConfig(args.k, args.order, not args.all_positions)
    config.check()
    ws = open_workspace(args)
    for role in ("forget_corpus", "retain_corpus"):
        found = cooccurrence(SparseActivationStore.for_workspace(ws, role), args.feature, config)
        print(f"== features firing with {args.feature} on {role} (by {config.order})")
        print(
            found.to_string(index=False, float_format=lambda v: f"{v:.4f}")
            if len(found)
            else "   never fires"
        )


def _feature_map(args: argparse.Namespace) -> None:
    from core.features.feature_map import FeatureMapConfig, feature_map

    config = FeatureMapConfig(args.n_neighbors, args.min_dist, args.seed)
    config.check()
    if args.out:
        check_out(Path(args.out))
    layout = feature_map(open_workspace(args), config)
    print(f"feature map: {len(layout):,} features")
    if args.out:
        write_out(args.out, {"config": asdict(config), "xy": layout.tolist()})


def _read_group(
    file: str | None, corpus: str | None, n: int, ws: Workspace, name: str
) -> list[str]:
    from core.features.contrast import corpus_texts, split_texts

    if bool(file) == bool(corpus):
        raise UserError(
            f"Group {name}: give exactly one of --{name.lower()} FILE or "
            f"--{name.lower()}-corpus ROLE."
        )
    if corpus:
        return corpus_texts(ws, corpus, n)
    try:
        return split_texts(Path(file).read_text())
    except OSError as exc:
        raise UserError(f"Cannot read {file}: {exc.strerror}.") from exc


def _contrast(args: argparse.Namespace) -> None:
    from core.features.contrast import ContrastConfig, contrast

    config = ContrastConfig(args.max_tokens, args.batch_size, args.order)
    config.check()
    if args.out:
        check_out(Path(args.out))
    ws = open_workspace(args)
    group_a = _read_group(args.a, args.a_corpus, args.documents, ws, "A")
    group_b = _read_group(args.b, args.b_corpus, args.documents, ws, "B")
    found, record = contrast(ws, group_a, group_b, config)
    print(
        f"group A: {record['group_a']['texts']} texts, {record['group_a']['tokens']:,} tokens; "
        f"group B: {record['group_b']['texts']} texts, {record['group_b']['tokens']:,} tokens"
    )
    top = found.head(args.n)
    print(top.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    if args.save_set:
        LabelStore.for_workspace(ws).save_contrast_set(
            args.save_set, found["feature"].tolist(), record, args.n
        )
        print(f"saved the top {len(top)} as the set '{args.save_set}'")
    if args.out:
        write_out(args.out, record | {"features": top.to_dict(orient="records")})


def _suggest(args: argparse.Namespace) -> None:
    from core.labels.suggestions import import_explanations, suggest

    ws = open_workspace(args)
    store = LabelStore.for_workspace(ws)
    if args.import_explanations is not None:
        path = Path(args.import_explanations) if args.import_explanations else None
        stored = import_explanations(ws, store, path)
        print(f"stored {stored:,} Neuronpedia explanations as suggestions")
    if args.feature is not None:
        print(f"feature {args.feature}: suggested label: {suggest(ws, store, args.feature)}")
        for item in store.suggestions(args.feature):
            print(f"  [{item.source}] {item.text}")
    if args.feature is None and args.import_explanations is None:
        raise UserError(
            "Give --feature N (a suggestion from its evidence) or --import-explanations."
        )


def _search_labels(args: argparse.Namespace) -> None:
    ws = open_workspace(args)
    store = LabelStore.for_workspace(ws)
    hits = store.search(args.query, suggestions=not args.labels_only)
    for hit in hits:
        where = f"label: {', '.join(hit.fields)}" if hit.kind == "label" else hit.source
        where = where if hit.kind == "label" else f"suggestion ({where})"
        print(f"{hit.feature:7d}  {where:30s}  {hit.text}")
    print(f"{len(hits)} matches")
    if args.save_set:
        saved = store.save_search_set(args.save_set, args.query, not args.labels_only)
        print(f"saved {len(saved.features)} features as the set '{args.save_set}'")


def add_commands(sub: Subcommands) -> None:
    cmd = command(
        sub, "neighbours", _neighbours, "features whose decoder/encoder directions are closest"
    )
    cmd.add_argument("--feature", type=int, required=True)
    cmd.add_argument("--k", type=int, default=10)

    cmd = command(
        sub, "cooccurrence", _cooccurrence, "features firing at the same tokens, per corpus"
    )
    cmd.add_argument("--feature", type=int, required=True)
    cmd.add_argument("--k", type=int, default=10)
    cmd.add_argument("--order", choices=["jaccard", "conditional"], default="jaccard")
    cmd.add_argument("--all-positions", action="store_true", help="count BOS/EOS/PAD too")

    cmd = command(
        sub, "feature-map", _feature_map, "2-D UMAP map of the decoder directions (cached)"
    )
    cmd.add_argument("--n-neighbors", type=int, default=15)
    cmd.add_argument("--min-dist", type=float, default=0.1)
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--out", help="write the coordinates as JSON")

    cmd = command(sub, "contrast", _contrast, "features firing more on texts A than on texts B")
    cmd.add_argument("--a", help="text file, paragraphs separated by blank lines")
    cmd.add_argument("--b", help="text file, paragraphs separated by blank lines")
    roles = ["forget_corpus", "retain_corpus", "loss_text"]
    cmd.add_argument("--a-corpus", choices=roles, help="or the first documents of a corpus")
    cmd.add_argument("--b-corpus", choices=roles, help="or the first documents of a corpus")
    cmd.add_argument("--documents", type=int, default=50, help="documents taken from a corpus")
    cmd.add_argument("--max-tokens", type=int, default=256, help="tokens read per text")
    cmd.add_argument("--batch-size", type=int, default=8)
    cmd.add_argument("--order", choices=["difference", "ratio"], default="difference")
    cmd.add_argument("--n", type=int, default=20, help="features shown (and saved)")
    cmd.add_argument("--save-set", help="save the top n as a feature set of this name")
    cmd.add_argument("--out", help="write the result as JSON")

    cmd = command(sub, "suggest", _suggest, "suggested labels: from evidence, or Neuronpedia's")
    cmd.add_argument("--feature", type=int)
    cmd.add_argument(
        "--import-explanations",
        nargs="?",
        const="",
        help="import Neuronpedia's explanations JSON (default: explanations.json in the "
        "workspace's cache folder)",
    )

    cmd = command(
        sub, "search-labels", _search_labels, "full-text search of labels and suggestions"
    )
    cmd.add_argument("query")
    cmd.add_argument("--labels-only", action="store_true")
    cmd.add_argument("--save-set", help="save the matching features as a set of this name")
