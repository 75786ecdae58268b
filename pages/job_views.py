"""Background runs on a page: start one, show its progress and Cancel button while it runs
(the run goes on if the page reruns or reloads), its error once it ends. Not a page."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.runtime.jobs import Jobs, Report
from pages.common import plain, time_left


@st.cache_resource(show_spinner=False)
def _jobs() -> Jobs:
    """The server's background runs: a run goes on when the page reruns or reloads."""
    return Jobs()


@st.fragment(run_every=1.0)
def _watch(key: str) -> None:
    """A running evaluation's progress and its Cancel button; the page reruns when it ends."""
    job = _jobs().get(key)
    if job is None or not job.running:
        st.rerun()
    left = time_left(job.fraction, job.stage_started) or "…"
    st.progress(job.fraction, text=f"{job.stage} · {left} (the run goes on if you leave or reload)")
    if st.button("Cancel the run"):
        job.cancel()


@st.fragment(run_every=2.0)
def _runs(prefix: str, keys: tuple[str, ...]) -> None:
    """Every run of the workspace going on, each with its progress and Cancel button; the
    page reruns when one ends (its result then shows)."""
    jobs = _jobs().running(prefix)
    if tuple(job.key for job in jobs) != keys:
        st.rerun()
    st.markdown(f"**Runs going on in this workspace ({len(jobs)})**")
    for job in jobs:
        left = time_left(job.fraction, job.stage_started) or "…"
        row = st.columns([5, 1])
        row[0].progress(job.fraction, text=f"{job.title} · {job.stage} · {left}")
        if row[1].button("Cancel", key=f"cancel {job.key}", disabled=job.cancelled.is_set()):
            job.cancel()


def workspace_runs(workspace: str) -> None:
    """List every run of `workspace` that is queued or running (started on any page or tab
    of this server), so nothing runs unseen."""
    prefix = f"{workspace}/"
    if jobs := _jobs().running(prefix):
        _runs(prefix, tuple(job.key for job in jobs))


def watched_job(key: str, work: Callable[[Report], object] | None, title: str = "") -> None:
    """Start `work` in the background under `key` when given (a running one goes on), show
    its progress and Cancel button while it runs, and its error once when it ends. `title`
    names it in the workspace's list of runs."""
    if work is not None:
        _jobs().start(key, work, title)
    job = _jobs().get(key)
    if job is not None and job.running:
        _watch(key)
    elif job is not None:
        if job.error:
            st.error(plain(job.error))
        _jobs().forget(key)
