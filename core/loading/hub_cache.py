"""The one door to Hugging Face, `datasets` and sae-lens internals: the hub cache layout,
the datasets cache layout, the sae-lens registry and its shape patch, and the content keys
read from them. Nothing else in core/ names these internals (tests/loading/test_hub_cache.py
greps for them), so a bump of one of these packages is fixed here alone.

Pinned to huggingface_hub 2.4.0, datasets 5.2.0 and sae-lens 6.54.12 (requirements.txt):
- hub cache: `models--org--name/` (`datasets--` for datasets) holding `blobs/` named by
  content hash, `snapshots/<commit>/` of links to them, and `refs/main` naming the commit;
- datasets cache: `org___name/<config>/<version>/<commit>/`, the Arrow files an online load
  prepared, which is all `load_dataset` reads offline.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_lens.loading.pretrained_saes_directory import PretrainedSAELookup

# Re-entrant: a caller's `with shapes_from_cached_files()` may load an SAE that enters it again.
_SHAPES_LOCK = threading.RLock()


def is_cached(repo_id: str, filename: str = "config.json", repo_type: str = "model") -> bool:
    """Whether a hub file is already in the local Hugging Face cache."""
    return _cached_file(repo_id, filename, repo_type) is not None


def folder_key(repo_id: str, folder: str, cache_dir: Path | None = None) -> str | None:
    """A sha256 of a repo folder's files in the hub cache, None when none are there. The
    cache names each file's blob by a hash of its contents, so the key hashes the folder's
    file names and blob names (nothing is read): a file re-uploaded in place changes it, a
    file outside `folder` does not. The folder is read in the snapshot `main` points at."""
    marker = _cached_file(repo_id, ".gitattributes", cache_dir=cache_dir)
    if marker is None:
        return None
    root = marker.parent / folder
    files = sorted(path for path in root.rglob("*") if path.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root)}\0{Path(os.path.realpath(path)).name}\n".encode())
    return digest.hexdigest()


def dataset_prepared(dataset: str, subset: str | None) -> bool:
    """Whether `datasets` holds this dataset (config `subset`, any if None) prepared on disk:
    what `load_dataset` reads offline (it never reads the hub cache's files then)."""
    return bool(_prepared(dataset, subset))


def dataset_revision(dataset: str, subset: str | None) -> str | None:
    """The commit of the hub dataset `datasets` prepared this config from (the newest when
    several are prepared: the one an offline load reads); None when none is prepared."""
    found = _prepared(dataset, subset)
    return max(found, key=lambda path: path.stat().st_mtime_ns).name if found else None


def _prepared(dataset: str, subset: str | None) -> list[Path]:
    """The datasets cache's `<config>/<version>/<commit>/` folders of a dataset."""
    import datasets.config
    from datasets.naming import camelcase_to_snakecase

    parts = dataset.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(datasets.config.HF_DATASETS_CACHE) / "___".join(parts)
    return [path for path in root.glob(f"{subset or '*'}/*/*") if path.is_dir()]


def load_hub_dataset(dataset: str, subset: str | None, split: str | None, streaming: bool) -> Any:
    """`datasets.load_dataset`: a split, or an iterable of its rows when `streaming`."""
    import datasets

    return datasets.load_dataset(dataset, subset, split=split, streaming=streaming)


def sae_registry() -> dict[str, PretrainedSAELookup]:
    """sae-lens's registry of pretrained SAEs, by release name."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


@contextmanager
def shapes_from_cached_files() -> Iterator[None]:
    """sae-lens reads the tensor shapes of some releases (Gemma Scope 2) with HTTP range
    requests even when the file is in the Hugging Face cache, so a cached SAE would not load
    offline. Within this block they are read from the cached file when there is one.

    sae-lens offers no hook for this, so its module function is swapped. Patch, body and
    restore hold one lock: two sessions loading SAEs at once cannot interleave the swap."""
    from sae_lens.loading import pretrained_sae_loaders as loaders

    with _SHAPES_LOCK:
        remote = loaders.get_safetensors_tensor_shapes

        def shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
            cached = _cached_file(repo_id, filename)
            return remote(repo_id, filename) if cached is None else _tensor_shapes(cached)

        loaders.get_safetensors_tensor_shapes = shapes
        try:
            yield
        finally:
            loaders.get_safetensors_tensor_shapes = remote


def package_version(name: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def snapshot_revision(
    repo_id: str, filename: str = "config.json", repo_type: str = "model"
) -> str | None:
    """The commit of the hub cache's snapshot that holds `filename` of `repo_id` (what `main`
    pointed at when it was downloaded); None when it is not cached."""
    found = _cached_file(repo_id, filename, repo_type)
    if found is None or "snapshots" not in found.parts:
        return None
    return found.parts[found.parts.index("snapshots") + 1]


LIBRARIES = ("torch", "transformer-lens", "sae-lens")  # whose numerics results depend on


def library_versions() -> dict[str, str | None]:
    """major.minor of the libraries that compute every number: a memo made under another
    is not reused."""
    found = {}
    for name in LIBRARIES:
        version = package_version(name)
        found[name] = None if version is None else ".".join(version.split(".")[:2])
    return found


def _cached_file(
    repo_id: str, filename: str, repo_type: str = "model", cache_dir: Path | None = None
) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, repo_type=repo_type)
    return Path(found) if isinstance(found, str) else None


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        names = handle.keys()  # a safe_open handle is not iterable
        return {name: list(handle.get_slice(name).get_shape()) for name in names}
