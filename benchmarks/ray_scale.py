"""Ray against the serial path (issue 16) on one machine.

    python benchmarks/ray_scale.py [--workspace offline-gemma3-270m] [--rows 32]
        [--nodes 1|2] [--ray-start] [--repeats 2] [--sweep-points 8] [--skip-sweep]

Cache build of the same forget-corpus rows: serial with 2 torch threads (before Ray starts,
so Ray's processes take nothing from it) against `--ray` with 2 single-threaded workers and
shards of `--shard-rows` (pool made and model loaded before the clock starts; that start-up
is reported apart), and the ratio of the best of `--repeats` each (target ≥ 0.9); serial
with 1 thread for reference. Overhead per call: empty calls through the pool, and a shard's
arrays returned to the driver instead of written by the worker. Sweep:
`--sweep-points` points (threshold 0.01, n 2, c 10, 20, ... on all questions) over 2 workers
against the serial sweep, with the largest difference of any number. `--nodes 2` runs Ray on
a simulated 2-node cluster (two raylets on this machine, one CPU each), made in-process by
ray.cluster_utils.Cluster, or with `--ray-start` by the commands a real cluster runs:
`ray start --head` and `ray start --address` as two processes (stopped with `ray stop`
at the end, which stops every `ray start` node of this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.base.environment import configure_environment
from core.cache.build import build, build_caches
from core.cache.store import SparseActivationStore
from core.evaluation.evaluator import Evaluator
from core.evaluation.settings import EvalSettings
from core.scale.cache_build import build_caches_on_ray
from core.scale.cluster import WorkerPool
from core.scale.sweeps import sweep_on_ray
from core.sweeps.grid import SweepConfig
from core.sweeps.run import sweep
from core.workspace.workspace import Workspace

CACHE_ENV = "UNLEARNING_LENS_CACHE_DIR"


def start_ray(nodes: int, ray_start: bool):
    import ray

    if ray_start:
        address = start_ray_processes(nodes)
        ray.init(address=address, logging_level="WARNING")
        return None
    if nodes == 1:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="WARNING")
    return cluster


def start_ray_processes(nodes: int) -> str:
    """A head and `nodes - 1` workers of one CPU each, started by `ray start` with the token
    authentication this process's environment has (set before Ray is imported); the
    address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common]
    subprocess.run(head, check=True, capture_output=True)
    for _ in range(nodes - 1):
        worker = [ray, "start", f"--address=127.0.0.1:{port}", *common]
        subprocess.run(worker, check=True, capture_output=True)
    return f"127.0.0.1:{port}"


def timed_serial_build(ws: Workspace, root: Path, rows: int, threads: int = 2) -> float:
    os.environ[CACHE_ENV] = str(root)
    torch.set_num_threads(threads)
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    started = time.perf_counter()
    build(cache, ws, rows)
    return time.perf_counter() - started


def timed_ray_build(
    ws: Workspace, pool: WorkerPool, root: Path, rows: int, shard_rows: int, shared=None
) -> float:
    os.environ[CACHE_ENV] = str(root)
    cache = SparseActivationStore.for_workspace(ws, "forget_corpus")
    started = time.perf_counter()
    build_caches_on_ray(ws, pool, [cache], rows, shard_rows=shard_rows, shared=shared)
    return time.perf_counter() - started


def call_overhead(pool: WorkerPool, calls: int = 200) -> float:
    started = time.perf_counter()
    pool.run([("pid", ())] * calls, lambda *_: None)
    return (time.perf_counter() - started) / calls


def sweep_comparison(ws_config: Path, root: Path, pool: WorkerPool, points: int) -> dict:
    """The same sweep serially (2 threads) and on Ray, each in a copy of the built caches."""
    config = SweepConfig((0.01,), (2,), tuple(10.0 * (i + 1) for i in range(points)))
    settings = EvalSettings(
        question_limit=4, loss_rows=2, loss_context=64, known_filter=False, split="all"
    )
    os.environ[CACHE_ENV] = str(root / "serial")
    ws = Workspace.open(str(ws_config))
    torch.set_num_threads(2)
    build_caches(ws)
    shutil.copytree(root / "serial", root / "ray")
    evaluator = Evaluator(ws, settings)
    evaluator.baseline()  # both sides start from a computed baseline
    shutil.copytree(evaluator.folder, root / "ray" / ws.name / "evals", dirs_exist_ok=True)
    started = time.perf_counter()
    serial = sweep(evaluator, config)
    serial_s = time.perf_counter() - started
    os.environ[CACHE_ENV] = str(root / "ray")
    ray_evaluator = Evaluator(Workspace.open(str(ws_config)), settings)
    started = time.perf_counter()
    on_ray = sweep_on_ray(ray_evaluator, config, pool)
    ray_s = time.perf_counter() - started
    a, b = (json.loads(json.dumps(r["points"])) for r in (serial, on_ray))
    return {"serial_s": serial_s, "ray_s": ray_s, "max_diff": max_difference(a, b)}


