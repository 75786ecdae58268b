"""`convert-sae`: the paper authors' `.pt` SAE checkpoints to sae-lens folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.common import Subcommands


def _convert(args: argparse.Namespace) -> None:
    from core.sae.convert import convert_authors_sae

    out = convert_authors_sae(Path(args.file), Path(args.out))
    print(f'wrote {out} (cfg.json + sae_weights.safetensors): use it as [sae] source = "local"')


def add_commands(sub: Subcommands) -> None:
    cmd = sub.add_parser(
        "convert-sae",
        help="Convert an SAE saved by the paper's code (.pt) to a sae-lens folder.",
        description="Convert an SAE saved by the paper's code (GitHub efarrell1/"
        "unlearning_with_saes, e.g. HF eoinf/unlearning_saes) to a sae-lens folder.",
    )
    cmd.set_defaults(func=_convert)
    cmd.add_argument("file", help="the authors' .pt checkpoint")
    cmd.add_argument("--out", required=True, help="a new folder for cfg.json and the weights")
