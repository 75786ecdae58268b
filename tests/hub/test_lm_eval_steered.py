"""The steered CSV export read by lm-eval's own parser (`SteeredModel.derive_steer_config`),
against the fake hub's Gemma Scope 2 SAE, which lm-eval loads by release and id as it would
from the real hub (issue 18, item 2)."""

import json
import os
import subprocess
import sys

import pytest

from core.base.paths import PRESETS_DIR, REPO_ROOT
from tests.hub.conftest import PRESET

pytestmark = pytest.mark.model

SCRIPT = """
import json, sys
from pathlib import Path
import torch
from lm_eval.models.hf_steered import SteeredModel
from core.labels.export import steered_csv
from core.labels.store import LabelStore
from core.loading.hub_cache import shapes_from_cached_files
from core.workspace.workspace import Workspace

config, folder = sys.argv[1], sys.argv[2]
ws = Workspace.open(config)
store = LabelStore(Path(folder) / "labels.sqlite", ws.sae_fingerprint(), ws.sae.cfg.d_sae)
store.save_set("one", [7], [1.5])
path = f"{folder}/steer.csv"
with open(path, "w") as out:
    out.write(steered_csv(ws, store, "one", 4.0))
# sae-lens reads Gemma Scope 2 shapes by HTTP range requests even from a warm cache; offline,
# the product reads them from the cached file, and so does lm-eval's load here
with shapes_from_cached_files():
    steer = SteeredModel.derive_steer_config(path)
(hookpoint, entry), = steer.items()
vector, row = entry["steering_vector"].cpu(), ws.sae.W_dec[7].detach().cpu()
print(json.dumps({
    "hookpoint": hookpoint,
    "action": entry["action"],
    "coefficient": entry["steering_coefficient"],
    "vector_is_the_decoder_row": bool(torch.equal(vector, row)),
}))
"""


def test_lm_eval_reads_the_steered_csv_as_a_clamp_of_the_feature(fake_hub, tmp_path):
    config = tmp_path / f"{PRESET}.toml"
    config.write_text((PRESETS_DIR / f"{PRESET}.toml").read_text())
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= fake_hub.env() | {"UNLEARNING_LENS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    read = json.loads(done.stdout.strip().splitlines()[-1])
    assert read == {
        "hookpoint": "layers.9",
        "action": "clamp",
        "coefficient": -6.0,
        "vector_is_the_decoder_row": True,
    }
