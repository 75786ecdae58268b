"""The contract of core/loading/hub_cache.py, the one door to Hugging Face, `datasets` and
sae-lens internals: pinned versions, each door function against caches laid out in a temp
dir as the pinned clients write them, the sae-lens shape patch under two threads, and no
other module of core/ naming those internals."""

import re
import threading
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from core.loading import hub_cache
from tests.hub.fake_hub import (
    GITATTRIBUTES,
    SAE_FOLDER,
    SAE_REPO,
    FakeHub,
    commit_of,
    jumprelu_params,
    put_dataset,
    put_repo,
    sae_folder,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOOR = REPO_ROOT / "core/loading/hub_cache.py"
PINNED = ("huggingface_hub", "datasets", "sae-lens")
RELEASE = "gemma-scope-2-270m-it-res"  # Gemma Scope 2: the release whose shapes are patched
OTHER_FOLDER = "resid_post/layer_12_width_16k_l0_big"
# What only the door may name: the hub cache layout, the datasets cache layout, the sae-lens
# registry and the function patched in it, and the clients' modules themselves.
FORBIDDEN = {
    "hub cache snapshots": r"\bsnapshots\b",
    "hub cache blobs": r"\bblobs\b",
    "hub cache refs": r"refs/main",
    "hub cache folder names": r"(models|datasets)--",
    "datasets cache folder names": r"___",
    "hub cache lookup": r"try_to_load_from_cache|scan_cache_dir|HF_HUB_CACHE",
    "datasets cache": r"HF_DATASETS_CACHE|datasets\.config|camelcase_to_snakecase",
    "huggingface_hub": r"\bhuggingface_hub\b",
    "datasets": r"^\s*(import|from) datasets\b|\bload_dataset\(",
    "sae-lens loading internals": r"sae_lens\.loading|pretrained_saes?_|get_safetensors_tensor",
    "package versions": r"importlib\.metadata",
}


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = (line.split("#")[0].strip().split("==") for line in lines)
    return {pin[0]: pin[1] for pin in pins if len(pin) == 2}


@pytest.mark.parametrize("package", PINNED)
def test_the_installed_clients_are_the_pinned_ones(package):
    pinned, installed = _pins()[package], hub_cache.package_version(package)
    assert installed == pinned, (
        f"{package} {installed} is installed but {pinned} is pinned: core/loading/hub_cache.py "
        "reads its internals; check them there before changing the pin."
    )


def test_a_missing_package_has_no_version():
    assert hub_cache.package_version("no-such-package-here") is None


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    """An empty fake hub the pinned clients read as their caches, offline."""
    import datasets.config
    import huggingface_hub.constants

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub.hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub.datasets_cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return hub


def _sae_repo(hub: FakeHub, widths: dict[str, int]) -> None:
    """SAE_REPO holding one small Gemma Scope 2 SAE per folder, of the given widths."""
    residuals = torch.randn(64, 640, generator=torch.Generator().manual_seed(0))
    files: dict[str, bytes | Path] = {".gitattributes": GITATTRIBUTES.encode()}
    for folder, width in widths.items():
        files |= sae_folder(folder, jumprelu_params(residuals, d_sae=width))
    put_repo(hub, "model", SAE_REPO, files)


def test_is_cached_reads_the_hub_cache(hub):
    assert not hub_cache.is_cached("org/model")
    put_repo(hub, "model", "org/model", {"config.json": b"{}"})
    put_repo(hub, "dataset", "org/data", {"README.md": b"# data"})
    assert hub_cache.is_cached("org/model")
    assert not hub_cache.is_cached("org/model", "tokenizer_config.json")
    assert hub_cache.is_cached("org/data", "README.md", repo_type="dataset")
    assert not hub_cache.is_cached("org/data", "README.md")  # a model repo of that name


def test_snapshot_revision_is_the_commit_main_pointed_at(hub):
    assert hub_cache.snapshot_revision("org/model") is None  # not downloaded
    put_repo(hub, "model", "org/model", {"config.json": b"{}"})
    assert hub_cache.snapshot_revision("org/model") == commit_of("org/model")
    versions = hub_cache.library_versions()
    assert set(versions) == {"torch", "transformer-lens", "sae-lens"}
    assert versions["torch"] == ".".join(_pins()["torch"].split(".")[:2])


def test_folder_key_hashes_the_folder_blobs_of_main(hub):
    assert hub_cache.folder_key("org/saes", "a") is None  # not downloaded
    files = {".gitattributes": b"", "a/w.bin": b"v1", "b/w.bin": b"other"}
    put_repo(hub, "model", "org/saes", files)
    key = hub_cache.folder_key("org/saes", "a")
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert hub_cache.folder_key("org/saes", "a", cache_dir=hub.hub_cache) == key
    assert hub_cache.folder_key("org/saes", "c") is None  # no such folder
    assert key != hub_cache.folder_key("org/saes", "b")


def test_dataset_prepared_and_load_read_the_datasets_cache(hub):
    assert not hub_cache.dataset_prepared("Org/MyData", None)
    table = pa.table({"text": ["first row", "second row"]})
    put_dataset(hub, "Org/MyData", {"cfg": {"test": ("cfg/test-00000-of-00001.parquet", table)}})
    assert hub_cache.dataset_prepared("Org/MyData", "cfg")
    assert hub_cache.dataset_prepared("Org/MyData", None)  # any config
    assert not hub_cache.dataset_prepared("Org/MyData", "other")
    rows = hub_cache.load_hub_dataset("Org/MyData", "cfg", "test", streaming=False)
    assert list(rows["text"]) == ["first row", "second row"]


def test_the_sae_registry_names_the_presets_release():
    release = hub_cache.sae_registry()[RELEASE]
    assert release.repo_id == SAE_REPO
    assert release.saes_map["layer_9_width_16k_l0_medium"] == SAE_FOLDER


def test_shapes_fall_back_to_sae_lens_when_the_file_is_not_cached(hub, monkeypatch):
    from sae_lens.loading import pretrained_sae_loaders as loaders

    remote = []
    monkeypatch.setattr(
        loaders, "get_safetensors_tensor_shapes", lambda *args: remote.append(args) or {}
    )
    _sae_repo(hub, {SAE_FOLDER: 8})
    with hub_cache.shapes_from_cached_files():
        cached = loaders.get_safetensors_tensor_shapes(SAE_REPO, f"{SAE_FOLDER}/params.safetensors")
        loaders.get_safetensors_tensor_shapes("org/absent", "params.safetensors")
    assert cached["w_enc"] == [640, 8]
    assert remote == [("org/absent", "params.safetensors")]


def test_two_threads_loading_at_once_get_their_shapes_and_leave_sae_lens_unpatched(hub):
    """The first load holds the patch while the second asks for it: without one critical
    section the first one's restore would unpatch the second's load midway (HTTP offline)
    and the second one's restore would leave sae-lens patched for good."""
    from sae_lens import SAE
    from sae_lens.loading import pretrained_sae_loaders as loaders

    original = loaders.get_safetensors_tensor_shapes
    _sae_repo(hub, {SAE_FOLDER: 8, OTHER_FOLDER: 24})
    first_in, widths, order, errors = threading.Event(), {}, [], []

    def load(sae_id: str, wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(timeout=30)
            with hub_cache.shapes_from_cached_files():
                order.append(f"{sae_id} in")
                first_in.set()
                if wait is None:  # hold the patch until the other thread is blocked on it
                    threading.Event().wait(0.5)
                widths[sae_id] = SAE.from_pretrained(RELEASE, sae_id).cfg.d_sae
                order.append(f"{sae_id} out")
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    first, second = "layer_9_width_16k_l0_medium", "layer_12_width_16k_l0_big"
    threads = [
        threading.Thread(target=load, args=(first, None)),
        threading.Thread(target=load, args=(second, first_in)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert widths == {first: 8, second: 24}
    assert order == [f"{first} in", f"{first} out", f"{second} in", f"{second} out"]
    assert loaders.get_safetensors_tensor_shapes is original


def test_nested_blocks_in_one_thread_do_not_deadlock():
    from sae_lens.loading import pretrained_sae_loaders as loaders

    original = loaders.get_safetensors_tensor_shapes
    with hub_cache.shapes_from_cached_files(), hub_cache.shapes_from_cached_files():
        assert loaders.get_safetensors_tensor_shapes is not original
    assert loaders.get_safetensors_tensor_shapes is original


def _modules_naming(pattern: str) -> list[str]:
    found = []
    for path in sorted((REPO_ROOT / "core").rglob("*.py")):
        if path == DOOR:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize("what", FORBIDDEN)
def test_only_the_door_names_the_internals(what):
    found = _modules_naming(FORBIDDEN[what])
    assert not found, f"{what} named outside core/loading/hub_cache.py:\n" + "\n".join(found)


@pytest.mark.parametrize("what", FORBIDDEN)
def test_the_door_itself_names_them(what):
    """Each pattern matches the door's own source, so none is a typo that matches nothing."""
    assert any(re.search(FORBIDDEN[what], line) for line in DOOR.read_text().splitlines())
