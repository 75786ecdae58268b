"""What every page shares: the active workspace and its provenance in the sidebar.

Not a page: app.py lists the pages explicitly, so this module is only imported.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable

import streamlit as st

from core import UserError, Workspace, list_workspaces
from core.base.config_files import default_workspace
from core.base.paths import cache_dir, configs_dir
from core.labels.store import LabelStore

WORKSPACE_KEY = "workspace"
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]()!<>:~$&|#])")  # what links, formats or colours


def url_value(key: str, parse: Callable[[str], object] = str) -> object | None:
    """The URL's value of `key` as `parse` reads it, or None: absent, or one the widget
    cannot take (out of its range, not among its options, not a number), which is ignored
    with a notice. Every value a page reads from the URL comes through here."""
    if key not in st.query_params:
        return None
    text = st.query_params[key]
    try:
        return parse(text)
    except ValueError as exc:
        st.warning(plain(f"The link's {key} = {text!r:.80} is ignored: {exc}."))
        return None


def from_url(key: str, parse: Callable[[str], object] = str) -> None:
    """Seed a widget's state from the URL once per session (see `url_value`), so a reload
    or a shared link restores it."""
    if key not in st.session_state and (value := url_value(key, parse)) is not None:
        st.session_state[key] = value


def to_url(*keys: str) -> None:
    """Write widgets' state into the URL (see `from_url`); an emptied one leaves it."""
    for key in keys:
        value = st.session_state.get(key)
        if value is not None and value != "":
            st.query_params[key] = str(value)
        elif key in st.query_params:
            del st.query_params[key]


