"""Connecting to Ray and the pool of model-holding actors.

`connect(address)` checks the address before anything starts (one clear UserError when no
cluster answers there); `WorkerPool` makes one actor per worker (CPU threads or a GPU each),
restarted by Ray when its process dies, with the interrupted call retried; `run` keeps every
actor busy and turns a failed call into a UserError carrying the worker's message.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from core.base.paths import REPO_ROOT
from core.errors import UserError
from core.scale.worker import WorkspaceWorker

LOCAL = None  # `--ray` without an address: a new Ray instance in this process, local CPUs
CONNECT_TIMEOUT_S = 3.0
RESTARTS = 3  # per actor: a killed worker process is restarted and its call retried
IN_FLIGHT = 2  # calls queued per actor, so an actor never waits for the driver

Call = tuple[str, tuple]  # (WorkspaceWorker method, arguments)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            "--ray needs Ray: `pip install ray==2.60.0` (it is in requirements.txt)."
        ) from exc
    return ray


def check_address(address: str | None) -> None:
    """Refuse, in about a second, an address where nothing listens (before any work)."""
    if address in (LOCAL, "auto"):
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"--ray {address}: expected HOST:PORT of the head node (e.g. 10.0.0.5:6379, "
            "or ray://HOST:10001 for Ray Client)."
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}). Start one with "
            "`ray start --head` on the head node and give its address, or use --ray alone "
            "for a cluster on this machine. Nothing was started."
        ) from exc


def connect(address: str | None = LOCAL, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or start one on this machine); a no-op when this
    process is connected already."""
    check_address(address)
    ray = import_ray()
    if ray.is_initialized():
        return
    try:
        ray.init(
            address="local" if address is LOCAL else address,
            num_cpus=num_cpus if address is LOCAL else None,
            include_dashboard=False,
            logging_level="WARNING",
        )
    except ConnectionError as exc:
        if refused_token(exc):
            raise UserError(
                f"The Ray cluster at {address} asks for its authentication token, and this "
                "process did not give it. Set RAY_AUTH_MODE=token here, as on its nodes, with "
                "the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token "
                "(docs/scale-out.md). Nothing was started."
            ) from exc
        raise UserError(f"Could not join the Ray cluster at {address}: {exc}") from exc


def refused_token(exc: BaseException | None) -> bool:
    """Whether Ray's authentication error is behind `exc`: in its chain of causes, where
    Ray 2.60 keeps it as the text of a RuntimeError."""
    while exc is not None:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def worker_message(exc: Exception) -> str:
    """The worker's own message for a failed call (its error, not Ray's traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        return str(cause)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip() if lines else 'no message'}"


class WorkerPool:
    """Actors holding the model and SAE: `workers` of them (default: as many as the
    cluster's free CPUs, or GPUs when `num_gpus` is set, allow), `threads` torch threads
    each."""

    def __init__(self, workers: int | None = None, threads: int = 1, num_gpus: float = 0.0):
        ray = import_ray()
        if threads < 1:
            raise UserError(f"--threads must be ≥ 1, not {threads}.")
        if num_gpus < 0:
            raise UserError(f"--num-gpus must be ≥ 0, not {num_gpus}.")
        if workers is None:
            resources = ray.available_resources()  # what other pools leave free
            by_cpu = int(resources.get("CPU", 0) // threads)
            by_gpu = int(resources.get("GPU", 0) // num_gpus) if num_gpus else by_cpu
            workers = min(by_cpu, by_gpu)
            if workers < 1:
                raise UserError(
                    f"The Ray cluster has no free {'GPU' if num_gpus else 'CPU'} for a worker "
                    f"({threads} threads{f', {num_gpus:g} GPU' if num_gpus else ''} each): "
                    "wait for its other jobs or add a node."
                )
        actor = ray.remote(WorkspaceWorker).options(
            num_cpus=threads,
            num_gpus=num_gpus,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        )
        self.actors = [actor.remote(threads) for _ in range(workers)]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def pids(self) -> list[int]:
        """The actors' process ids (each actor is one process)."""
        return self.get([actor.pid.remote() for actor in self.actors])

    def get(self, refs: list) -> list:
        ray = import_ray()
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise UserError(f"A Ray worker failed: {worker_message(exc)}") from exc

    def run(
        self,
        calls: Sequence[Call],
        on_result: Callable[[int, Any], None],
        on_restart: Callable[[int], None] | None = None,
    ) -> None:
        """Make every call on some actor (at most IN_FLIGHT queued per actor);
        `on_result(index of the call, its result)` on the driver as each finishes, after
        `on_restart(index)` when that call ran on a restarted actor (its process died, Ray
        started another and retried the calls it held). After a failed call no new call
        starts; the running ones finish (their results are kept) and a UserError says what
        failed."""
        ray = import_ray()
        pids = dict(enumerate(self.pids()))
        pending = list(enumerate(calls))[::-1]
        running: dict[Any, tuple[int, Any]] = {}  # object ref: (call index, actor)
        load = dict.fromkeys(range(len(self.actors)), 0)
        failure: Exception | None = None
        while running or (pending and failure is None):
            while pending and failure is None and min(load.values()) < IN_FLIGHT:
                slot = min(load, key=load.get)
                index, (method, args) = pending.pop()
                ref = self.actors[slot].call.remote(method, *args)
                running[ref] = (index, slot)
                load[slot] += 1
            [ready], _ = ray.wait(list(running), num_returns=1)
            index, slot = running.pop(ready)
            load[slot] -= 1
            try:
                pid, result = ray.get(ready)
            except ray.exceptions.RayError as exc:
                failure = failure or exc
                continue
            if pid != pids[slot]:
                pids[slot] = pid
                if on_restart is not None:
                    on_restart(index)
            on_result(index, result)
        if failure is not None:
            raise UserError(f"A Ray worker failed: {worker_message(failure)}") from failure
