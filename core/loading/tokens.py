"""Token rows as METHOD §3 builds them: documents joined with EOS, cut into rows of the
context length with BOS first, shuffled with a seed, the first N kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Int

if TYPE_CHECKING:
    from core.loading.models import Tokenizer

from core.errors import DataSourceError


def build_token_rows(
    docs: list[str],
    tokenizer: Tokenizer,
    context_length: int,
    n_rows: int | None,
    seed: int,
) -> Int[np.ndarray, "n_rows context_length"]:
    """Rows of int32 token ids; every row starts with BOS.

    `n_rows=None` keeps every full row. A budget larger than the corpus is an error that
    says how many rows the corpus holds.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise DataSourceError("The tokenizer has no BOS or EOS token; rows cannot be built.")
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    stream = np.fromiter((token for ids in encoded for token in (*ids, eos)), dtype=np.int32)
    body = context_length - 1
    available = len(stream) // body
    if n_rows is not None and n_rows > available:
        raise DataSourceError(
            f"Asked for {n_rows} rows of {context_length} tokens but the corpus holds only "
            f"{available} ({len(stream):,} tokens). Lower the row budget to ≤ {available}."
        )
    if available == 0:
        raise DataSourceError("The corpus is shorter than one row.")
    rows = np.empty((available, context_length), dtype=np.int32)
    rows[:, 0] = bos
    rows[:, 1:] = stream[: available * body].reshape(available, body)
    order = np.random.default_rng(seed).permutation(available)
    keep = available if n_rows is None else n_rows
    return rows[order[:keep]]
