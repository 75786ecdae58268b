"""Cache build speed and size, and read speed of a 1M-token cache (issues: cache, examples).

    python benchmarks/cache_build.py [--workspace offline-gemma3-270m] [--rows 64]

On the same token rows: the bare forward pass up to the SAE's layer (tokens/s), the cache
build (tokens/s), their ratio (target ≥ 0.9), bytes on disk per active latent (target ≤ 8)
and per token against a dense fp16 residual cache; each at 1 and 2 torch threads. Then, on
a synthetic cache of 1M tokens × 16,384 features at L0 ≈ 20 written by the same code: one
feature's activations (target < 0.2 s), the full statistics table (target < 1 s) and
opening a feature on the examples page: top contexts and interval examples (target < 0.2 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.base.environment import configure_environment
from core.cache.build import build, ensure_tokens, finalize
from core.cache.shards import write_shard
from core.cache.spec import cache_spec
from core.cache.store import SparseActivationStore
from core.features.examples import FeatureActivations
from core.features.stats import corpus_stats, feature_table
from core.workspace.workspace import Workspace


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@torch.no_grad()
def bare_forward(ws: Workspace, tokens: np.ndarray, batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(tokens), batch_size):
        batch = torch.from_numpy(tokens[start : start + batch_size]).long().to(ws.device)
        ws.model(batch, stop_at_layer=ws.layer + 1)
    return tokens.size / (time.perf_counter() - started)


def build_speed(ws: Workspace, rows: int, threads: int, batch_size: int) -> dict:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as root:
        os.environ["UNLEARNING_LENS_CACHE_DIR"] = root
        cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
        cache.folder.mkdir(parents=True)
        tokens = ensure_tokens(cache, ws, rows)
        bare_forward(ws, tokens[:batch_size], batch_size)  # warm-up
        bare = bare_forward(ws, tokens, batch_size)
        started = time.perf_counter()
        build(cache, ws, rows, batch_size=batch_size)
        built = tokens.size / (time.perf_counter() - started)
        nnz = len(cache.csc()[1])
        csc_bytes = folder_size(cache.csc_dir)
        return {
            "threads": threads,
            "tokens": tokens.size,
            "bare_tok_s": bare,
            "build_tok_s": built,
            "ratio": built / bare,
            "nnz": nnz,
            "l0": nnz / tokens.size,
            "bytes_per_latent": csc_bytes / nnz,
            "bytes_per_token": (csc_bytes + folder_size(cache.tokens_path.parent) * 0)
            / tokens.size,
            "tokens_npy_bytes_per_token": cache.tokens_path.stat().st_size / tokens.size,
            "dense_fp16_bytes_per_token": ws.model.cfg.d_model * 2,
        }


def synthetic_cache(
    ws: Workspace, root: Path, n_tokens: int, d_sae: int, l0: int
) -> SparseActivationStore:
    """A cache of the real format with random latents, written by the real finalize."""
    ctx = 1024
    rows = n_tokens // ctx
    spec = replace(
        cache_spec(ws, "forget_corpus"), d_sae=d_sae, context_length=ctx, workspace="synthetic"
    )
    cache = SparseActivationStore(root / "synthetic", spec)
    cache.folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(cache.tokens_path, rng.integers(3, 200_000, size=(rows, ctx), dtype=np.int32))
    cache.write_manifest(rows, [0, 1, 2])
    shard_rows = 128
    weights = 1.0 / np.arange(1, d_sae + 1)  # a few frequent features, a long tail
    weights /= weights.sum()
    for start in range(0, rows, shard_rows):
        end = min(start + shard_rows, rows)
        tokens_here = (end - start) * ctx
        counts = rng.poisson(l0, size=tokens_here)
        feature = rng.choice(d_sae, size=int(counts.sum()), p=weights)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        value = rng.exponential(5.0, size=len(feature))
        write_shard(cache.shards_dir, start, end, (indptr, feature, value), d_sae)
    started = time.perf_counter()
    finalize(cache)
    seconds = time.perf_counter() - started
    print(f"synthetic cache: finalize of {n_tokens:,} tokens took {seconds:.1f} s")
    return cache


def read_speed(ws: Workspace) -> dict:
    with tempfile.TemporaryDirectory() as root:
        cache = synthetic_cache(ws, Path(root), 1_048_576, 16_384, 20)
        started = time.perf_counter()
        token = cache.csc()[1]
        open_s = time.perf_counter() - started
        times = []
        for feature in np.random.default_rng(1).integers(0, 16_384, size=50):
            started = time.perf_counter()
            cache.feature(int(feature))
            times.append(time.perf_counter() - started)
        frequent = time.perf_counter()
        cache.feature(0)  # the most frequent feature: the largest slice
        frequent = time.perf_counter() - frequent
        views = []
        for feature in (0, 100, 5000):
            started = time.perf_counter()
            read = FeatureActivations.read(cache, feature)
            read.top(10)
            read.by_interval()
            views.append(time.perf_counter() - started)
        started = time.perf_counter()
        stats = corpus_stats(cache)
        table = feature_table(stats, stats)
        stats_s = time.perf_counter() - started
        return {
            "nnz": len(token),
            "open_s": open_s,
            "feature_median_s": float(np.median(times)),
            "feature_max_s": float(np.max(times)),
            "most_frequent_feature_s": frequent,
            "stats_table_s": stats_s,
            "feature_view_s": max(views),
            "features": len(table),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    configure_environment()
    ws = Workspace.open(args.workspace)
    assert ws.sae is not None
    for threads in (1, 2):
        result = build_speed(ws, args.rows, threads, args.batch_size)
        print(
            f"threads {threads}: {result['tokens']:,} tokens | bare forward "
            f"{result['bare_tok_s']:,.0f} tok/s | cache build {result['build_tok_s']:,.0f} tok/s "
            f"| ratio {result['ratio']:.3f} | L0 {result['l0']:.1f} | "
            f"{result['bytes_per_latent']:.2f} B per active latent | "
            f"{result['bytes_per_token']:.1f} B per token "
            f"(+{result['tokens_npy_bytes_per_token']:.0f} B token id) vs dense fp16 residual "
            f"{result['dense_fp16_bytes_per_token']} B per token"
        )
    result = read_speed(ws)
    print(
        f"1M-token synthetic cache ({result['nnz']:,} latents, 16,384 features): open "
        f"{result['open_s'] * 1e3:.1f} ms | one feature median "
        f"{result['feature_median_s'] * 1e3:.2f} ms, max {result['feature_max_s'] * 1e3:.2f} ms, "
        f"most frequent {result['most_frequent_feature_s'] * 1e3:.2f} ms | statistics table "
        f"{result['stats_table_s']:.2f} s | open a feature (top 10 + intervals, slowest of "
        f"three) {result['feature_view_s'] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
