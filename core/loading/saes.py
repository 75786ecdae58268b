"""Load the workspace's SAE (sae-lens registry, a local sae-lens folder, or trained here)
and check that it fits the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from core.base.config import WorkspaceConfig
from core.base.hub import require_hub
from core.base.paths import resolve_repo_path
from core.errors import ConfigError, ModelSAEMismatchError
from core.loading.hub_cache import folder_key, is_cached, sae_registry, shapes_from_cached_files

if TYPE_CHECKING:
    from sae_lens import SAE, HookedSAETransformer

    from core.loading.hub_cache import PretrainedSAELookup


def sae_folder_problem(cfg: WorkspaceConfig) -> str | None:
    """A message if a local or trained-here SAE folder is missing, lacks its weights or its
    cfg.json is damaged, else None."""
    if cfg.sae.source == "sae-lens":
        return None
    folder = resolve_repo_path(cfg.sae.path or "")
    if (folder / "cfg.json").exists():
        if not (folder / "sae_weights.safetensors").is_file():
            return (
                f"The SAE folder {folder} has cfg.json but no sae_weights.safetensors: restore "
                "it from where the SAE came from, or point [sae] path at a whole SAE folder."
            )
        return _cfg_problem(folder / "cfg.json")
    fix = (
        f"train it with `python -m core train-sae --workspace {cfg.name}`"
        if cfg.sae.source == "trained-here"
        else "point [sae] path at a folder holding cfg.json and sae_weights.safetensors"
    )
    return f"No SAE at {folder} (cfg.json missing): {fix}."


def _cfg_problem(path: Path) -> str | None:
    """A message if `path`, an SAE's cfg.json (the user's file, never moved aside), is not
    a JSON object."""
    try:
        record = json.loads(path.read_bytes())
    except ValueError as exc:  # cut short, not JSON, not UTF-8
        reason = " ".join(str(exc).split())
    else:
        if isinstance(record, dict):
            return None
        reason = "not a JSON object"
    return (
        f"The SAE's {path} is damaged ({reason}): restore it from where the SAE came from, "
        "or point [sae] path at a whole SAE folder."
    )


def sae_cfg(cfg: WorkspaceConfig) -> dict:
    """A local SAE's cfg.json without loading its weights; {} for registry SAEs."""
    if cfg.sae.source == "sae-lens":
        return {}
    if problem := sae_folder_problem(cfg):
        raise ConfigError(problem)
    return json.loads((resolve_repo_path(cfg.sae.path or "") / "cfg.json").read_text())


def load_sae(cfg: WorkspaceConfig, device: str, dtype: str) -> SAE:
    from sae_lens import SAE

    if cfg.sae.source == "sae-lens":
        repo_id = _registry_repo(cfg.sae.release or "")
        if not is_cached(repo_id, filename=".gitattributes"):
            require_hub(
                f"SAE {cfg.sae.release} / {cfg.sae.id} (repo {repo_id})",
                f'download {repo_id} elsewhere, then set [sae] source = "local" and path to '
                "the folder of that SAE (cfg.json + sae_weights.safetensors)",
            )
        with shapes_from_cached_files():
            return SAE.from_pretrained(cfg.sae.release, cfg.sae.id, device=device, dtype=dtype)
    if problem := sae_folder_problem(cfg):
        raise ConfigError(problem)
    return SAE.load_from_disk(resolve_repo_path(cfg.sae.path or ""), device=device, dtype=dtype)


def check_fit(cfg: WorkspaceConfig, model: HookedSAETransformer, sae: SAE) -> None:
    """Raise if the hook is not a hook of the model or the SAE's width is not the model's."""
    hook = cfg.sae.hook
    if hook not in model.hook_dict:
        layers = model.cfg.n_layers
        raise ModelSAEMismatchError(
            f"The model {cfg.model.name} has no hook '{hook}' (it has {layers} layers, "
            f"blocks.0 to blocks.{layers - 1}). Fix [sae] hook in {cfg.config_path}."
        )
    if sae.cfg.d_in != model.cfg.d_model:
        raise ModelSAEMismatchError(
            f"The SAE reads vectors of width {sae.cfg.d_in} but {cfg.model.name} has "
            f"d_model = {model.cfg.d_model} at {hook}: this SAE was made for another model. "
            "Point [sae] at an SAE trained on this model."
        )
    trained_on = getattr(sae.cfg.metadata, "hook_name", None)
    if trained_on and trained_on != hook:
        raise ModelSAEMismatchError(
            f"The SAE was trained on '{trained_on}' but [sae] hook is '{hook}'. "
            "Set hook to the SAE's hook point."
        )


def registry_fingerprint(cfg: WorkspaceConfig, cache_dir: Path | None = None) -> str | None:
    """A content key of the registry SAE's files in the Hugging Face cache, None when none
    are there: an SAE re-uploaded in place gets another key, another SAE of the same repo
    changes nothing (see `hub_cache.folder_key`)."""
    release = _registry_entry(cfg.sae.release or "")
    folder = release.saes_map.get(cfg.sae.id or "")
    digest = None if folder is None else folder_key(release.repo_id, folder, cache_dir)
    return None if digest is None else f"sae-lens:{cfg.sae.identity()}@sha256:{digest}"


def registry_cached(cfg: WorkspaceConfig) -> bool:
    """Whether the registry SAE's repo is in the Hugging Face cache (it then loads offline)."""
    return is_cached(_registry_repo(cfg.sae.release or ""), filename=".gitattributes")


def _registry_repo(release: str) -> str:
    return _registry_entry(release).repo_id


def _registry_entry(release: str) -> PretrainedSAELookup:
    directory = sae_registry()
    if release not in directory:
        raise ConfigError(f"sae-lens has no release '{release}'. Check [sae] release.")
    return directory[release]


def sae_path(cfg: WorkspaceConfig) -> Path:
    return resolve_repo_path(cfg.sae.path or "")
