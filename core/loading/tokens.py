"""Token rows as METHOD §3 builds them: documents joined with EOS, cut into rows of the
context length with BOS first, shuffled with a seed, the first N kept.

Drawing seeded rows needs the whole corpus's token stream, and tokenizing a corpus costs
more than encoding a few rows with the SAE, so the stream can be kept on disk, keyed by the
tokenizer and the documents' contents: a corpus is tokenized once per model, whatever the
SAE, budget or seed.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Int

if TYPE_CHECKING:
    from core.loading.models import Tokenizer

from core.base.records import record_key, save_array
from core.errors import DataSourceError

log = logging.getLogger(__name__)


def build_token_rows(
    docs: list[str],
    tokenizer: Tokenizer,
    context_length: int,
    n_rows: int | None,
    seed: int,
    streams: Path | None = None,
    model: str = "",
) -> Int[np.ndarray, "n_rows context_length"]:
    """Rows of int32 token ids; every row starts with BOS.

    `n_rows=None` keeps every full row. A budget larger than the corpus is an error that
    says how many rows the corpus holds. With `streams` (a folder) the token stream is read
    from there when it was kept, and kept there when it was not; `model` names the
    tokenizer's model in its key.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise DataSourceError("The tokenizer has no BOS or EOS token; rows cannot be built.")
    if streams is None:
        stream = token_stream(docs, tokenizer)
    else:
        stream = kept_token_stream(docs, tokenizer, streams, model)
    return rows_from_stream(stream, bos, context_length, n_rows, seed)


def token_stream(docs: list[str], tokenizer: Tokenizer) -> Int[np.ndarray, " tokens"]:
    """The documents' token ids, each document followed by EOS."""
    eos = tokenizer.eos_token_id
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return np.fromiter((token for ids in encoded for token in (*ids, eos)), dtype=np.int32)


def kept_token_stream(
    docs: list[str], tokenizer: Tokenizer, folder: Path, model: str
) -> Int[np.ndarray, " tokens"]:
    """`token_stream`, read from `folder` when kept there; an unreadable file is rebuilt."""
    path = folder / f"{stream_key(docs, tokenizer, model)}.npy"
    if path.exists():
        try:
            stream = np.load(path)
            if stream.dtype == np.int32 and stream.ndim == 1:
                return stream
            log.warning("%s is not a token stream; rebuilding it.", path)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("%s is unreadable (%s); rebuilding it.", path, exc)
    stream = token_stream(docs, tokenizer)
    save_array(path, stream)
    return stream


def stream_key(docs: list[str], tokenizer: Tokenizer, model: str) -> str:
    """Key of a token stream: the model the tokenizer comes with, the tokenizer's class,
    vocabulary size and special ids, and the documents' contents in order."""
    digest = hashlib.sha256()
    for doc in docs:
        encoded = doc.encode()
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    record = {
        "model": model,
        "tokenizer": type(tokenizer).__name__,
        "vocabulary": len(tokenizer),
        "special": [tokenizer.bos_token_id, tokenizer.eos_token_id],
        "documents": digest.hexdigest(),
        "format": "int32 ids, each document followed by EOS, no BOS",
    }
    return record_key(record)


def rows_from_stream(
    stream: Int[np.ndarray, " tokens"],
    bos: int,
    context_length: int,
    n_rows: int | None,
    seed: int,
) -> Int[np.ndarray, "n_rows context_length"]:
    """The stream cut into rows of `context_length - 1` tokens after BOS, seeded shuffle."""
    body = context_length - 1
    available = len(stream) // body
    if n_rows is not None and n_rows > available:
        raise DataSourceError(
            f"Asked for {n_rows} rows of {context_length} tokens but the corpus holds only "
            f"{available} ({len(stream):,} tokens). Lower the row budget to ≤ {available}."
        )
    if available == 0:
        raise DataSourceError("The corpus is shorter than one row.")
    order = np.random.default_rng(seed).permutation(available)
    keep = order if n_rows is None else order[:n_rows]
    rows = np.empty((len(keep), context_length), dtype=np.int32)
    rows[:, 0] = bos
    rows[:, 1:] = stream[: available * body].reshape(available, body)[keep]
    return rows
