"""Bad flags end in one line on stderr and exit code 2, before anything is loaded or
written."""

import pytest

from core.base.paths import resolve_repo_path
from core.cli import main
from tests.helpers import preset, small_workspace_config


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["select", "--n", "0"], "n (how many features) must be a whole number ≥ 1"),
        (["select", "--threshold", "1.5"], "frequency in [0, 1]"),
        (["cache", "build", "--shard-rows", "0"], "shard rows must be a whole number ≥ 1"),
        (["cache", "build", "--batch-size", "-1"], "batch size must be a whole number ≥ 1"),
        (["cache", "build", "--rows", "-5"], "rows must be a whole number ≥ 1"),
        (["cache", "build", "--shard", "3/2"], "need 0 ≤ i < n"),
        (["sweep", "--n", "1.5", "--out", "x.json"], "whole numbers separated by commas"),
        (["sweep", "--c", "20,abc", "--out", "x.json"], "c values must be numbers"),
        (["eval", "--features", "12,abc"], "integers separated by commas"),
        (["eval", "--features", "1", "--set", "s"], "exactly one of --set"),
        (["eval", "--features", "1", "--questions", "-3"], "--questions must be ≥ 0"),
        (["generate", "--features", "1", "--tokens", "0"], "--tokens must be between 1"),
        (["attribute", "--n", "0"], "n (how many features) must be a whole number ≥ 1"),
        (["health", "--rows", "0"], "--rows must be ≥ 1"),
        (["select", "--threshold", "nan"], "must be a number"),
        (["select", "--mode", "dsg", "--ratio-percentile", "120"], "in [0, 100]"),
        (["select", "--forget-rows", "0"], "--forget-rows must be ≥ 1"),
        (["stats", "--out", "x.txt"], "give a .csv or .parquet"),
        (["stats", "--out", "x.csv", "--retain-rows", "-1"], "--retain-rows must be ≥ 1"),
        (["examples", "--feature", "3", "--k", "-1"], "--k (contexts per corpus) must be ≥ 1"),
        (["export", "--set", "s", "--out", "missing/x.json"], "folder missing does not exist"),
        (["sweep", "--n", "0", "--out", "x.json"], "≥ 1"),
        (["eval", "--features", "11,12", "--save"], "give --set NAME instead of --features"),
        (["eval", "--features", "11", "--report", "--split", "all"], "--report is --split report"),
        (["eval", "--features", "11", "--c", "nan"], "the value nan is not a finite number"),
        (["eval", "--features", "11", "--c", "-5"], "c = -5 is negative"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_flags_are_one_line_and_write_nothing(
    argv, message, tmp_path, cache_root, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = small_workspace_config(tmp_path)
    assert main([*argv, "--workspace", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert message in err
    assert not cache_root.exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("damaged", "said"),
    [(b'{"d_in": 640, "d_sa', "Unterminated string"), (b"[640]", "not a JSON object")],
    ids=["truncated", "not-object"],
)
def test_a_damaged_sae_cfg_is_one_line_naming_it(damaged, said, tmp_path, cache_root, capsys):
    shipped = resolve_repo_path(preset()["sae"]["path"])
    cfg = tmp_path / "sae" / "cfg.json"
    cfg.parent.mkdir()
    cfg.write_bytes(damaged)
    (cfg.parent / "sae_weights.safetensors").symlink_to(shipped / "sae_weights.safetensors")
    config = small_workspace_config(tmp_path, sae__path=str(cfg.parent))
    assert main(["cache", "status", "--workspace", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: The SAE's {cfg} is damaged (") and "\n" not in err, err
    assert said in err
    assert cfg.read_bytes() == damaged and not cache_root.exists()  # the user's file, as it was


def test_an_sae_folder_without_its_weights_is_one_line_naming_it(tmp_path, cache_root, capsys):
    shipped = resolve_repo_path(preset()["sae"]["path"])
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "cfg.json").write_bytes((shipped / "cfg.json").read_bytes())
    config = small_workspace_config(tmp_path, sae__path=str(folder))
    assert main(["cache", "status", "--workspace", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: The SAE folder {folder} has cfg.json but no "), err
    assert "\n" not in err
    assert not cache_root.exists()
