"""The sparse activation cache on the real model and SAE: exactness against a plain loop,
kill-and-resume, shard + merge, extension, stale and corrupt caches."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from core.base.paths import REPO_ROOT
from core.cache import shards
from core.cache.build import build, finalize
from core.cache.merge import merge_from
from core.cache.spec import CacheError
from core.cache.store import SparseActivationStore
from core.errors import DataSourceError
from core.features.stats import corpus_stats
from core.workspace.workspace import Workspace
from tests.helpers import folder_bytes, small_workspace_config

pytestmark = pytest.mark.model


@pytest.fixture
def small_ws(tmp_path, offline_ws, cache_root) -> Workspace:
    ws = Workspace.open(str(small_workspace_config(tmp_path)))
    assert ws.model is offline_ws.model
    return ws


def built(
    ws: Workspace, role: str = "forget_corpus", rows: int = 16, **kwargs
) -> SparseActivationStore:
    cache = SparseActivationStore.for_workspace(ws, role)
    build(cache, ws, rows, shard_rows=kwargs.pop("shard_rows", 4), **kwargs)
    return cache


@torch.no_grad()
def test_cache_and_frequencies_equal_a_plain_loop(small_ws):
    cache = built(small_ws)
    tokens = np.asarray(cache.tokens())
    sae, model = small_ws.sae, small_ws.model
    special = torch.tensor(cache.special_token_ids())
    dense = []
    for row in tokens:  # one row at a time, the full model, the SAE's own encode
        _, run = model.run_with_cache(
            torch.from_numpy(row[None]).long(), names_filter=small_ws.hook
        )
        dense.append(sae.encode(run[small_ws.hook])[0])
    acts = torch.stack(dense).reshape(-1, sae.cfg.d_sae)
    flat_tokens = torch.from_numpy(tokens.ravel()).long()
    counted = ~torch.isin(flat_tokens, special)
    stats = corpus_stats(cache)
    assert np.array_equal(stats.count["authors"], (acts > 0).sum(0).numpy())
    assert np.array_equal(stats.count["saebench"], (acts[counted] > 0).sum(0).numpy())
    assert stats.tokens == {"authors": tokens.size, "saebench": int(counted.sum())}
    assert counted.sum() < tokens.size  # BOS (and EOS) really are left out
    np.testing.assert_allclose(
        stats.max["authors"], acts.max(0).values.numpy(), rtol=2e-3, atol=1e-3
    )
    top = int(np.argmax(stats.count["saebench"]))
    positions, values = cache.feature(top)
    expected = torch.nonzero(acts[:, top] > 0).squeeze(1).numpy()
    assert np.array_equal(positions, expected)
    np.testing.assert_allclose(values, acts[expected, top].numpy(), rtol=2e-3, atol=1e-3)


def test_kill_and_resume_gives_an_identical_cache(tmp_path, small_ws, cache_root):
    # the same shard and batch sizes as the command below: forward passes of other shapes may
    # round differently in the last bit on some CPUs' kernels
    reference = built(small_ws, rows=64, shard_rows=2, batch_size=8)
    killed_root = tmp_path / "killed"
    env = {**os.environ, "UNLEARNING_LENS_CACHE_DIR": str(killed_root)}
    command = [
        sys.executable,
        "-m",
        "core",
        "cache",
        "build",
        "--workspace",
        small_ws.config.config_path,
        "--corpus",
        "forget",
        "--rows",
        "64",
        "--shard-rows",
        "2",
        "--batch-size",
        "8",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shards = killed_root / reference.folder.relative_to(cache_root) / "shards"
    deadline = time.monotonic() + 300
    while len(list(shards.glob("rows-*"))) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (shards.parent / "csc").exists()  # really interrupted mid-build
    resumed = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert folder_bytes(shards.parent) == folder_bytes(reference.folder)


def test_shards_built_apart_and_merged_equal_one_build(tmp_path, small_ws, monkeypatch):
    single = folder_bytes(built(small_ws).folder)
    parts = []
    for index in range(3):
        monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / f"machine{index}"))
        cache = built(small_ws, shard=(index, 3))
        assert not cache.status().complete
        parts.append(cache.folder)
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "merged"))
    merged = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    assert (
        merge_from(merged, [tmp_path / "machine0", tmp_path / "machine1", tmp_path / "machine2"])
        == 4
    )
    assert finalize(merged)
    assert folder_bytes(merged.folder) == single


def test_two_builds_at_once_make_the_cache_one_build_makes(small_ws):
    """Two sessions building one cache at once (threads; processes take the same file lock):
    the second waits for the first and finds the rows built."""
    start = threading.Barrier(2)

    def builder() -> Path:
        start.wait()
        return built(small_ws, rows=8, shard_rows=2).folder

    with ThreadPoolExecutor(2) as pool:
        folders = [future.result() for future in [pool.submit(builder) for _ in range(2)]]
    assert folders[0] == folders[1]
    together = folder_bytes(folders[0])
    shutil.rmtree(folders[0])
    assert folder_bytes(built(small_ws, rows=8, shard_rows=2).folder) == together


def test_two_processes_building_one_cache_at_once_make_what_one_build_makes(small_ws, tmp_path):
    """Two `cache build` commands at once (as `make run` beside `make test`): both succeed,
    the second waits on the build's file lock and finds the rows built."""
    argv = [sys.executable, "-m", "core", "cache", "build", "--workspace"]
    argv += [str(small_workspace_config(tmp_path)), "--corpus", "forget", "--rows", "8"]
    argv += ["--shard-rows", "2"]
    runs = [
        subprocess.Popen(argv, cwd=REPO_ROOT, env=os.environ.copy(), stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0 and b"Traceback" not in err, err.decode()
    cache = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    together = folder_bytes(cache.folder)
    shutil.rmtree(cache.folder)
    assert folder_bytes(built(small_ws, rows=8, shard_rows=2).folder) == together


def test_extending_builds_only_the_new_rows(tmp_path, small_ws, monkeypatch):
    full = folder_bytes(built(small_ws, rows=16).folder)
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "grown"))
    cache = built(small_ws, rows=8)
    first_rows = np.asarray(cache.tokens()).copy()
    assert cache.plan(16, 4) == [(8, 12), (12, 16)]
    build(cache, small_ws, 16, shard_rows=4)
    assert np.array_equal(np.asarray(cache.tokens())[:8], first_rows)
    assert folder_bytes(cache.folder) == full


