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


def watched_job(key: str, work: Callable[[Report], object] | None) -> None:
    """Start `work` in the background under `key` when given (a running one goes on), show
    its progress and Cancel button while it runs, and its error once when it ends."""
    if work is not None:
        _jobs().start(key, work)
    job = _jobs().get(key)
    if job is not None and job.running:
        _watch(key)
    elif job is not None:
        if job.error:
            st.error(plain(job.error))
        _jobs().forget(key)
