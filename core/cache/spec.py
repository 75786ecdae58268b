"""What a cache's contents depend on. The hash of the spec names the cache's folder, so a
changed input (model and its exact weights, dtype, SAE weights, hook, corpus and its
revision, split, context length, seed) gives another folder and a stale cache is never
read. A hub model not downloaded here, or a hub dataset not prepared here, has no revision
yet: such a spec is `unresolved` until they are (see `SparseActivationStore.for_workspace`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from core.base.records import record_key
from core.errors import UserError
from core.loading import data
from core.loading.models import NOT_DOWNLOADED

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

FORMAT_VERSION = 1
DEFAULT_SHARD_ROWS = 32
CORPUS_ROLES = {"forget": "forget_corpus", "retain": "retain_corpus"}


class CacheError(UserError):
    """A cache that does not match its manifest, or is incomplete or corrupt."""


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's contents depend on. Its hash names the cache folder."""

    workspace: str
    role: str
    model: str
    model_weights: str
    dtype: str
    sae: str
    sae_weights: str
    d_sae: int
    hook: str
    corpus: str
    corpus_hash: str
    split: str
    context_length: int
    seed: int
    format_version: int = FORMAT_VERSION

    def key(self) -> str:
        return record_key(asdict(self))

    def unresolved(self) -> tuple[str, ...]:
        """The fields that will change once the hub model is downloaded or the hub dataset
        prepared here: their revision is not known yet."""
        pending = {
            "model_weights": f"@{NOT_DOWNLOADED}",
            "corpus_hash": f"@{data.UNKNOWN_REVISION}",
        }
        return tuple(name for name, end in pending.items() if getattr(self, name).endswith(end))


def cache_spec(ws: Workspace, role: str) -> CacheSpec:
    cfg = ws.config
    budgets = cfg.budgets
    return CacheSpec(
        workspace=cfg.name,
        role=role,
        model=cfg.model.identity(),
        model_weights=ws.model_fingerprint,
        dtype=cfg.model.dtype,
        sae=cfg.sae.identity(),
        sae_weights=ws.sae_fingerprint(),
        d_sae=ws.sae_width(),
        hook=cfg.sae.hook,
        corpus=ws.describe_source(role, portable=True),
        corpus_hash=data.fingerprint(cfg, role),
        split=f"train documents (held-out {budgets.heldout_fraction}, seed {budgets.seed})",
        context_length=budgets.context_length,
        seed=budgets.seed,
    )


def default_rows(ws: Workspace, role: str) -> int:
    """The workspace's row budget for a corpus role."""
    budgets = ws.config.budgets
    return budgets.forget_rows if role == "forget_corpus" else budgets.retain_rows
