"""`--ray` on the command line: an address where no cluster answers, a malformed one, or
negative GPUs per worker is one line on stderr and exit code 2, fast, with nothing started,
computed or written."""

import time

import pytest

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
