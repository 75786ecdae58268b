"""Builders for tests: workspace configs derived from the presets, written to tmp files;
damaged memos and what reading one must leave."""

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import torch

from core.base.paths import PRESETS_DIR


def preset(name: str = "offline-gemma3-270m") -> dict[str, Any]:
    return tomllib.loads((PRESETS_DIR / f"{name}.toml").read_text())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    scalars = [
        f"{key} = {_toml_value(value)}"
        for key, value in table.items()
        if not isinstance(value, dict)
    ]
    out = []
    if prefix and scalars:
        out.append(f"[{prefix}]")
    out += scalars
    for key, value in table.items():
        if isinstance(value, dict):
            out.append(to_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out) + "\n"


def write_config(tmp_path: Path, raw: dict[str, Any], name: str = "custom") -> Path:
    path = tmp_path / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(raw))
    return path


def small_workspace_config(
    tmp_path: Path, rows: int = 16, context_length: int = 64, **edits
) -> Path:
    """The offline preset with small budgets: same model and SAE, quick caches."""
    raw = preset()
    raw["budgets"].update(context_length=context_length, forget_rows=rows, retain_rows=rows)
    for dotted, value in edits.items():
        table = raw
        *parents, key = dotted.split("__")
        for parent in parents:
            table = table[parent]
        table[key] = value
    return write_config(tmp_path, raw, name="small")


MEMO_DAMAGES = ("truncated", "empty object", "missing key")


def damage_memo(path: Path, kind: str, key: str) -> bytes:
    """Damage the JSON memo at `path` as `kind` (of MEMO_DAMAGES) says: cut in half, `{}`,
    or without `key`. Returns what is left in it."""
    whole = path.read_bytes()
    if kind == "truncated":
        damaged = whole[: len(whole) // 2]
    elif kind == "empty object":
        damaged = b"{}"
    else:
        damaged = json.dumps({k: v for k, v in json.loads(whole).items() if k != key}).encode()
    path.write_bytes(damaged)
    return damaged


def assert_moved_aside(path: Path, damaged: bytes, caplog) -> None:
    """The damaged memo is kept beside `path` as `<name>.damaged-*`, unchanged, and one
    warning line named both (earlier damaged copies of the memo may lie beside it)."""
    aside = [p for p in path.parent.glob(f"{path.name}.damaged-*") if p.read_bytes() == damaged]
    assert len(aside) == 1
    said = [r for r in caplog.records if r.name == "core.base.records"]
    assert [r.levelname for r in said] == ["WARNING"]
    line = said[0].getMessage()
    assert "\n" not in line and str(path) in line and aside[0].name in line, line


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under a folder, by relative path, for byte-for-byte comparisons."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def open_app_page(env: dict[str, str], monkeypatch, page: str, timeout: int = 180):
    """An AppTest of the app, with `env` set, switched to `page` and checked for errors."""
    from streamlit.testing.v1 import AppTest

    from core.base.paths import REPO_ROOT

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=timeout).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@torch.no_grad()
def biology_features(ws, n: int) -> list[int]:
    """Features firing far more often on forget than on retain documents (no caches needed)."""
    frequency = {}
    for role in ("forget_corpus", "retain_corpus"):
        docs = [d for d in ws.documents(role) if len(d) > 400][:12]
        tokens = torch.tensor([ws.tokenizer.encode(d)[:64] for d in docs])
        frequency[role] = (ws.sae.encode(ws.residual(tokens))[:, 1:] > 0).float().mean((0, 1))
    return torch.argsort(frequency["forget_corpus"] - frequency["retain_corpus"], descending=True)[
        :n
    ].tolist()


def shown(markdown: str) -> str:
    """What a Markdown element displays: its source without backslash escapes."""
    return re.sub(r"\\(.)", r"\1", markdown)


def tiny_model_and_sae(model_class, rows: int, **config) -> tuple[Any, Any, Any]:
    """A seeded float64 TransformerLens model of `model_class` (2 layers, d_model 16, 40
    tokens; `config` adds or overrides), an SAE of 32 latents with random weights, and
    `rows` random rows of 12 tokens with BOS (0) first."""
    import numpy as np
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformer_lens import HookedTransformerConfig

    torch.manual_seed(0)
    base = {"n_layers": 2, "d_model": 16, "n_ctx": 12, "d_head": 4, "n_heads": 4, "d_vocab": 40}
    model = model_class(HookedTransformerConfig(**base, dtype=torch.float64, **config))
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.normal_(0, 0.3)
    tokens = np.random.default_rng(0).integers(1, 40, size=(rows, 12))
    tokens[:, 0] = 0  # BOS
    return model, sae.to(torch.float64), tokens
