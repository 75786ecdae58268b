"""A workspace: a frozen config plus lazily loaded model, SAE, tokenizer and data.

    ws = Workspace.open("offline-gemma3-270m")
    ws.model, ws.sae, ws.hook, ws.tokenizer
    ws.documents("forget_corpus"), ws.questions("forget_questions")

Opening checks what is cheap to check (config, local files); the model and the SAE load on
first use and are checked against each other before anything is computed with them.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.base.config import WorkspaceConfig
from core.base.config_files import default_workspace, load_config
from core.base.hub import hub_problem
from core.base.paths import cache_dir, workspace_dir
from core.base.records import read_memo, record_key, write_json
from core.errors import ConfigError, DataSourceError
from core.loading import data, models, saes
from core.loading.hub_cache import is_cached
from core.loading.tokens import build_token_rows
from core.runtime.forward import hook_resid

if TYPE_CHECKING:
    from sae_lens import SAE, HookedSAETransformer

    from core.loading.models import Tokenizer


class Workspace:
    def __init__(self, config: WorkspaceConfig):
        self.config = config
        self._splits: dict[tuple, tuple[list[str], tuple[list[str], list[str]]]] = {}

    @classmethod
    def open(cls, name_or_path: str | None = None) -> Workspace:
        """Parse and validate the workspace; raise a UserError naming any missing local file."""
        config = load_config(name_or_path or default_workspace())
        for source in config.data:
            if problem := data.missing_local_file(config, source):
                raise DataSourceError(problem)
        return cls(config)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def folder(self) -> Path:
        """Where this workspace's caches, statistics and labels are written."""
        return workspace_dir(self.config.name)

    @property
    def hook(self) -> str:
        return self.config.sae.hook

    @property
    def layer(self) -> int:
        return self.config.sae.layer

    @property
    def sae_path(self) -> Path:
        return saes.sae_path(self.config)

    @property
    def device(self) -> str:
        return models.resolve_device(self.config.model.device)

    @cached_property
    def model(self) -> HookedSAETransformer:
        return models.load_model(self.config.model)

    @property
    def tokenizer(self) -> Tokenizer:
        """Loads without the model, so cached views need no forward pass."""
        return models.load_tokenizer(self.config.model)

    @cached_property
    def sae(self) -> SAE:
        sae = saes.load_sae(self.config, self.device, self.config.model.dtype)
        saes.check_fit(self.config, self.model, sae)
        return sae

    @property
    def model_fingerprint(self) -> str:
        """Which weights exactly (`models.model_fingerprint`, read afresh: a hub model's
        revision appears once it is downloaded): keys caches and evaluation memos."""
        return models.model_fingerprint(self.config.model)

    @cached_property
    def _sae_weights_hash(self) -> str:
        if problem := saes.sae_folder_problem(self.config):
            raise ConfigError(problem)
        weights = self.sae_path / "sae_weights.safetensors"
        return "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()

    @cached_property
    def _registry_fingerprint(self) -> str:
        found = saes.registry_fingerprint(self.config)
        if found is None:
            assert self.sae is not None  # downloads it (or says why it cannot)
            found = saes.registry_fingerprint(self.config)
        if found is None:
            raise ConfigError(
                f"sae-lens loaded {self.config.sae.identity()}, but its files are not in the "
                "Hugging Face cache where its registry entry says, so nothing can be keyed "
                'by its weights. Download its folder and use [sae] source = "local".'
            )
        return found

    def sae_fingerprint(self) -> str:
        """The SAE's weights hash (local SAEs), or its registry coordinates with a hash of
        its files in the Hugging Face cache (sae-lens; downloaded first if need be)."""
        if self.config.sae.source == "sae-lens":
            return self._registry_fingerprint
        return self._sae_weights_hash

    def sae_width(self) -> int:
        """d_sae, read from the SAE's cfg.json when local (no model load needed)."""
        return saes.sae_cfg(self.config).get("d_sae") or self.sae.cfg.d_sae

    def problems(self) -> list[str]:
        """Everything that would stop this workspace from loading, without loading it."""
        found = [p for s in self.config.data if (p := data.missing_local_file(self.config, s))]
        if problem := models.device_problem(self.device):
            found.append(problem)
        if problem := saes.sae_folder_problem(self.config):
            found.append(problem)
        hub_needs = []
        if self.config.model.source == "hub" and not is_cached(self.config.model.name):
            hub_needs.append(f"model {self.config.model.name}")
        if self.config.sae.source == "sae-lens" and not saes.registry_cached(self.config):
            hub_needs.append(f"SAE {self.config.sae.release} / {self.config.sae.id}")
        hub_needs += [
            f"dataset {s.dataset}"
            for s in self.config.data
            if s.source == "hub" and not data.hub_source_cached(s)
        ]
        if hub_needs and (reason := hub_problem()):
            found.append(
                f"Needs the Hugging Face hub ({reason}) for: {', '.join(hub_needs)}. "
                "Offline, download them elsewhere and point the workspace config at local "
                'copies ([model] source = "local", [sae] source = "local", '
                '[data.*] source = "local").'
            )
        return found

    def is_prepared(self) -> bool:
        """Whether `prepare` succeeded with exactly this config (and the model is in place)."""
        stamp = self.folder / "prepared.json"
        if not stamp.exists() or saes.sae_folder_problem(self.config):
            return False
        model = self.config.model
        if model.source == "gguf-package" and not models.converted_gguf_dir(model).exists():
            return False
        recorded = read_memo(stamp, {"stamp": str})
        return recorded is not None and recorded["stamp"] == self._prepared_stamp()

    def _prepared_stamp(self) -> str:
        return f"{self.config.provenance_hash()}:{self.sae_fingerprint()}"

    def mark_prepared(self) -> None:
        """Stamp the workspace prepared (atomically: `is_prepared` may read it meanwhile)."""
        record = {"stamp": self._prepared_stamp(), **self.provenance()}
        write_json(self.folder / "prepared.json", record, indent=2)

    def describe_source(self, role: str, portable: bool = False) -> str:
        return data.describe(self.config, self.config.source(role), portable)

    def documents(self, role: str, limit: int | None = None) -> list[str]:
        """A corpus role's documents (`data.load_documents`: a local file is read once per
        version; the list is shared, not to be modified)."""
        return data.load_documents(self.config, role, limit)

    def documents_split(self, role: str, limit: int | None = None) -> tuple[list[str], list[str]]:
        """(train, held-out) documents of a corpus role (of its first `limit` documents
        when given); held-out text is never trained on. Split again only when the documents
        were read again (the lists are shared, not to be modified)."""
        budgets = self.config.budgets
        docs = self.documents(role, limit)
        kept = self._splits.get((role, limit))
        if kept is None or kept[0] is not docs:
            split = data.split_heldout(docs, budgets.heldout_fraction, budgets.seed)
            kept = self._splits[(role, limit)] = (docs, split)
        return kept[1]

    def questions(self, role: str) -> list[data.Question]:
        return data.load_questions(self.config, role)

    def token_rows(
        self, docs: list[str], context_length: int, n_rows: int | None, seed: int
    ) -> Int[np.ndarray, "n_rows context_length"]:
        """Seeded token rows of `docs`; their token stream is kept under
        cache/token-streams/ for every workspace on the same model."""
        streams = cache_dir() / "token-streams"
        model = self.config.model.identity()
        return build_token_rows(docs, self.tokenizer, context_length, n_rows, seed, streams, model)

    @torch.no_grad()
    def residual(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """Activations at the SAE's hook (`core.runtime.forward.hook_resid`)."""
        return hook_resid(self.model, tokens, self.hook, self.layer)

    def training_hash(self) -> str:
        """Key of everything the SAE training depends on."""
        cfg = self.config
        record: dict[str, Any] = {
            "model": cfg.model.__dict__ | {"device": None},
            "hook": cfg.sae.hook,
            "training": cfg.sae.training.__dict__ if cfg.sae.training else None,
            "activations": "float32, BOS dropped; massive activations (> 4x median norm) dropped",
            "heldout": [cfg.budgets.heldout_fraction, cfg.budgets.seed],
            "forget": data.fingerprint(cfg, "forget_corpus"),
            "retain": data.fingerprint(cfg, "retain_corpus"),
        }
        return record_key(record)

    def provenance(self) -> dict[str, str]:
        """What the sidebar and every exported number say about where they came from."""
        cfg = self.config
        model = cfg.model
        where = {"hub": model.name, "local": model.path, "gguf-package": model.package}
        sae = cfg.sae
        sae_where = f"{sae.release} / {sae.id}" if sae.source == "sae-lens" else sae.path
        return {
            "workspace": cfg.name,
            "model": f"{model.name} ({model.source}: {where[model.source]})",
            "sae": f"{sae_where} ({sae.source})",
            "hook": sae.hook,
            "dtype": model.dtype,
            "device": self.device,
            **{role: self.describe_source(role) for role in (s.role for s in cfg.data)},
        }
