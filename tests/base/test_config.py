"""Workspace configs: every preset parses; each bad input gives one clear message, writes
nothing."""

import subprocess
import sys

import pytest
import torch

from core.base.config_files import list_workspaces, load_config
from core.base.paths import REPO_ROOT
from core.errors import ConfigError, DataSourceError
from core.loading.models import load_model
from core.workspace.workspace import Workspace
from tests.helpers import preset, write_config

HUB_PRESETS = ["gemma-2-2b-it-L7", "gemma-2-2b-it-L3", "gemma-2b-it-L12", "gemma-3-270m-it-L9"]


def test_presets_are_the_expected_ones():
    assert set(list_workspaces()) == {"offline-gemma3-270m", *HUB_PRESETS}


@pytest.mark.parametrize("name", ["offline-gemma3-270m", *HUB_PRESETS], ids=str)
def test_every_preset_parses_and_opens(name):
    ws = Workspace.open(name)
    assert ws.config.name == name
    assert ws.hook.startswith(f"blocks.{ws.layer}.")
    assert set(ws.provenance()) >= {"model", "sae", "hook", "dtype", "forget_corpus"}


def test_offline_preset_needs_nothing_from_the_hub(unreachable_hub):
    ws = Workspace.open("offline-gemma3-270m")
    assert ws.problems() == []


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"Unknown workspace 'nope'.*offline-gemma3-270m"):
        load_config("nope")


def test_malformed_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\nsource = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw["model"].update(colour="red"), r"\[model\]: unknown key 'colour'"),
        (lambda raw: raw["model"].pop("source"), r"\[model\]: missing required key 'source'"),
        (lambda raw: raw["model"].update(dtype="int3"), r"'dtype' = 'int3' is not one of"),
        (lambda raw: raw["budgets"].update(context_length="long"), r"'context_length' must be"),
        (lambda raw: raw["sae"].update(hook="layer9"), r"hook 'layer9' is not a TransformerLens"),
        (lambda raw: raw["data"].pop("loss_text"), r"missing \[data.loss_text\]"),
        (lambda raw: raw["workspace"].update(name="../../../x"), r"name '../../../x' may hold"),
        (lambda raw: raw["model"].update(device="tpu"), r"device 'tpu' is not auto, cpu"),
        (lambda raw: raw["model"].update(package="evil-pkg"), r"'evil-pkg' is not a known"),
    ],
    ids=[
        "unknown-key",
        "missing-key",
        "bad-choice",
        "bad-type",
        "bad-hook",
        "missing-role",
        "name-escapes-the-cache",
        "unknown-device",
        "untrusted-package",
    ],
)
def test_invalid_config_names_the_problem(tmp_path, edit, message):
    raw = preset()
    edit(raw)
    with pytest.raises(ConfigError, match=message):
        load_config(str(write_config(tmp_path, raw)))


def test_missing_data_file_names_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "cache"))
    raw = preset()
    raw["workspace"]["data_dir"] = str(tmp_path / "empty")
    with pytest.raises(DataSourceError, match=r"not found: .*empty.*biology2e.*data_dir"):
        Workspace.open(str(write_config(tmp_path, raw)))
    assert not (tmp_path / "cache").exists()


def test_data_dir_env_overrides_config(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataSourceError, match=str(tmp_path)):
        Workspace.open("offline-gemma3-270m")


@pytest.mark.parametrize("name", HUB_PRESETS, ids=str)
def test_hub_preset_without_network_says_what_and_how(name, unreachable_hub):
    problems = Workspace.open(name).problems()
    assert len(problems) == 1
    assert "Needs the Hugging Face hub" in problems[0]
    assert 'source = "local"' in problems[0]


def test_hub_preset_fails_fast_in_the_cli(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "UNLEARNING_LENS_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "core", "prepare", "--workspace", "gemma-2-2b-it-L7"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Needs the Hugging Face hub")
    assert "model google/gemma-2-2b-it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_cli_unknown_workspace_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "core", "info", "--workspace", "nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Unknown workspace 'nope'" in result.stderr


def test_a_trusted_package_is_allowed_and_keys_nothing(tmp_path):
    raw = preset()
    raw["model"].update(trust_package=True)
    trusted = load_config(str(write_config(tmp_path, raw)))
    assert trusted.provenance_hash() == load_config("offline-gemma3-270m").provenance_hash()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_named_before_anything_loads(tmp_path):
    raw = preset()
    raw["model"].update(device="cuda")
    ws = Workspace.open(str(write_config(tmp_path, raw)))
    assert any("no CUDA" in problem for problem in ws.problems())
    with pytest.raises(ConfigError, match="no CUDA"):
        load_model(ws.config.model)
