"""The serial cache build + statistics against SAEBench's `get_feature_activation_sparsity`
on the same rows (issue 16, "serial first"; target ≥ 1.0×).

    python benchmarks/sparsity_vs_saebench.py [--saebench PATH] [--rows 16] [--batch-size 8]

SAEBench is not a dependency: install it apart, without its dependencies, and give the
folder (`pip install --no-deps --target /tmp/saebench sae-bench==0.6.0`, then
`--saebench /tmp/saebench`). Both run on the same `--rows` rows of the forget corpus (the
cache's own token rows) with the same batch size and 2 torch threads, interleaved, best of
`--repeats`; the per-feature frequencies must agree (SAEBench's BOS/PAD/EOS mask against the
cache's "saebench" counting). The product is timed three ways: with nothing on disk (the
very first build on a corpus: it tokenizes the whole corpus to draw its seeded rows), with
the corpus's token stream kept by an earlier build (any later SAE, budget or seed on the same
model and corpus), and with the same rows already on disk (what SAEBench is given). The
product's time is split into its parts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.base.environment import configure_environment
from core.cache.build import build, ensure_tokens
from core.cache.store import SparseActivationStore
from core.features.stats import corpus_stats
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace


def product(
    ws: Workspace, rows: int, batch_size: int, kept: str, streams: Path
) -> tuple[float, np.ndarray]:
    """Seconds of a fresh cache build + its statistics, and the frequencies. `kept` is what
    is on disk before the clock starts: "nothing", "stream" (the corpus's token stream, from
    `streams`) or "rows" (the cache's token rows, as SAEBench is given them)."""
    root = Path(tempfile.mkdtemp(prefix="sparsity-"))
    os.environ["UNLEARNING_LENS_CACHE_DIR"] = str(root)
    try:
        cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
        if kept != "nothing":
            shutil.copytree(streams, root / "token-streams")
        if kept == "rows":
            cache.folder.mkdir(parents=True)
            ensure_tokens(cache, ws, rows)
        started = time.perf_counter()
        build(cache, ws, rows, batch_size=batch_size)
        stats = corpus_stats(cache)
        seconds = time.perf_counter() - started
        return seconds, stats.count["saebench"] / stats.tokens["saebench"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def saebench(ws: Workspace, tokens: torch.Tensor, batch_size: int) -> tuple[float, np.ndarray]:
    from sae_bench.sae_bench_utils.activation_collection import get_feature_activation_sparsity

    started = time.perf_counter()
    with torch.no_grad():
        sparsity = get_feature_activation_sparsity(
            tokens, ws.model, ws.sae, batch_size, ws.layer, ws.hook, mask_bos_pad_eos_tokens=True
        )
    return time.perf_counter() - started, sparsity.numpy()


@torch.no_grad()
def parts(ws: Workspace, tokens: np.ndarray, batch_size: int) -> dict[str, float]:
    """The product's build split: forward to the hook, sparse encode, everything else."""
    forward = encode = 0.0
    for first in range(0, len(tokens), batch_size):
        batch = torch.from_numpy(tokens[first : first + batch_size]).long()
        started = time.perf_counter()
        resid = ws.residual(batch)
        forward += time.perf_counter() - started
        started = time.perf_counter()
        adapter_for(ws.sae).sparse_encode(resid.reshape(-1, resid.shape[-1]))
        encode += time.perf_counter() - started
    return {"forward": forward, "encode": encode}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--saebench", default="/tmp/saebench", help="folder with sae_bench")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.append(args.saebench)
    configure_environment()
    torch.set_num_threads(2)
    print(f"load average at start: {os.getloadavg()}")
    ws = Workspace.open(args.workspace)
    assert ws.sae is not None
    streams = Path(tempfile.mkdtemp(prefix="sparsity-streams-"))
    os.environ["UNLEARNING_LENS_CACHE_DIR"] = str(streams)
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    cache.folder.mkdir(parents=True)
    rows = ensure_tokens(cache, ws, args.rows)
    streams = streams / "token-streams"
    tokens = torch.from_numpy(rows).long()
    saebench(ws, tokens[: args.batch_size], args.batch_size)  # warm-up of both
    product(ws, args.batch_size, args.batch_size, "stream", streams)
    times: dict[str, list[float]] = {"nothing": [], "stream": [], "rows": []}
    theirs = []
    for _ in range(args.repeats):
        for kept, runs in times.items():
            seconds, ours_freq = product(ws, args.rows, args.batch_size, kept, streams)
            runs.append(seconds)
        seconds, their_freq = saebench(ws, tokens, args.batch_size)
        theirs.append(seconds)
    shutil.rmtree(streams.parent)
    n = rows.size
    split = parts(ws, rows, args.batch_size)
    best = min(theirs)
    print(
        f"{args.rows} x {rows.shape[1]} tokens, batch {args.batch_size}, 2 threads, best of "
        f"{args.repeats}: SAEBench get_feature_activation_sparsity {best:.2f} s "
        f"({n / best:,.0f} tok/s; all runs {[round(s, 2) for s in theirs]})"
    )
    for kept, label in (
        ("nothing", "nothing on disk (tokenizes the corpus)"),
        ("stream", "the corpus's token stream on disk"),
        ("rows", "the same token rows on disk"),
    ):
        ours = min(times[kept])
        print(
            f"cache build + statistics, {label}: {ours:.2f} s ({n / ours:,.0f} tok/s), "
            f"speed ratio {best / ours:.2f}x (all runs {[round(s, 2) for s in times[kept]]})"
        )
    print(
        f"product parts (one pass): forward to the hook {split['forward']:.2f} s, sparse "
        f"encode {split['encode']:.2f} s, the rest (CSR write, fold, statistics) "
        f"{min(times['rows']) - split['forward'] - split['encode']:.2f} s"
    )
    print(f"largest frequency difference: {np.abs(ours_freq - their_freq).max():.2e}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
