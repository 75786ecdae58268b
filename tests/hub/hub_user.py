"""A hub user's session on the fake hub, run as its own process:

    python -m tests.hub.hub_user CONFIG.toml OUT_DIR

(the hub clients read their cache folders and offline mode when imported, so only a fresh
process sees the fake hub as a user's machine would). It runs the preset through the CLI,
step by step, then records what the test checks, in OUT_DIR/facts.json."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import torch

QUESTIONS = ["--questions", "2", "--loss-rows", "1", "--split", "all"]
SET = "hub top"


def cli(argv: list[str]) -> dict:
    """One `python -m core ...` call: its exit code and what it printed."""
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    seconds = round(time.perf_counter() - started, 1)
    return {
        "argv": argv,
        "code": code,
        "out": out.getvalue(),
        "err": err.getvalue()[-3000:],
        "seconds": seconds,
    }


def session(config: str, out: Path) -> dict:
    """The preset as a hub user runs it, then the facts."""
    from core.labels.store import LabelStore
    from core.workspace.workspace import Workspace

    ws_flag = ["--workspace", config]
    steps = [
        cli(["info", *ws_flag]),
        cli(["prepare", *ws_flag]),
        cli(["stats", *ws_flag, "--out", str(out / "stats.csv")]),
        cli(
            ["select", *ws_flag, "--threshold", "0.05", "--n", "4", "--out", str(out / "sel.json")]
        ),
    ]
    ws = Workspace.open(config)
    selection = json.loads((out / "sel.json").read_text())
    features = selection["features"]
    # a label kept by an earlier version under the registry coordinates alone
    earlier = f"sae-lens:{ws.config.sae.identity()}"
    LabelStore(ws.folder / "labels.sqlite", earlier, ws.sae_width()).set_label(1, label="older")
    store = LabelStore.for_workspace(ws)
    store.save_set(SET, features, selection=selection)
    labels = {"key": store.sae, "adopted": store.label(1).label}
    sweep = ["sweep", *ws_flag, "--thresholds", "0.05", "--n", "2,4", "--c", "20"]
    reproduce = ["reproduce", *ws_flag, "--reference", "gemma-2-2b-it-L3", "--allow-cpu"]
    steps += [
        cli(["examples", *ws_flag, "--feature", str(features[0]), "--k", "2"]),
        cli(
            [
                "eval",
                *ws_flag,
                "--set",
                SET,
                "--c",
                "20",
                *QUESTIONS,
                "--out",
                str(out / "eval.json"),
            ]
        ),
        cli([*sweep, *QUESTIONS, "--out", str(out / "sweep.json")]),
        cli(["export", *ws_flag, "--set", SET, "--out", str(out / "set.json")]),
        cli(["import", *ws_flag, str(out / "set.json"), "--name", "hub top again"]),
        cli(["sets", *ws_flag]),
        cli([*reproduce, *QUESTIONS[:4], "--skip-saebench", "--out", str(out / "reproduce.md")]),
    ]
    return {"steps": steps, "labels": labels, **facts(ws, features)}


@torch.no_grad()
def facts(ws, features: list[int]) -> dict:
    """What was loaded, and how it computes."""
    from core.evaluation.mcq import encode_prompt, prompt_text
    from core.sae.adapter import adapter_for

    sae = ws.sae
    tokens = torch.tensor([ws.tokenizer.encode(ws.documents("forget_corpus", 4)[0])[:48]])
    x = ws.residual(tokens)
    partial = adapter_for(sae).selected_activations(x, features)
    full = sae.encode(x)[..., features]
    question = ws.questions("forget_questions")[0]
    ids = encode_prompt(ws.tokenizer, prompt_text(question), chat=True)
    manifests = sorted(ws.folder.glob("activations/*/manifest.json"))
    return {
        "sae_class": type(sae).__name__,
        "sae_architecture": sae.cfg.architecture(),
        "sae_d_sae": sae.cfg.d_sae,
        "sae_hook": sae.cfg.metadata.hook_name,
        # float32 sums in another order (the BLAS path depends on shapes and threads)
        "partial_equals_full": bool(torch.allclose(partial, full, rtol=1e-5, atol=1e-5)),
        "partial_fires": int((full > 0).sum()),
        "chat_prompt": ws.tokenizer.decode(ids),
        "chat_bos_count": ids.count(ws.tokenizer.bos_token_id),
        "chat_first_id_is_bos": ids[0] == ws.tokenizer.bos_token_id,
        "cache_specs": [json.loads(path.read_text())["spec"] for path in manifests],
        "model_class": type(ws.model).__name__,
        "model_name": ws.model.cfg.model_name,
    }


if __name__ == "__main__":
    config, out = sys.argv[1], Path(sys.argv[2])
    record = session(config, out)
    (out / "facts.json").write_text(json.dumps(record, indent=2))