def within(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    """A `from_url` parser for a number input's or a slider's bounds (NaN and values outside
    them: refused)."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"not {what} from {low:g} to {high:g}")
        return value

    return parse


def one_of(options) -> Callable[[str], str]:
    """A `from_url` parser for a radio's or a selectbox's options (others: refused)."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"not one of {', '.join(map(str, options)) or 'none here'}")
        return text

    return parse


def flag(text: str) -> bool:
    """A `from_url` parser for a checkbox or a toggle."""
    if text not in ("True", "False"):
        raise ValueError("not True or False")
    return text == "True"


def time_left(fraction: float, started: float, now: float | None = None) -> str:
    """The time left at the pace since `started` (a time.monotonic()), e.g. "0:35 left"; ""
    while nothing is done yet (no pace to go by) or once all is done."""
    if not 0 < fraction < 1:
        return ""
    elapsed = (time.monotonic() if now is None else now) - started
    minutes, seconds = divmod(round(elapsed * (1 - fraction) / fraction), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    return f"{clock} left"


def progress_text(
    done: int, total: int, started: float | None, unit: str, now: float | None = None
) -> str:
    """The count and the time left, e.g. "12 of 40 questions · 0:35 left" (the time once
    something is done and the start is known)."""
    fraction = done / total if total > 0 else 1.0
    left = "" if started is None else time_left(fraction, started, now)
    return f"{done:,} of {total:,} {unit}" + (f" · {left}" if left else "")


class ProgressBar:
    """An st.progress whose text counts the work done and says how long is left. The pace is
    measured from a stage's first report, so loading the model first does not skew it; a new
    stage (another name, another total, or a fraction that falls back) starts a new pace."""

    def __init__(self, text: str) -> None:
        self._bar = st.progress(0.0, text=text)
        self._stage: object = None
        self._first = (0.0, 0.0)  # (time, fraction) of the stage's first report
        self._last = 0.0

    def _started(self, stage: object, fraction: float, now: float) -> float | None:
        """When the stage would have started at its pace so far (None until it has moved)."""
        if stage != self._stage or fraction < self._last:
            self._stage, self._first = stage, (now, fraction)
        self._last = fraction
        at, start = self._first
        return None if fraction <= start else at - start * (now - at) / (fraction - start)

    def count(self, done: int, total: int, unit: str, what: str = "") -> None:
        """Show "what: done of total unit · m:ss left"."""
        fraction = min(done / total, 1.0) if total > 0 else 1.0
        now = time.monotonic()
        started = self._started((what, unit, total), fraction, now)
        text = progress_text(done, total, started, unit, now)
        self._bar.progress(fraction, text=f"{what}: {text}" if what else text)

    def stage(self, fraction: float, text: str) -> None:
        """Show a stage's own text, the fraction of it done and the time left."""
        fraction = min(max(fraction, 0.0), 1.0)
        now = time.monotonic()
        started = self._started(text, fraction, now)
        left = "" if started is None else time_left(fraction, started, now)
        self._bar.progress(fraction, text=f"{text} · {left}" if left else text)

    def empty(self) -> None:
        self._bar.empty()


def plain(text: object) -> str:
    """Text (a name, a file's line, an error, a URL parameter) shown literally inside
    Markdown: no links, images, formatting or colour directives."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


@st.cache_resource(show_spinner=False, max_entries=16)
def _open_version(name: str, version: str) -> Workspace:
    return Workspace.open(name)


def _open(name: str) -> Workspace:
    """One Workspace per config version per server (an edited TOML file is a new version;
    the model and SAE stay loaded across versions that name the same ones)."""
    path = configs_dir() / f"{name}.toml"
    version = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
    return _open_version(name, f"{path}:{version}:{cache_dir()}")


@st.cache_data(ttl=60, show_spinner=False)
def _problems(name: str, provenance_hash: str) -> list[str]:
    return _open(name).problems()


def active_workspace_name() -> str:
    names = list_workspaces()
    chosen = st.session_state.get(WORKSPACE_KEY) or url_value(WORKSPACE_KEY, one_of(names))
    if chosen not in names:
        chosen = default_workspace() if default_workspace() in names else names[0]
    return chosen


def workspace_sidebar() -> None:
    names = list_workspaces()
    if st.session_state.get(WORKSPACE_KEY) not in names:
        st.session_state[WORKSPACE_KEY] = active_workspace_name()
    with st.sidebar:
        st.selectbox(
            "Workspace",
            names,
            key=WORKSPACE_KEY,
            help="A workspace is one frozen config under configs/: model, SAE, hook, data.",
        )
        st.query_params[WORKSPACE_KEY] = st.session_state[WORKSPACE_KEY]
        from_url("author")
        st.text_input("Your name (recorded with labels)", key="author")
        to_url("author")
        try:
            ws = _open(st.session_state[WORKSPACE_KEY])
        except UserError as exc:
            st.error(plain(exc))
            return
        for problem in _problems(ws.name, ws.config.provenance_hash()):
            st.error(plain(problem))
        p = ws.provenance()
        st.markdown(
            plain(
                f"{ws.name}: {p['model']} · SAE {p['sae']} at {p['hook']} · {p['dtype']} on "
                f"{p['device']} · forget text: {p.get('forget_corpus', '-')}"
            )
        )
        st.page_link("pages/workspace.py", label="All provenance, caches and SAE health")


def current_workspace() -> Workspace | None:
    """The sidebar's workspace, or None (the sidebar already shows why)."""
    try:
        return _open(active_workspace_name())
    except UserError:
        return None


def workspace_with_statistics():
    """(workspace, feature table, its provenance, label store) for a page that reads the
    caches; stops the page when there is no workspace or the caches are not built."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    require_caches(ws)
    table, provenance = statistics(ws)
    return ws, table, provenance, LabelStore.for_workspace(ws)


def require_caches(ws: Workspace) -> None:
    """Stop the page with a build button (and progress bar) if the caches are not built."""
    if cache_build_panel(ws):
        st.stop()


def cache_build_panel(ws: Workspace) -> bool:
    """If some cache is short of its budget: say which, offer to build them (progress bar),
    and return True."""
    from core.cache.build import build_caches, build_estimate, pending_caches

    try:
        pending = pending_caches(ws)
    except UserError as exc:
        st.error(plain(exc))
        return True
    if not pending:
        return False
    st.warning(
        "The activation caches of this workspace are not built yet: "
        + "; ".join(cache.status().describe() for cache in pending)
    )
    st.caption(f"How long: {build_estimate(ws, pending)}.")
    if st.button("Build the caches now", type="primary"):
        bar = ProgressBar("Starting (the model loads first)…")
        build_caches(ws, pending, progress=lambda role, d, t: bar.count(d, t, "tokens", role))
        st.rerun()
    st.caption(f"Or headless: `python -m core cache build --workspace {ws.name}`")
    return True


@st.cache_data(show_spinner="Reading the caches…", max_entries=4)
def _statistics(name: str, cache_keys: tuple[str, ...]):
    from core.features.stats import workspace_stats

    return workspace_stats(_open(name))


def statistics(ws: Workspace):
    """(feature table, provenance) from the caches; recomputed only when a cache changes."""
    from core.cache.spec import default_rows
    from core.cache.store import SparseActivationStore

    keys = tuple(
        f"{SparseActivationStore.for_workspace(ws, role).spec.key()}:{default_rows(ws, role)}"
        for role in ("forget_corpus", "retain_corpus")
    )
    return _statistics(ws.name, keys)
