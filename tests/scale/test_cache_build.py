"""`cache build --ray` on a local cluster: byte-identical to the serial build (shards written
by the workers, or returned to the driver), a killed worker retried, failures reported with
the worker's message and finished shards kept."""

import os
import shutil
import signal

import numpy as np
import pytest
import torch

from core.cache.build import build
from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.scale.cache_build import build_caches_on_ray
from core.workspace.workspace import Workspace
from tests.helpers import folder_bytes, small_workspace_config

pytestmark = pytest.mark.model

ROWS, SHARD_ROWS = 8, 2


@pytest.fixture
def small_ws(tmp_path, offline_ws, monkeypatch) -> Workspace:
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "ray-cache"))
    return Workspace.open(str(small_workspace_config(tmp_path, rows=ROWS)))


@pytest.fixture(scope="module")
def serial_files(tmp_path_factory, offline_ws) -> dict[str, bytes]:
    """The serial build's files (forget corpus, same spec as `small_ws`) with one torch
    thread like each worker: other thread counts sum in another order, and a few fp16
    values then differ in their last bit."""
    root = tmp_path_factory.mktemp("serial")
    saved = os.environ["UNLEARNING_LENS_CACHE_DIR"], torch.get_num_threads()
    os.environ["UNLEARNING_LENS_CACHE_DIR"] = str(root / "cache")
    torch.set_num_threads(1)
    try:
        ws = Workspace.open(str(small_workspace_config(root, rows=ROWS)))
        cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
        build(cache, ws, ROWS, shard_rows=SHARD_ROWS)
        return folder_bytes(cache.folder)
    finally:
        os.environ["UNLEARNING_LENS_CACHE_DIR"] = saved[0]
        torch.set_num_threads(saved[1])


def ray_build(ws, pool, **options) -> SparseActivationStore:
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    build_caches_on_ray(ws, pool, [cache], ROWS, shard_rows=SHARD_ROWS, **options)
    return cache


@pytest.mark.parametrize("shared", [None, False], ids=["written-by-workers", "via-driver"])
def test_ray_build_is_byte_identical_to_the_serial_build(small_ws, pool, serial_files, shared):
    cache = ray_build(small_ws, pool, shared=shared)
    assert cache.status().complete
    files = folder_bytes(cache.folder)
    assert sorted(files) == sorted(serial_files)  # no temporary file or probe left
    assert files == serial_files


def test_a_worker_killed_mid_shard_is_restarted_and_the_build_completes(
    small_ws, pool, serial_files
):
    before = pool.pids()
    killed = []

    def kill_once(role: str, done: int, total: int) -> None:
        if not killed:  # both actors are busy with their next shard now
            os.kill(before[0], signal.SIGKILL)
            killed.append(before[0])

    cache = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    build_caches_on_ray(small_ws, pool, [cache], ROWS, kill_once, shard_rows=SHARD_ROWS)
    assert killed and pool.pids()[0] != before[0]  # restarted by Ray
    assert folder_bytes(cache.folder) == serial_files


def test_failed_shards_stop_the_build_with_the_workers_message_and_keep_finished_ones(
    small_ws, pool
):
    cache = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    build(cache, small_ws, ROWS, shard_rows=SHARD_ROWS, shard=(0, ROWS))  # tokens, one shard
    tokens = np.load(cache.tokens_path)
    tokens[4:] = 10**7  # no such token id: the model fails on shards 4-6 and 6-8
    np.save(cache.tokens_path, tokens)
    with pytest.raises(UserError, match="A Ray worker failed: IndexError"):
        ray_build(small_ws, pool)
    assert cache.complete_shards() == [(0, 2), (2, 4)]
    assert not list(cache.shards_dir.glob(".tmp-*")) and not list(cache.folder.glob(".tmp-*"))


def test_a_worker_that_cannot_load_the_sae_stops_the_build_with_its_message(
    tmp_path, small_ws, pool
):
    shipped = small_ws.sae_path
    broken = tmp_path / "broken-sae"
    shutil.copytree(shipped, broken)
    (broken / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    ws = Workspace.open(str(small_workspace_config(tmp_path, rows=ROWS, sae__path=str(broken))))
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")  # the driver never loads it
    with pytest.raises(UserError, match="worker failed: SafetensorError: Error while"):
        build_caches_on_ray(ws, pool, [cache], ROWS, shard_rows=SHARD_ROWS)
    assert cache.complete_shards() == []
    assert not list(cache.shards_dir.glob(".tmp-*")) and not list(cache.folder.glob(".tmp-*"))
