"""A damaged or half-written cache is named, never read as if whole, and the next build
repairs it: the result is byte-identical to a clean build."""

import json
import shutil

import numpy as np
import pytest

from core.cache.build import build
from core.cache.spec import CacheError
from core.cache.store import SparseActivationStore
from core.cli import main
from core.workspace.workspace import Workspace
from tests.helpers import folder_bytes, small_workspace_config

pytestmark = pytest.mark.model

ROWS = 8


@pytest.fixture
def small_ws(tmp_path, offline_ws, monkeypatch) -> Workspace:
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "cache"))
    return Workspace.open(str(small_workspace_config(tmp_path, rows=ROWS, context_length=16)))


@pytest.fixture
def clean(small_ws) -> dict[str, bytes]:
    """A cache built in one go, then its bytes (the folder is reused by each test)."""
    cache = SparseActivationStore.for_workspace(small_ws, "forget_corpus")
    build(cache, small_ws, ROWS, shard_rows=2)
    return folder_bytes(cache.folder)


def _cache(ws: Workspace) -> SparseActivationStore:
    return SparseActivationStore.for_workspace(ws, "forget_corpus")


def _rebuilt(ws: Workspace) -> dict[str, bytes]:
    cache = _cache(ws)
    assert build(cache, ws, ROWS, shard_rows=2).complete
    found = folder_bytes(cache.folder)
    return {k: v for k, v in found.items() if not k.startswith("csc.damaged-")}


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda c: (c.csc_dir / "token.npy").write_bytes(b"\x93NUMPY"), "unreadable"),
        (lambda c: _truncate(c.csc_dir / "value.npy"), "unreadable|values"),
        (lambda c: (c.csc_dir / "meta.json").write_text('{"rows": 64}'), "meta.json says 64"),
        (lambda c: (c.csc_dir / "meta.json").write_text('{"rows": 4}'), "beyond the 4 rows"),
    ],
    ids=["token-truncated", "value-truncated", "meta-more-rows", "meta-fewer-rows"],
)
def test_damaged_csc_is_named_refused_and_rebuilt(small_ws, clean, damage, said):
    cache = _cache(small_ws)
    damage(cache)
    status = cache.status()
    assert not status.complete and "damaged" in status.describe()
    with pytest.raises(CacheError, match=said):
        cache.feature(0)
    assert _rebuilt(small_ws) == clean


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-8])


def test_damaged_manifest_is_one_clear_error(small_ws, clean):
    cache = _cache(small_ws)
    record = json.loads(cache.manifest_path.read_text())
    cache.manifest_path.write_text(json.dumps(record | {"rows_requested": "abc"}))
    with pytest.raises(CacheError, match=r"manifest\.json is damaged"):
        _cache(small_ws)


@pytest.mark.parametrize("keep", [40, 0])  # cut in its data; empty (EOF at the header)
def test_truncated_token_rows_are_rebuilt(small_ws, clean, keep):
    tokens = _cache(small_ws).tokens_path
    tokens.write_bytes(tokens.read_bytes()[:keep])
    assert _rebuilt(small_ws) == clean


def test_leftovers_of_killed_builds_are_cleaned(small_ws, clean):
    cache = _cache(small_ws)
    for name in (".tokens-4242.npy", ".manifest.json-4242", "manifest.json.4242.partial"):
        (cache.folder / name).write_bytes(b"half")
    folded = cache.shards_dir / "rows-0000000-0000002"  # killed between swap and deletion
    folded.mkdir(parents=True)
    for name in ("indptr.npy", "feature.npy", "value.npy"):
        np.save(folded / name, np.zeros(3 if name == "indptr.npy" else 0, dtype=np.int64))
    assert "complete shards" in cache.status().describe()
    assert _rebuilt(small_ws) == clean
    assert not cache.shards_dir.exists() or not any(cache.shards_dir.iterdir())


def test_a_cache_folder_that_cannot_be_written_is_one_clear_error(tmp_path, small_ws, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(blocker))
    with pytest.raises(CacheError, match=r"Could not write the cache .* rerun"):
        build(_cache(small_ws), small_ws, ROWS, shard_rows=2)


@pytest.mark.parametrize("value", ['"abc"', "null", "-3"], ids=["string", "null", "negative"])
def test_merging_from_a_damaged_manifest_is_one_line_and_changes_nothing(
    tmp_path, small_ws, clean, monkeypatch, capsys, value
):
    source = tmp_path / "other-machine" / _cache(small_ws).folder.name
    shutil.copytree(_cache(small_ws).folder, source)
    manifest = source / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace('"rows_requested": 8', f'"rows_requested": {value}')
    )
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path / "merged"))
    argv = ["cache", "merge", str(source.parent), "--corpus", "forget"]
    config = small_workspace_config(tmp_path, rows=ROWS, context_length=16)
    assert main([*argv, "--workspace", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"{manifest} is damaged" in err
    assert not any((tmp_path / "merged").rglob("tokens.npy"))
