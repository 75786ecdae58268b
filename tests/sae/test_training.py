"""Training the workspace's own SAE: two trainings of one workspace started at once take
turns, and the SAE they leave is whole."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.sae.training import train_sae
from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config

pytestmark = pytest.mark.model

TINY = {
    "d_sae": 64,
    "k": 4,
    "context_length": 32,
    "max_rows_per_corpus": 8,
    "epochs": 1,
    "batch_size": 64,
    "checkpoint_every_steps": 2,
}


def test_two_trainings_at_once_take_turns(tmp_path, offline_ws, cache_root, caplog):
    raw = preset()
    raw["sae"]["path"] = str(tmp_path / "sae")
    raw["sae"]["training"].update(TINY)
    ws = Workspace.open(str(write_config(tmp_path, raw)))
    start = threading.Barrier(2)

    def train():
        start.wait()
        return train_sae(ws)

    with caplog.at_level(logging.INFO), ThreadPoolExecutor(2) as pool:
        paths = [future.result() for future in [pool.submit(train) for _ in range(2)]]
    assert paths == [ws.sae_path] * 2
    assert "Waiting for the training" in caplog.text
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cache", "custom.toml", "sae"]
    assert (ws.sae_path / "training.json").exists()
    assert ws.sae.cfg.d_sae == 64 and ws.sae.cfg.d_in == offline_ws.model.cfg.d_model
