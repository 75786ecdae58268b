"""Speed of the exploration views (issue 17): neighbours, co-occurrence, the feature map and
contrast search.

    python benchmarks/explore.py [--workspace offline-gemma3-270m] [--skip-map]

On a synthetic SAE of 16,384 features × 2,304 dims (Gemma Scope 16k's shape): the neighbour
tables (once), then one feature's neighbours from them (target < 50 ms); the feature map
(UMAP, once, target < 2 min) and loading it back (target < 1 s). On a synthetic 1M-token cache
(benchmarks/cache_build.py's builder): co-occurrence of one feature (target < 0.5 s). On the
workspace's model: contrast search of 2 × 50 pasted paragraphs (target < 30 s on CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cache_build import synthetic_cache
from core.base.environment import configure_environment
from core.base.records import save_array
from core.features.contrast import contrast
from core.features.cooccurrence import cooccurrence
from core.features.feature_map import FeatureMapConfig, umap_layout
from core.features.neighbours import Neighbours, top_cosine
from core.workspace.workspace import Workspace

D_SAE, D_IN = 16_384, 2_304


def neighbours_speed(root: Path, directions: torch.Tensor) -> None:
    started = time.perf_counter()
    folder = root / "neighbours"
    for direction in ("decoder", "encoder"):
        index, cosine = top_cosine(directions, k=32)
        save_array(folder / f"{direction}_index.npy", index)
        save_array(folder / f"{direction}_cosine.npy", cosine)
    print(
        f"neighbour tables, decoder + encoder, 16k features: {time.perf_counter() - started:.1f} s"
    )
    times = []
    for feature in np.random.default_rng(1).integers(0, D_SAE, size=50):
        started = time.perf_counter()
        Neighbours(folder).of(int(feature), "decoder", 10)  # opened afresh: the page's path
        times.append(time.perf_counter() - started)
    print(f"one feature's neighbours: median {1e3 * np.median(times):.2f} ms, max "
          f"{1e3 * max(times):.2f} ms (target < 50 ms)")  # fmt: skip


def map_speed(root: Path, directions: np.ndarray) -> None:
    started = time.perf_counter()
    layout = umap_layout(directions, FeatureMapConfig())
    print(f"feature map, 16k features (UMAP, includes numba compile): "
          f"{time.perf_counter() - started:.1f} s (target < 120 s)")  # fmt: skip
    save_array(root / "map.npy", layout)
    started = time.perf_counter()
    np.load(root / "map.npy")
    print(f"feature map load: {1e3 * (time.perf_counter() - started):.1f} ms (target < 1 s)")


def cooccurrence_speed(ws: Workspace, root: Path) -> None:
    cache = synthetic_cache(ws, root, 1_048_576, D_SAE, 20)
    cooccurrence(cache, 0)  # first touch of the memory-mapped files
    times = []
    for feature in np.random.default_rng(2).integers(0, 2_000, size=10):
        started = time.perf_counter()
        cooccurrence(cache, int(feature))
        times.append(time.perf_counter() - started)
    print(f"co-occurrence, 1M-token cache, one feature: median {np.median(times):.3f} s, max "
          f"{max(times):.3f} s (target < 0.5 s)")  # fmt: skip


def contrast_speed(ws: Workspace) -> None:
    forget, retain = ws.documents("forget_corpus"), ws.documents("retain_corpus")
    paragraph = [d for d in forget if len(d) > 600][:50], [d for d in retain if len(d) > 600][:50]
    texts = [[d[:1200] for d in group] for group in paragraph]  # pasted paragraphs ≈ 250 tokens
    assert ws.sae is not None  # loads the model: not part of the search
    started = time.perf_counter()
    found, record = contrast(ws, texts[0], texts[1])
    seconds = time.perf_counter() - started
    tokens = record["group_a"]["tokens"] + record["group_b"]["tokens"]
    print(f"contrast search, 2 × 50 paragraphs ({tokens:,} tokens): {seconds:.1f} s "
          f"(target < 30 s); top features {found['feature'].head(5).tolist()}")  # fmt: skip
    bare = bare_forward(ws, texts[0]) + bare_forward(ws, texts[1])
    print(f"bare forward of the same texts, same batches: {bare:.1f} s; contrast / bare = "
          f"{seconds / bare:.2f} (a loaded machine slows both alike)")  # fmt: skip


@torch.no_grad()
def bare_forward(ws: Workspace, texts: list[str], batch_size: int = 8) -> float:
    """Seconds of the forward pass alone (to the SAE's layer) over the texts' token rows."""
    bos = ws.tokenizer.bos_token_id
    ids = [ws.tokenizer(t, add_special_tokens=False)["input_ids"][:256] for t in texts]
    rows = sorted(([bos, *row] for row in ids), key=len)  # as contrast batches a group
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(row) for row in batch)
        tokens = torch.tensor([row + [row[0]] * (width - len(row)) for row in batch])
        ws.model(tokens, stop_at_layer=ws.layer + 1)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", default="offline-gemma3-270m")
    parser.add_argument("--skip-map", action="store_true")
    parser.add_argument("--only-contrast", action="store_true")
    args = parser.parse_args()
    configure_environment()
    torch.set_num_threads(2)
    ws = Workspace.open(args.workspace)
    if args.only_contrast:
        contrast_speed(ws)
        return
    directions = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        neighbours_speed(root, directions)
        cooccurrence_speed(ws, root)
        if not args.skip_map:
            map_speed(root, directions.numpy())
    contrast_speed(ws)


if __name__ == "__main__":
    main()
