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


def test_each_stage_keeps_its_own_start_for_the_time_left():
    jobs, gate, moved = Jobs(), threading.Event(), threading.Event()

    def work(report):
        report("forget", 0.9)
        threading.Event().wait(0.05)
        report("retain", 0.1)  # a new stage: its time left counts from here
        moved.set()
        gate.wait(10)

    job = jobs.start("k", work)
    created = job.stage_started
    assert moved.wait(10)
    assert job.stage == "retain" and job.stage_started >= created + 0.05
    gate.set()
    assert job.finished.wait(10)


def test_the_runs_of_a_workspace_are_listed_by_their_titles_while_they_run():
    jobs, gate = Jobs(), threading.Event()
    jobs.start("ws-a/run-1.json", lambda report: gate.wait(10), "Evaluation: 3 features")
    jobs.start("ws-a/relearn-2.json", lambda report: gate.wait(10))
    jobs.start("ws-b/run-1.json", lambda report: gate.wait(10))
    listed = jobs.running("ws-a/")
    assert [j.title for j in listed] == ["Evaluation: 3 features", "ws-a/relearn-2.json"]
    gate.set()
    assert all(j.finished.wait(10) for j in listed) and jobs.running("ws-a/") == []
