"""One local Ray cluster (2 CPUs, in-process) and one pool of two single-threaded actors for
all of tests/scale: each actor loads the model once, whatever workspace a test opens."""

import os

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # Ray kills workers when the machine's memory is 95% used, whoever uses it; on a shared
    # test machine that would fail these tests for other processes' sake.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    # 3 logical CPUs: the package's pool of 2 workers, and 1 free for the page's own pool
    ray.init(address="local", num_cpus=3, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="package")
def pool(ray_cluster):
    from core.scale.cluster import WorkerPool

    with WorkerPool(workers=2, threads=1) as pool:
        yield pool