def max_difference(a, b) -> float:
    """The largest absolute difference between the numbers of two equal-shaped records."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max([max_difference(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, list):
        assert len(a) == len(b)
        return max([max_difference(x, y) for x, y in zip(a, b, strict=True)] or [0.0])
    if isinstance(a, int | float) and not isinstance(a, bool):
        return abs(a - b)
    assert a == b, (a, b)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--rows", type=int, default=32, help="forget-corpus rows to build")
    parser.add_argument("--shard-rows", type=int, default=8, help="rows per Ray call")
    parser.add_argument("--nodes", type=int, choices=[1, 2], default=1)
    parser.add_argument("--ray-start", action="store_true", help="nodes by `ray start`")
    parser.add_argument("--sweep-points", type=int, default=8)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="best of, for both builds")
    args = parser.parse_args()
    if args.ray_start:  # Ray reads these when it is imported
        os.environ |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    configure_environment()
    print(f"load average at start: {os.getloadavg()}")
    ws = Workspace.open(args.workspace)
    assert ws.sae is not None
    tmp = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    cluster = None
    try:
        # the serial builds first, alone: Ray's own processes would take their share of the
        # cores from them
        timed_serial_build(ws, tmp / "serial-warm-up", 2)
        serial_s = min(
            timed_serial_build(ws, tmp / f"serial-{i}", args.rows) for i in range(args.repeats)
        )
        one_thread_s = timed_serial_build(ws, tmp / "one-thread", args.rows, threads=1)
        started = time.perf_counter()
        cluster = start_ray(args.nodes, args.ray_start)
        pool = WorkerPool(workers=2, threads=1)
        timed_ray_build(ws, pool, tmp / "warm-up", 2, 1)  # each actor loads the model
        print(f"Ray start, 2 actors and their model loads: {time.perf_counter() - started:.1f} s")
        ray_s = min(
            timed_ray_build(ws, pool, tmp / f"ray-{i}", args.rows, args.shard_rows)
            for i in range(args.repeats)
        )
        returned_s = timed_ray_build(
            ws, pool, tmp / "returned", args.rows, args.shard_rows, shared=False
        )
        tokens = args.rows * ws.config.budgets.context_length
        print(
            f"cache build, {tokens:,} tokens ({args.rows} rows; Ray: shards of {args.shard_rows}): "
            f"serial 2 threads "
            f"{tokens / serial_s:,.0f} tok/s | Ray 2 x 1 thread ({args.nodes} node(s)) "
            f"{tokens / ray_s:,.0f} tok/s | ratio {serial_s / ray_s:.2f} | shards returned to "
            f"the driver {tokens / returned_s:,.0f} tok/s | serial 1 thread "
            f"{tokens / one_thread_s:,.0f} tok/s"
        )
        print(f"overhead per empty call through the pool: {call_overhead(pool) * 1e3:.2f} ms")
        if not args.skip_sweep:
            from tests.helpers import small_workspace_config

            config = small_workspace_config(tmp, rows=16, context_length=64)
            result = sweep_comparison(config, tmp / "sweep", pool, args.sweep_points)
            print(
                f"sweep of {args.sweep_points} points (4 questions a set, 2 loss rows of 64 "
                f"tokens, all questions): serial 2 threads {result['serial_s']:.1f} s | Ray "
                f"2 x 1 thread {result['ray_s']:.1f} s | speed-up "
                f"{result['serial_s'] / result['ray_s']:.2f}x | largest difference of any "
                f"number {result['max_diff']:.2e}"
            )
        pool.shutdown()
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()  # its raylets and GCS, started by this process
        if args.ray_start:
            ray_cli = str(Path(sys.executable).parent / "ray")
            subprocess.run([ray_cli, "stop"], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
