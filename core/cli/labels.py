"""Commands on labels and feature sets: list the sets, export, import."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli.common import Subcommands, check_out, command, open_workspace, write_file
from core.errors import UserError
from core.labels.store import LabelStore


def _sets(args: argparse.Namespace) -> None:
    store = LabelStore.for_workspace(open_workspace(args))
    for name in store.set_names():
        feature_set = store.get_set(name)
        features = ", ".join(map(str, feature_set.features))
        print(f"{name}: {len(feature_set.features)} features [{features}]")


def _export(args: argparse.Namespace) -> None:
    from core.labels import export

    check_out(Path(args.out))
    ws = open_workspace(args)
    store = LabelStore.for_workspace(ws)
    if args.format != "labels" and not args.set:
        raise UserError(f"--format {args.format} needs --set NAME (see `python -m core sets`).")
    if args.format == "json":
        text = json.dumps(export.export_set(ws, store, args.set), indent=2) + "\n"
    elif args.format == "steered":
        text = export.steered_csv(ws, store, args.set, args.c, args.feature, args.ungated)
    elif args.format == "neuronpedia":
        text = json.dumps(export.neuronpedia_payload(ws, store, args.set), indent=2) + "\n"
    else:
        text = export.labels_csv(store)
    write_file(Path(args.out), lambda handle: handle.write(text.encode()))
    print(f"wrote {args.out}")


def _import(args: argparse.Namespace) -> None:
    from core.labels.export import import_set

    store = LabelStore.for_workspace(open_workspace(args))
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    name = import_set(store, path.read_bytes(), args.name, args.overwrite, args.force)
    print(f"imported set '{name}'")


def add_commands(sub: Subcommands) -> None:
    command(sub, "sets", _sets, "List the saved feature sets.")
    export = command(sub, "export", _export, "Export a feature set or the labels.")
    export.add_argument("--set", help="feature set name")
    export.add_argument(
        "--format", choices=["json", "steered", "neuronpedia", "labels"], default="json"
    )
    export.add_argument("--c", type=float, default=20.0, help="clamp value for steered CSV")
    export.add_argument("--feature", type=int, help="the set's feature for a steered CSV")
    export.add_argument(
        "--ungated",
        action="store_true",
        help="steered CSV of a gated set: its ungated equivalent (lm-eval cannot gate)",
    )
    export.add_argument("--out", required=True, help="file to write")
    imported = command(sub, "import", _import, "Import a feature set exported as JSON.")
    imported.add_argument("file", help="the exported JSON file")
    imported.add_argument("--name", help="save under this name instead")
    imported.add_argument(
        "--overwrite", action="store_true", help="replace a set of that name, newer labels too"
    )
    imported.add_argument(
        "--force", action="store_true", help="accept a set made for other weights of the SAE"
    )
