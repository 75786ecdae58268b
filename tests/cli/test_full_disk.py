"""A full disk: every `--out` writer says it in one line and leaves no partial file (the
previous file, if any, stays whole). /dev/full fails every write with ENOSPC; a file-size
limit (RLIMIT_FSIZE) fails a write part-way, as a disk filling up does."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.base.paths import REPO_ROOT
from core.cli import main
from core.labels.store import LabelStore

pytestmark = pytest.mark.model
FULL = Path("/dev/full")


@pytest.fixture
def full(tmp_path):
    """Make `name` in tmp_path a path whose writes fail as on a full disk."""
    if not FULL.exists():
        pytest.skip("this system has no /dev/full")

    def make(name: str) -> Path:
        link = tmp_path / name
        link.symlink_to(FULL)
        return link

    return make


@pytest.fixture
def labels_ws(small_app_ws, tmp_path, monkeypatch):
    """The small workspace with a label database of its own (the shared one stays as is)."""
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "own-cache"))
    return small_app_ws


def _one_line(capsys) -> str:
    err = capsys.readouterr().err  # progress bars first, if any
    said = [line for line in err.splitlines() if "error: " in line]
    assert len(said) == 1 and err.endswith(said[0] + "\n") and "Traceback" not in err, err
    return said[0]


def test_export_into_a_full_disk_is_one_line(labels_ws, full, capsys):
    LabelStore.for_workspace(labels_ws).set_label(3, label="kept")
    out = full("labels.csv")
    assert main(["export", "--format", "labels", "--out", str(out)]) == 2
    assert "No space left on device" in _one_line(capsys)


def test_stats_into_a_full_disk_is_one_line_and_writes_no_provenance(small_app_ws, full, capsys):
    out = full("stats.csv")
    assert main(["stats", "--out", str(out)]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert not out.with_name("stats.csv.provenance.json").exists()


def test_eval_out_into_a_full_disk_is_one_line(small_app_ws, full, capsys):
    out = full("result.json")
    argv = ["eval", "--features", "11", "--questions", "3", "--loss-rows", "2", "--skip-known"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "No space left on device" in _one_line(capsys)


FILLS_UP = textwrap.dedent(
    """
    import resource, signal, sys
    from core.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
    """
)


def filling_up(limit: int, argv: list[str], timeout: int) -> subprocess.CompletedProcess:
    """`python -m core ARGV` in a process whose files cannot grow past `limit` bytes."""
    return subprocess.run(
        [sys.executable, "-c", FILLS_UP, str(limit), *argv],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_disk_filling_up_mid_export_keeps_the_previous_file_whole(labels_ws, tmp_path):
    store = LabelStore.for_workspace(labels_ws)
    for feature in range(120):
        store.set_label(feature, label=f"feature {feature} " + "x" * 900)
    out = tmp_path / "out" / "labels.csv"
    out.parent.mkdir()
    out.write_text("the previous export\n")
    done = filling_up(64_000, ["export", "--format", "labels", "--out", str(out)], 300)
    assert done.returncode == 2, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "File too large" in error[0] and "Traceback" not in done.stderr
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in out.parent.iterdir()] == ["labels.csv"]  # no partial file


def test_a_disk_filling_up_while_eval_keeps_its_memos_is_one_line(small_app_ws, tmp_path):
    argv = ["eval", "--features", "13", "--c", "7.25", "--questions", "3", "--loss-rows", "2"]
    done = filling_up(1_000, [*argv, "--skip-known"], 600)  # every memo is larger than 1 kB
    assert done.returncode == 2, done.stderr
    error = [line for line in done.stderr.splitlines() if "error: " in line]  # after bars
    assert len(error) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Could not write" in error[0] and "Nothing of it was kept" in error[0]
    assert not list(small_app_ws.folder.rglob("*.partial"))