def test_changed_corpus_never_reuses_the_cache(tmp_path, small_ws):
    original = built(small_ws)
    data = tmp_path / "data"
    (data / "openstax-biology").mkdir(parents=True)
    source = small_ws.config.local_path(small_ws.config.source("forget_corpus"))
    text = source.read_text().replace("cell", "cells", 1)
    (data / "openstax-biology" / source.name).write_text(text)
    for role in ("retain_corpus",):
        path = small_ws.config.local_path(small_ws.config.source(role))
        (data / path.parent.name).mkdir(exist_ok=True)
        (data / path.parent.name / path.name).symlink_to(path)
    for name in ("wmdp", "mmlu"):
        (data / name).symlink_to(small_ws.config.data_path / name)
    changed_cfg = small_workspace_config(tmp_path / "changed", workspace__data_dir=str(data))
    changed = SparseActivationStore.for_workspace(Workspace.open(str(changed_cfg)), "forget_corpus")
    assert changed.spec.corpus_hash != original.spec.corpus_hash
    assert changed.folder.name != original.folder.name
    assert changed.rows_final() == 0


def test_manifest_that_does_not_match_is_refused_and_kept(small_ws):
    cache = built(small_ws)
    manifest = cache.manifest_path.read_text()
    cache.manifest_path.write_text(manifest.replace('"context_length": 64', '"context_length": 65'))
    before = folder_bytes(cache.folder)
    with pytest.raises(CacheError, match=r"other inputs .*context_length.* left untouched"):
        SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    assert folder_bytes(cache.folder) == before


def test_corrupt_shard_is_moved_aside_and_rebuilt(tmp_path, small_ws, monkeypatch):
    reference = folder_bytes(built(small_ws).folder)
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "corrupt"))
    cache = built(small_ws, shard=(0, 2))
    victim = cache.shards_dir / "rows-0000000-0000004" / "value.npy"
    victim.write_bytes(victim.read_bytes()[:100])
    assert cache.status().shards_complete  # status still lists what is there
    build(cache, small_ws, 16, shard_rows=4)
    assert list(cache.shards_dir.glob("rows-0000000-0000004.corrupt-*"))
    assert {
        k: v for k, v in folder_bytes(cache.folder).items() if not k.startswith("shards")
    } == reference


def test_full_disk_keeps_complete_shards_and_says_so(small_ws, monkeypatch):
    saves = []
    real_save = np.save

    def save_until_full(path, array):
        saves.append(path)
        if len(saves) > 8:  # tokens.npy, then shards of 3 files each: fail in the third
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(path, array)

    monkeypatch.setattr(shards.np, "save", save_until_full)
    cache = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    with pytest.raises(CacheError, match=r"No space left on device.*Complete shards are kept"):
        build(cache, small_ws, 16, shard_rows=4)
    assert cache.complete_shards() == [(0, 4), (4, 8)]
    assert not list(cache.shards_dir.glob(".tmp-*"))
    monkeypatch.setattr(shards.np, "save", real_save)
    assert build(cache, small_ws, 16, shard_rows=4).complete


def test_budget_larger_than_the_corpus_is_refused(small_ws):
    with pytest.raises(DataSourceError, match="holds only"):
        built(small_ws, role="retain_corpus", rows=100_000)


def test_feature_out_of_range(small_ws):
    cache = built(small_ws)
    with pytest.raises(CacheError, match="Feature 4096 is out of range"):
        cache.feature(4096)


def test_empty_corpus_is_refused(tmp_path, cache_root, offline_ws):
    (tmp_path / "short.jsonl").write_text('{"text": "too short"}\n')
    cfg = small_workspace_config(tmp_path, data__forget_corpus__path=str(tmp_path / "short.jsonl"))
    with pytest.raises(DataSourceError, match="no documents longer than 50"):
        built(Workspace.open(str(cfg)))
