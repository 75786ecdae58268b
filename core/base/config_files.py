"""Reading workspace configs: the presets under configs/, the default workspace, and a TOML
file parsed strictly into a `WorkspaceConfig` (an unknown key or a bad value is a ConfigError
naming the file and the table)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.base.config import (
    DATA_ROLES,
    DATA_SOURCES,
    DEVICE_PATTERN,
    DTYPES,
    HOOK_PATTERN,
    KNOWN_MODEL_PACKAGES,
    LOCAL_FORMATS,
    MODEL_SOURCES,
    NAME_PATTERN,
    SAE_SOURCES,
    BudgetConfig,
    DataSourceConfig,
    ModelConfig,
    SAEConfig,
    SAETrainingConfig,
    WorkspaceConfig,
)
from core.base.paths import configs_dir
from core.errors import ConfigError

DEFAULT_WORKSPACE = "offline-gemma3-270m"
WORKSPACE_ENV = "UNLEARNING_LENS_WORKSPACE"


def list_workspaces() -> list[str]:
    return sorted(path.stem for path in configs_dir().glob("*.toml"))


def default_workspace() -> str:
    return os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE)


def load_config(name_or_path: str) -> WorkspaceConfig:
    """Parse a workspace by preset name (configs/NAME.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = configs_dir() / f"{name_or_path}.toml"
        if not path.exists():
            known = ", ".join(list_workspaces()) or "none"
            raise ConfigError(
                f"Unknown workspace '{name_or_path}'. Known workspaces: {known}. "
                f"To define a new one, add configs/{name_or_path}.toml (copy a preset)."
            )
    if not path.exists():
        raise ConfigError(f"Workspace config {path} does not exist.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the file and reload.") from exc
    return parse_config(raw, str(path))


def parse_config(raw: dict[str, Any], origin: str) -> WorkspaceConfig:
    reader = _Reader(origin)
    top = reader.table(raw, "", {"workspace", "model", "sae", "data", "budgets"})
    ws = reader.table(top.get("workspace"), "workspace", {"name", "description", "data_dir"})
    model = _parse_model(reader, top.get("model"))
    sae = _parse_sae(reader, top.get("sae"))
    data_tables = reader.table(top.get("data"), "data", set(DATA_ROLES))
    missing = [role for role in DATA_ROLES if role not in data_tables]
    if missing:
        reader.fail("data", f"missing [data.{missing[0]}] (every role of METHOD §2 needs a source)")
    data = tuple(_parse_source(reader, role, data_tables[role]) for role in DATA_ROLES)
    budgets = _parse_budgets(reader, top.get("budgets", {}))
    name = reader.take(ws, "workspace", "name", str)
    if not NAME_PATTERN.match(name):
        reader.fail("workspace", f"name {name!r} may hold only letters, digits, '.', '_' and '-'")
    return WorkspaceConfig(
        name=name,
        description=reader.take(ws, "workspace", "description", str, ""),
        data_dir=reader.take(ws, "workspace", "data_dir", str, "../shared/data"),
        model=model,
        sae=sae,
        data=data,
        budgets=budgets,
        config_path=origin,
    )


def _parse_model(reader: _Reader, raw: Any) -> ModelConfig:
    keys = {"source", "name", "path", "package", "dtype", "device", "chat_template"}
    keys.add("trust_package")
    table = reader.table(raw, "model", keys)
    cfg = ModelConfig(
        source=reader.take(table, "model", "source", str, choices=MODEL_SOURCES),
        name=reader.take(table, "model", "name", str),
        path=reader.take(table, "model", "path", str, None),
        package=reader.take(table, "model", "package", str, None),
        dtype=reader.take(table, "model", "dtype", str, "float32", choices=DTYPES),
        device=reader.take(table, "model", "device", str, "auto"),
        chat_template=reader.take(table, "model", "chat_template", bool, False),
    )
    trusted = reader.take(table, "model", "trust_package", bool, False)
    if not DEVICE_PATTERN.match(cfg.device):
        reader.fail("model", f"device {cfg.device!r} is not auto, cpu, mps, cuda or cuda:N")
    if cfg.package and cfg.package not in KNOWN_MODEL_PACKAGES and not trusted:
        reader.fail(
            "model",
            f"package {cfg.package!r} is not a known model package "
            f"({', '.join(KNOWN_MODEL_PACKAGES)}); loading it runs its code, so say "
            "trust_package = true if you trust it",
        )
    if cfg.source == "local" and not cfg.path:
        reader.fail("model", 'source = "local" needs path = "<folder of a Hugging Face model>"')
    if cfg.source == "gguf-package" and not cfg.package:
        reader.fail("model", 'source = "gguf-package" needs package = "<pip distribution>"')
    return cfg


def _parse_sae(reader: _Reader, raw: Any) -> SAEConfig:
    table = reader.table(raw, "sae", {"source", "hook", "release", "id", "path", "training"})
    hook = reader.take(table, "sae", "hook", str)
    if not HOOK_PATTERN.match(hook):
        reader.fail(
            "sae",
            f"hook '{hook}' is not a TransformerLens block hook "
            "(expected e.g. blocks.9.hook_resid_post)",
        )
    source = reader.take(table, "sae", "source", str, choices=SAE_SOURCES)
    training = None
    if "training" in table:
        train_table = reader.table(
            table["training"], "sae.training", set(SAETrainingConfig.__dataclass_fields__)
        )
        training = SAETrainingConfig(
            **{
                key: reader.take(train_table, "sae.training", key, type(default))
                for key, default in asdict(SAETrainingConfig()).items()
                if key in train_table
            }
        )
    cfg = SAEConfig(
        source=source,
        hook=hook,
        release=reader.take(table, "sae", "release", str, None),
        id=reader.take(table, "sae", "id", str, None),
        path=reader.take(table, "sae", "path", str, None),
        training=training,
    )
    if source == "sae-lens" and not (cfg.release and cfg.id):
        reader.fail("sae", 'source = "sae-lens" needs release = "..." and id = "..."')
    if source in ("local", "trained-here") and not cfg.path:
        reader.fail("sae", f'source = "{source}" needs path = "<folder in sae-lens format>"')
    if source == "trained-here" and training is None:
        reader.fail("sae", 'source = "trained-here" needs a [sae.training] table')
    return cfg


def _parse_source(reader: _Reader, role: str, raw: Any) -> DataSourceConfig:
    where = f"data.{role}"
    keys = {"source", "dataset", "subset", "split", "path", "format", "field", "subjects"}
    table = reader.table(raw, where, keys | {"apart", "gated"})
    cfg = DataSourceConfig(
        role=role,
        source=reader.take(table, where, "source", str, choices=DATA_SOURCES),
        dataset=reader.take(table, where, "dataset", str, None),
        subset=reader.take(table, where, "subset", str, None),
        split=reader.take(table, where, "split", str, None),
        path=reader.take(table, where, "path", str, None),
        format=reader.take(table, where, "format", str, None, choices=LOCAL_FORMATS),
        field=reader.take(table, where, "field", str, "text"),
        subjects=tuple(reader.take(table, where, "subjects", list, [])),
        apart=tuple(reader.take(table, where, "apart", list, [])),
        gated=reader.take(table, where, "gated", bool, False),
    )
    if cfg.source == "hub" and not cfg.dataset:
        reader.fail(where, 'source = "hub" needs dataset = "<hub dataset id>"')
    if cfg.source == "local" and not (cfg.path and cfg.format):
        reader.fail(where, 'source = "local" needs path = "..." and format = "..."')
    return cfg


def _parse_budgets(reader: _Reader, raw: Any) -> BudgetConfig:
    table = reader.table(raw, "budgets", set(BudgetConfig.__dataclass_fields__))
    defaults = BudgetConfig()
    cfg = BudgetConfig(
        context_length=reader.take(
            table, "budgets", "context_length", int, defaults.context_length
        ),
        forget_rows=reader.take(table, "budgets", "forget_rows", int, defaults.forget_rows),
        retain_rows=reader.take(table, "budgets", "retain_rows", int, defaults.retain_rows),
        seed=reader.take(table, "budgets", "seed", int, defaults.seed),
        heldout_fraction=reader.take(
            table, "budgets", "heldout_fraction", float, defaults.heldout_fraction
        ),
    )
    if cfg.context_length < 8 or cfg.forget_rows < 1 or cfg.retain_rows < 1:
        reader.fail("budgets", "context_length must be ≥ 8 and the row budgets ≥ 1")
    if not 0.0 <= cfg.heldout_fraction < 1.0:
        reader.fail("budgets", "heldout_fraction must be in [0, 1)")
    return cfg


_MISSING = object()


class _Reader:
    """Typed, strict access to TOML tables; every failure names the file and the key."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, where: str, problem: str) -> None:
        place = f"[{where}]" if where else "top level"
        raise ConfigError(f"{self.origin}, {place}: {problem}.")

    def table(self, raw: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if raw is None:
            self.fail(where, "this table is missing")
        if not isinstance(raw, dict):
            self.fail(where, "expected a table")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            self.fail(where, f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
        return raw

    def take(
        self,
        table: dict[str, Any],
        where: str,
        key: str,
        kind: type,
        default: Any = _MISSING,
        choices: tuple[str, ...] | None = None,
    ) -> Any:
        if key not in table:
            if default is _MISSING:
                self.fail(where, f"missing required key '{key}'")
            return default
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(where, f"'{key}' must be a {kind.__name__}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(where, f"'{key}' = {value!r} is not one of {', '.join(choices)}")
        return value
