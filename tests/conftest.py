"""Shared fixtures: the real offline workspace, loaded once per test session.

The session writes into a temporary cache folder: no test reads or writes the repo's
cache/ (the converted model stays in the user cache, as `make run` leaves it)."""

import os
import tempfile

import pytest

os.environ["UNLEARNING_LENS_CACHE_DIR"] = tempfile.mkdtemp(prefix="unlearning-lens-tests-")

from core.base.environment import configure_environment
from core.workspace.workspace import Workspace

configure_environment()


@pytest.fixture(scope="session")
def offline_ws() -> Workspace:
    """The default workspace with its real model (GGUF from PyPI) and the shipped SAE."""
    ws = Workspace.open("offline-gemma3-270m")
    assert ws.sae is not None  # loads the model and the SAE, checks they fit
    return ws


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    """A fresh, empty cache folder for the test (UNLEARNING_LENS_CACHE_DIR)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(root))
    return root


@pytest.fixture
def fresh_ws(tmp_path, cache_root) -> Workspace:
    """The small workspace (`small_workspace_config`) in an empty cache: no memo yet."""
    from tests.helpers import small_workspace_config

    return Workspace.open(str(small_workspace_config(tmp_path)))


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Point hub clients at a closed local port, so 'no network' holds on any machine."""
    import core.base.hub

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(core.base.hub, "_last_probe", None)


@pytest.fixture(scope="session")
def small_app_env(tmp_path_factory, offline_ws) -> dict[str, str]:
    """Environment for an app whose default workspace is the offline one with small budgets
    (64-token rows, 32 per corpus) and its caches already built, in temporary folders."""
    import os

    from core.cache.build import build_caches
    from tests.helpers import small_workspace_config

    root = tmp_path_factory.mktemp("small-app")
    config = small_workspace_config(root, rows=32, workspace__name="offline-gemma3-270m")
    configs = root / "configs"
    configs.mkdir()
    config.rename(configs / "offline-gemma3-270m.toml")
    env = {
        "UNLEARNING_LENS_CONFIGS_DIR": str(configs),
        "UNLEARNING_LENS_CACHE_DIR": str(root / "cache"),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        ws = Workspace.open("offline-gemma3-270m")
        build_caches(ws)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return env


@pytest.fixture
def small_app_ws(small_app_env, monkeypatch) -> Workspace:
    """The small workspace of `small_app_env`, opened with its environment set."""
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    return Workspace.open("offline-gemma3-270m")
