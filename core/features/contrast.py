"""Contrast search: two groups of texts, and the features ranked by how much more often they
fire on the first group's tokens than on the second's."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int

from core.errors import UserError
from core.sae.adapter import adapter_for
from core.workspace.workspace import Workspace

ORDERS = ("difference", "ratio")


@dataclass(frozen=True)
class ContrastConfig:
    """How the two groups are read and the features ranked.

    Args:
        max_tokens: tokens read per text (after BOS); longer texts are cut.
        batch_size: texts per forward pass.
        order: "difference" (freq_a − freq_b) or "ratio" (freq_a / freq_b, a zero on the
            second group counted as half a count).
    """

    max_tokens: int = 256
    batch_size: int = 8
    order: str = "difference"

    def check(self) -> None:
        if self.max_tokens < 1 or self.batch_size < 1:
            raise UserError("Contrast: max_tokens and batch_size must be ≥ 1.")
        if self.order not in ORDERS:
            raise UserError(f"Contrast order {self.order!r}: choose one of {ORDERS}.")


def split_texts(pasted: str) -> list[str]:
    """Texts from a paste or a file: paragraphs separated by blank lines."""
    blocks = [block.strip() for block in pasted.replace("\r\n", "\n").split("\n\n")]
    return [block for block in blocks if block]


@torch.no_grad()
def feature_counts(
    ws: Workspace,
    texts: list[str],
    config: ContrastConfig,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Int[np.ndarray, " d_sae"], int]:
    """(tokens each feature fires on, tokens read) over the texts; BOS is run, not counted."""
    d_sae = ws.sae.cfg.d_sae
    counts = np.zeros(d_sae, dtype=np.int64)
    total = 0
    bos = ws.tokenizer.bos_token_id
    rows = [
        [bos, *ws.tokenizer(text, add_special_tokens=False)["input_ids"][: config.max_tokens]]
        for text in texts
    ]
    rows.sort(key=len)  # similar lengths batch together: less padding
    adapter = adapter_for(ws.sae)
    for start in range(0, len(rows), config.batch_size):
        batch = rows[start : start + config.batch_size]
        width = max(len(row) for row in batch)
        tokens = torch.tensor([row + [bos] * (width - len(row)) for row in batch])
        resid = ws.residual(tokens)
        real = torch.tensor([[0 < p < len(row) for p in range(width)] for row in batch])
        _, features, _ = adapter.sparse_encode(resid[real])
        counts += np.bincount(features, minlength=d_sae)
        total += int(real.sum())
        if progress:
            progress(min(start + config.batch_size, len(rows)), len(rows))
    return counts, total


def _group(texts: list[str], name: str) -> list[str]:
    kept = [text for text in texts if text.strip()]
    if not kept:
        raise UserError(f"Group {name} has no text: paste or upload at least one paragraph.")
    return kept


def texts_digest(texts: list[str]) -> str:
    return hashlib.sha256("\n\x00\n".join(texts).encode()).hexdigest()[:16]


def contrast(
    ws: Workspace,
    group_a: list[str],
    group_b: list[str],
    config: ContrastConfig | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Every feature that fires on either group, ranked (most specific to group A first),
    and a record of what was compared (what a saved set keeps as its selection)."""
    config = config or ContrastConfig()
    config.check()
    groups = {"a": _group(group_a, "A"), "b": _group(group_b, "B")}
    counted = {}
    for name, texts in groups.items():
        report = (lambda done, total, n=name: progress(n, done, total)) if progress else None
        counted[name] = feature_counts(ws, texts, config, report)
    (count_a, tokens_a), (count_b, tokens_b) = counted["a"], counted["b"]
    freq_a, freq_b = count_a / max(tokens_a, 1), count_b / max(tokens_b, 1)
    floor = 0.5 / max(tokens_b, 1)
    fired = np.flatnonzero(count_a + count_b)
    frame = pd.DataFrame(
        {
            "feature": fired,
            "count_a": count_a[fired],
            "count_b": count_b[fired],
            "freq_a": freq_a[fired],
            "freq_b": freq_b[fired],
            "difference": (freq_a - freq_b)[fired],
            "ratio": (freq_a / np.maximum(freq_b, floor))[fired],
        }
    )
    frame = frame.sort_values([config.order, "count_a", "feature"], ascending=[False, False, True])
    record = {
        "method": "contrast search",
        "sae": ws.sae_fingerprint(),
        "config": asdict(config),
        "group_a": {
            "texts": len(groups["a"]),
            "tokens": tokens_a,
            "sha256": texts_digest(groups["a"]),
        },
        "group_b": {
            "texts": len(groups["b"]),
            "tokens": tokens_b,
            "sha256": texts_digest(groups["b"]),
        },
    }
    return frame.reset_index(drop=True), record


def corpus_texts(ws: Workspace, role: str, n: int) -> list[str]:
    """The first n documents of a corpus role, to contrast corpora instead of pasted text."""
    if n < 1:
        raise UserError(f"Take at least one document of {role}, not {n}.")
    return ws.documents(role)[:n]
