"""`--ray` on the command line: an address where no cluster answers, a malformed one, or
negative GPUs per worker is one line on stderr and exit code 2, fast, with nothing started,
computed or written; so is a cluster that asks for a token this process lacks."""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.base.paths import REPO_ROOT
from core.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cache", "build", "--ray", "127.0.0.1:9"], "No Ray cluster answers at 127.0.0.1:9"),
        (["sweep", "--ray", "127.0.0.1:9", "--out", "{out}"], "No Ray cluster answers"),
        (["screen", "--features", "1", "--ray", "127.0.0.1:9", "--out", "{out}"], "No Ray"),
        (["known", "--ray", "127.0.0.1:9"], "No Ray cluster answers"),
        (["cache", "build", "--ray", "head-node"], "expected HOST:PORT"),
        (["cache", "build", "--ray", "127.0.0.1:9", "--num-gpus", "-1"], "No Ray cluster"),
        (["cache", "build", "--ray", "--num-gpus", "-1"], "--num-gpus must be ≥ 0"),
    ],
    ids=["build", "sweep", "screen", "known", "malformed", "address-first", "negative-gpus"],
)
def test_an_unreachable_ray_address_is_one_line_and_nothing_is_done(
    argv, message, cache_root, tmp_path, capsys
):
    out = tmp_path / "result.json"
    started = time.perf_counter()
    assert main([arg.format(out=out) for arg in argv]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()
    assert not (cache_root / "offline-gemma3-270m" / "activations").exists()
    assert not list(cache_root.rglob("run-*.json"))


def test_a_cluster_that_asks_for_a_token_is_named_as_such(cache_root):
    """A head started by `ray start` with token authentication, joined without the token:
    the message says what to set (Ray's own error says only that it could not connect)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    options = ["--num-cpus=1", "--block", "--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(
        [ray, "start", "--head", f"--port={port}", *options],
        env=os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert time.monotonic() < deadline and head.poll() is None, "ray start failed"
            time.sleep(0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        joined = subprocess.run(
            [sys.executable, "-m", "core", "cache", "build", "--ray", f"127.0.0.1:{port}"],
            env=env | {"UNLEARNING_LENS_CACHE_DIR": str(cache_root)},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        head.terminate()  # with --block, `ray start` stops its node's processes
        head.wait(60)
    assert joined.returncode == 2
    said = joined.stderr.strip().splitlines()[-1]
    assert said.startswith("error: The Ray cluster at") and "RAY_AUTH_MODE=token" in said
    assert not (cache_root / "offline-gemma3-270m" / "activations").exists()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
