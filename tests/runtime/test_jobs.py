"""Background runs: one per key, progress, results, errors, cancellation."""

import threading

from core.errors import UserError
from core.runtime.jobs import Jobs


def test_a_job_runs_once_per_key_and_keeps_its_result():
    jobs, gate = Jobs(), threading.Event()

    def work(report):
        report("halfway", 0.5)
        gate.wait(10)
        return 42

    first = jobs.start("k", work)
    assert jobs.start("k", work) is first  # still running: the same job
    gate.set()
    assert first.finished.wait(10) and first.result == 42 and first.error is None
    jobs.forget("k")
    assert jobs.get("k") is None


def test_cancelling_stops_the_run_at_its_next_report():
    jobs, started, steps = Jobs(), threading.Event(), []

    def work(report):
        for step in range(1000):
            report("step", step / 1000)
            steps.append(step)
            started.set()
            threading.Event().wait(0.01)
        return "finished"

    job = jobs.start("k", work)
    started.wait(10)
    job.cancel()
    assert job.finished.wait(10)
    assert job.result is None and "cancelled" in job.error and len(steps) < 1000


def test_errors_are_messages():
    jobs = Jobs()

    def refuse(report):
        raise UserError("c is negative")

    def crash(report):
        raise RuntimeError("boom")

    refused, crashed = jobs.start("a", refuse), jobs.start("b", crash)
    assert refused.finished.wait(10) and refused.error == "c is negative"
    assert crashed.finished.wait(10) and "RuntimeError" in crashed.error
