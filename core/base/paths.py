"""Where things live: the repo, configs, the git-ignored cache, the user cache, the data dir."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS_DIR = REPO_ROOT / "configs"

CONFIGS_DIR_ENV = "UNLEARNING_LENS_CONFIGS_DIR"

DATA_DIR_ENV = "UNLEARNING_LENS_DATA_DIR"
CACHE_DIR_ENV = "UNLEARNING_LENS_CACHE_DIR"
USER_CACHE_ENV = "UNLEARNING_LENS_USER_CACHE"


def configs_dir() -> Path:
    """Where workspace configs are listed from: configs/ unless the environment says."""
    return Path(os.environ.get(CONFIGS_DIR_ENV, PRESETS_DIR))


def cache_dir() -> Path:
    """Per-workspace artifacts (activation caches, statistics, labels). Git-ignored."""
    return Path(os.environ.get(CACHE_DIR_ENV, REPO_ROOT / "cache"))


def workspace_dir(name: str) -> Path:
    return cache_dir() / name


def user_cache_dir() -> Path:
    """Large derived files kept out of the repo (the converted offline model)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unlearning-lens"
    return Path(os.environ.get(USER_CACHE_ENV, default))


def resolve_data_dir(configured: str) -> Path:
    """The environment variable wins over the config; relative paths are from the repo root."""
    raw = os.environ.get(DATA_DIR_ENV, configured)
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def resolve_repo_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
