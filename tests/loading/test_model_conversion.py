"""Converting the GGUF model for real into an empty user cache: two processes that start at
once convert it once and both find it whole; what a killed conversion left is cleared."""

import os
import subprocess
import sys
import textwrap

import pytest

from core.base.config_files import load_config
from core.base.paths import REPO_ROOT, USER_CACHE_ENV
from core.loading.models import converted_gguf_dir

pytestmark = pytest.mark.model

CONVERT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    from core.base.environment import configure_environment
    configure_environment()
    from core.base.config_files import load_config
    from core.loading.models import prepare_model
    print("ready:", prepare_model(load_config("offline-gemma3-270m").model), flush=True)
    """
)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_two_processes_converting_at_once_convert_once(tmp_path, monkeypatch):
    """Beside the target: a killed conversion's folder and an earlier version's (deleted),
    and a running writer's (kept)."""
    monkeypatch.setenv(USER_CACHE_ENV, str(tmp_path / "user"))
    env = {**os.environ, "UNLEARNING_LENS_CACHE_DIR": str(tmp_path / "cache")}
    target = converted_gguf_dir(load_config("offline-gemma3-270m").model)
    target.parent.mkdir(parents=True)
    killed = target.with_name(f"{target.name}.partial-{_dead_pid()}-0badc0de")
    killed.mkdir()
    (killed / "config.json").write_text("{}")
    (killed / "model.safetensors").write_bytes(b"\0" * 4096)  # cut short by the kill
    legacy = target.with_name(f"{target.name}.partial")  # an earlier version's fixed name
    legacy.mkdir()
    live = target.with_name(f"{target.name}.partial-{os.getpid()}-11ae")  # a running writer's
    live.mkdir()

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONVERT],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs
    assert sorted(log.count("to a plain checkpoint") for log in logs) == [0, 1], logs
    assert sum("Waiting for the conversion" in log for log in logs) == 1, logs  # at once
    assert all(f"ready: {target}\n" in log for log in logs)
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [target.name, f"{target.name}.lock", live.name]
    )

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(target)
    assert model.config.num_hidden_layers == 18 and model.config.hidden_size == 640
    assert AutoTokenizer.from_pretrained(target)("The cell")["input_ids"]
