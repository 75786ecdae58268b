"""A registry SAE is keyed by its files in the Hugging Face cache (the blobs the cache names
by their contents), so an SAE re-uploaded in place gets another key and a stale cache or
label is never reused for it."""

import secrets
from dataclasses import replace

import pytest

from core.base.config_files import load_config
from core.errors import ConfigError
from core.loading.saes import registry_fingerprint
from tests.hub.fake_hub import SAE_FOLDER, SAE_REPO, FakeHub, put_repo

PRESET = "gemma-3-270m-it-L9"  # its SAE lives in SAE_REPO under SAE_FOLDER


def _upload(hub: FakeHub, params: bytes, other: bytes = b"other") -> None:
    files = {
        ".gitattributes": b"*.safetensors filter=lfs\n",
        f"{SAE_FOLDER}/params.safetensors": params,
        f"{SAE_FOLDER}/config.json": b"{}",
        "resid_post/layer_12_width_16k_l0_big/params.safetensors": other,
    }
    put_repo(hub, "model", SAE_REPO, files)


def _reupload(hub: FakeHub, params: bytes, other: bytes = b"other") -> None:
    """The same repo at a new commit (`refs/main` moved), as a re-download leaves it."""
    repo = hub.hub_cache / f"models--{SAE_REPO.replace('/', '--')}"
    current = repo / "snapshots" / (repo / "refs" / "main").read_text()
    current.rename(current.with_name(secrets.token_hex(20)))  # an older commit, still cached
    _upload(hub, params, other)


def test_the_key_follows_the_sae_files_and_nothing_else(tmp_path):
    config = load_config(PRESET)
    hub = FakeHub(tmp_path)
    assert registry_fingerprint(config, cache_dir=hub.hub_cache) is None  # not downloaded
    _upload(hub, b"weights v1")
    first = registry_fingerprint(config, cache_dir=hub.hub_cache)
    assert first.startswith(f"sae-lens:{config.sae.identity()}@sha256:")
    _reupload(hub, b"weights v1", other=b"another SAE changed")
    assert registry_fingerprint(config, cache_dir=hub.hub_cache) == first
    _reupload(hub, b"weights v2")
    assert registry_fingerprint(config, cache_dir=hub.hub_cache) not in (None, first)


def test_an_unknown_release_is_one_clear_error(tmp_path):
    config = load_config(PRESET)
    config = replace(config, sae=replace(config.sae, release="no-such-release"))
    with pytest.raises(ConfigError, match="sae-lens has no release 'no-such-release'"):
        registry_fingerprint(config, cache_dir=FakeHub(tmp_path).hub_cache)
