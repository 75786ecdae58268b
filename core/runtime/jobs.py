"""Long runs in background threads that outlive the page run that started them: a page that
reruns (a click elsewhere, a reload) finds its run still going, shows its progress, and can
cancel it. A cancelled run stops at its next progress report; what it had not finished is
not kept (memos are written only when a run completes)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import UserError

log = logging.getLogger(__name__)

Report = Callable[[str, float], None]  # (stage, fraction done)
Progress = Callable[[int, int, dict], None]  # (done, total, the point just measured)


class Cancelled(UserError):
    """A run stopped by the user before it finished; nothing it computed was kept."""


@dataclass
class Job:
    """One background run: its progress, and its result or error once finished."""

    key: str
    title: str = ""  # what it runs, as a list of runs names it
    stage: str = "starting"
    fraction: float = 0.0
    result: Any = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stage_started: float = field(default_factory=time.monotonic)  # time.monotonic()

    def report(self, stage: str, fraction: float) -> None:
        """The run's progress callback; raises Cancelled once the user asked to stop."""
        if self.cancelled.is_set():
            raise Cancelled(f"The run was cancelled during: {self.stage}.")
        fraction = min(max(fraction, 0.0), 1.0)
        if stage != self.stage or fraction < self.fraction:
            self.stage_started = time.monotonic()  # a new stage: its own pace and time left
        self.stage, self.fraction = stage, fraction

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def running(self) -> bool:
        return not self.finished.is_set()


class Jobs:
    """The background runs of one server, one per key (starting a key that runs returns
    the running job)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def running(self, prefix: str = "") -> list[Job]:
        """The runs going on whose key starts with `prefix` (a workspace's: "name/"), in
        the order they started."""
        with self._lock:
            return [j for k, j in self._jobs.items() if k.startswith(prefix) and j.running]

    def start(self, key: str, work: Callable[[Report], Any], title: str = "") -> Job:
        """Run `work(report)` in a thread unless `key` runs already; its UserError becomes
        the job's error, any other exception is logged and named."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.running:
                return job
            job = self._jobs[key] = Job(key, title or key)

        def run() -> None:
            try:
                job.result = work(job.report)
            except UserError as exc:
                job.error = str(exc)
            except Exception as exc:
                log.exception("Background run %s failed", key)
                job.error = f"The run failed ({exc.__class__.__name__}); see the server's log."
            finally:
                job.finished.set()

        threading.Thread(target=run, name=f"run-{key}", daemon=True).start()
        return job

    def forget(self, key: str) -> None:
        """Drop a finished job (its result has been shown)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]
