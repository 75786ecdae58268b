"""The fake hub (built once per session from the offline model and ../shared/data) and one
hub user's session on it, run in a fresh process."""

import json
import os
import subprocess
import sys

import pytest

from core.base.paths import PRESETS_DIR, REPO_ROOT
from core.loading.models import converted_gguf_dir
from tests.hub.fake_hub import FakeHub, build_fake_hub, preset_with_budgets, residual_sample

PRESET = "gemma-3-270m-it-L9"
SESSION_TIMEOUT_S = 900


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory, offline_ws) -> FakeHub:
    root = tmp_path_factory.mktemp("fake-hub")
    return build_fake_hub(
        root,
        converted_gguf_dir(offline_ws.config.model),
        residual_sample(offline_ws),
        offline_ws.config.data_path,
    )


@pytest.fixture(scope="session")
def hub_session(fake_hub, tmp_path_factory) -> dict:
    """The preset (8 rows x 64 tokens per corpus, same sources) run through the CLI by
    `tests.hub.hub_user`, with HF_HUB_OFFLINE=1 and the fake hub as the HF caches."""
    out = tmp_path_factory.mktemp("hub-user")
    config = out / f"{PRESET}.toml"
    text = (PRESETS_DIR / f"{PRESET}.toml").read_text()
    config.write_text(preset_with_budgets(text, rows=8, context_length=64))
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= fake_hub.env() | {"UNLEARNING_LENS_CACHE_DIR": str(out / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.hub.hub_user", str(config), str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "facts.json").read_text()) | {"out": str(out)}
