"""Per-feature statistics from the activation caches (METHOD §3).

Two ways of counting positions, both reported:
- `saebench` (default): BOS, EOS and PAD positions are not counted.
- `authors`: every position is counted (the paper's own code).
freq = positions where the feature is > 0 / positions counted, per token, pooled over rows.
Everything here reads the caches only, so the numbers are reproducible from them alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int

from core.base.uncertainty import Z95
from core.cache.spec import CacheError, default_rows
from core.cache.store import SparseActivationStore

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

VARIANTS = ("saebench", "authors")
HISTOGRAM_EDGES = np.concatenate([[0.0], np.geomspace(1e-2, 1e3, 31)])


@dataclass(frozen=True)
class CorpusStats:
    """One corpus's counts. Arrays are indexed by feature id."""

    role: str
    corpus: str
    rows: int
    context_length: int
    tokens: dict[str, int]
    count: dict[str, Int[np.ndarray, " d_sae"]]
    mean: dict[str, Float[np.ndarray, " d_sae"]]
    max: dict[str, Float[np.ndarray, " d_sae"]]

    def freq(self, variant: str) -> Float[np.ndarray, " d_sae"]:
        return self.count[variant] / max(self.tokens[variant], 1)


def _segment_sum(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of values[indptr[i]:indptr[i+1]] for every i (empty segments give 0)."""
    starts = indptr[:-1]
    padded = np.append(values.astype(np.float64, copy=False), 0.0)
    result = np.add.reduceat(padded, np.minimum(starts, len(values)))
    result[indptr[1:] == starts] = 0.0
    return result


def _segment_max(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    starts = indptr[:-1]
    padded = np.concatenate([values, [0.0]]).astype(np.float32)
    result = np.maximum.reduceat(padded, np.minimum(starts, len(values)))
    result[indptr[1:] == starts] = 0.0
    return result


_STATS: dict[tuple, CorpusStats] = {}  # (folder, files' version, rows): the last few read
_STATS_KEPT = 8
_WRITING = threading.Lock()


def corpus_stats(cache: SparseActivationStore, rows: int | None = None) -> CorpusStats:
    """Statistics over the first `rows` rows of a final cache (all of them by default).
    Counted once per version of the cache's files in a process (every sweep point and
    screening single asks for them); the arrays are shared, not to be modified."""
    final = cache.rows_final()
    rows = final if rows is None else rows
    if not 0 < rows <= final:
        raise CacheError(
            f"{cache.spec.role}: {rows} rows asked, the cache holds {final} final rows "
            "(ask for 1 to that many, or build more)."
        )
    key = (cache.folder, cache.version(), rows)
    if (found := _STATS.get(key)) is None:
        found = _counted(cache, rows, final)
        with _WRITING:  # pages of several sessions run in threads of one process
            while len(_STATS) >= _STATS_KEPT:
                del _STATS[next(iter(_STATS))]
            _STATS[key] = found
    return found


def _counted(cache: SparseActivationStore, rows: int, final: int) -> CorpusStats:
    ctx = cache.spec.context_length
    indptr, token, value = cache.csc()
    token = np.asarray(token)
    value = np.asarray(value, dtype=np.float32)
    special = special_positions(cache, rows).ravel()
    if rows < final:  # a prefix of the rows: drop the entries beyond it
        inside = token < rows * ctx
        indptr = np.concatenate([[0], np.cumsum(_segment_sum(indptr, inside).astype(np.int64))])
        token, value = token[inside], value[inside]
    counted = {"authors": None, "saebench": ~special[token]}
    count, mean, maximum = {}, {}, {}
    for variant, mask in counted.items():
        kept = value if mask is None else np.where(mask, value, 0.0)
        count[variant] = (
            np.diff(indptr) if mask is None else _segment_sum(indptr, mask).astype(np.int64)
        )
        total = _segment_sum(indptr, kept)
        mean[variant] = np.divide(
            total, count[variant], out=np.zeros_like(total), where=count[variant] > 0
        )
        maximum[variant] = _segment_max(indptr, kept)
    return CorpusStats(
        role=cache.spec.role,
        corpus=cache.spec.corpus,
        rows=rows,
        context_length=ctx,
        tokens={"authors": int(rows * ctx), "saebench": int((~special).sum())},
        count=count,
        mean=mean,
        max=maximum,
    )


def special_positions(cache: SparseActivationStore, rows: int) -> Bool[np.ndarray, "rows ctx"]:
    """Where the first `rows` rows hold BOS, EOS or PAD: the positions SAEBench skips."""
    return np.isin(np.asarray(cache.tokens()[:rows]), cache.special_token_ids())


def _feature_in_rows(
    cache: SparseActivationStore, feature: int, rows: int
) -> tuple[Int[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """One feature's token indices and values within the first `rows` rows."""
    where, values = cache.feature(feature)
    keep = where < rows * cache.spec.context_length
    return where[keep], values[keep].astype(np.float32)


def feature_histogram(
    cache: SparseActivationStore, feature: int, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, counts) of one feature's activations over the positions SAEBench counts,
    on fixed log-spaced bins shared by every feature and corpus."""
    rows = cache.rows_final() if rows is None else rows
    where, values = _feature_in_rows(cache, feature, rows)
    tokens = np.asarray(cache.tokens()[:rows]).ravel()
    values = values[~np.isin(tokens[where], cache.special_token_ids())]  # its positions only
    return HISTOGRAM_EDGES, np.histogram(values, bins=HISTOGRAM_EDGES)[0]


def histogram_span(
    edges: Float[np.ndarray, " bins_1"], counts: Sequence[Int[np.ndarray, " bins"]]
) -> tuple[float, float, bool] | None:
    """The activation range the occupied bins of `counts` (one per corpus, on `edges`)
    cover, and whether it spans two decades or more (a log axis); None when all are empty."""
    occupied = np.flatnonzero(np.sum(counts, axis=0) > 0)
    if not len(occupied):
        return None
    low, high = float(edges[occupied[0]]), float(edges[occupied[-1] + 1])
    low = low if low > 0 else float(edges[1]) / 10  # the first bin starts at 0
    return low, high, high / low >= 100


@dataclass(frozen=True)
class Frequency:
    """One feature's firing frequency on one corpus with its 95% interval, clustered by row
    (the positions of one row are not independent): the ratio estimator's linearised
    standard error over rows, fires_r − freq · counted_r."""

    freq: float
    low: float
    high: float
    fires: int
    tokens: int
    rows: int


def feature_frequency(
    cache: SparseActivationStore, feature: int, variant: str = "saebench", rows: int | None = None
) -> Frequency:
    """The frequency `corpus_stats` gives the feature (same positions counted), with its
    interval; a feature that never fires has [0, 0]: nothing to cluster."""
    ctx = cache.spec.context_length
    rows = cache.rows_final() if rows is None else rows
    counted = ~special_positions(cache, rows)
    if variant != "saebench":  # "authors": every position
        counted[:] = True
    where = _feature_in_rows(cache, feature, rows)[0]
    where = where[counted.ravel()[where]]
    fires = np.bincount(where // ctx, minlength=rows).astype(np.float64)
    per_row = counted.sum(axis=1).astype(np.float64)
    freq = fires.sum() / per_row.sum()
    spread = ((fires - freq * per_row) ** 2).sum() * rows / max(rows - 1, 1)
    half = Z95 * np.sqrt(spread) / per_row.sum()
    return Frequency(
        freq=float(freq),
        low=float(max(freq - half, 0.0)),
        high=float(min(freq + half, 1.0)),
        fires=int(fires.sum()),
        tokens=int(per_row.sum()),
        rows=rows,
    )


def bin_centers(edges: np.ndarray) -> np.ndarray:
    """The geometric middle of each log-spaced bin (the arithmetic one for the bin from 0)."""
    lower, upper = edges[:-1], edges[1:]
    return np.where(lower > 0, np.sqrt(lower * np.maximum(upper, 0)), upper / 2)


def feature_table(forget: CorpusStats, retain: CorpusStats) -> pd.DataFrame:
    """One row per feature: counts, frequencies, ratio, mean and max, both variants."""
    columns: dict[str, np.ndarray] = {"feature": np.arange(len(forget.count["saebench"]))}
    for variant in VARIANTS:
        for name, stats in (("forget", forget), ("retain", retain)):
            columns[f"{name}_count_{variant}"] = stats.count[variant]
            columns[f"{name}_freq_{variant}"] = stats.freq(variant)
            columns[f"{name}_mean_{variant}"] = stats.mean[variant]
            columns[f"{name}_max_{variant}"] = stats.max[variant]
        retain_freq = retain.freq(variant)
        columns[f"ratio_{variant}"] = np.divide(
            forget.freq(variant),
            retain_freq,
            out=np.full(len(retain_freq), np.inf),
            where=retain_freq > 0,
        )
        columns[f"ratio_{variant}"][(forget.freq(variant) == 0) & (retain_freq == 0)] = np.nan
    return pd.DataFrame(columns)


def provenance(forget: CorpusStats, retain: CorpusStats, spec: dict) -> dict:
    """Where the table's numbers come from, stored beside every table written."""
    return {
        **spec,
        "forget": {"corpus": forget.corpus, "rows": forget.rows, "tokens": forget.tokens},
        "retain": {"corpus": retain.corpus, "rows": retain.rows, "tokens": retain.tokens},
        "context_length": forget.context_length,
        "variants": {
            "saebench": "BOS, EOS and PAD positions not counted",
            "authors": "every position counted",
        },
    }


def workspace_stats(
    ws: Workspace, forget_rows: int | None = None, retain_rows: int | None = None
) -> tuple[pd.DataFrame, dict]:
    """The feature table of a workspace from its final caches, with its provenance."""
    found = {}
    for role, rows in (("forget_corpus", forget_rows), ("retain_corpus", retain_rows)):
        cache = SparseActivationStore.for_workspace(ws, role)
        wanted = rows or default_rows(ws, role)
        if cache.rows_final() < wanted:
            raise CacheError(
                f"The {role} cache of {ws.name} has {cache.rows_final()} of {wanted} rows. Run "
                f"`python -m core cache build --workspace {ws.name}` (or build it in the app)."
            )
        found[role] = (cache, corpus_stats(cache, wanted))
    forget, retain = found["forget_corpus"][1], found["retain_corpus"][1]
    spec = found["forget_corpus"][0].spec
    record = provenance(
        forget,
        retain,
        {
            "workspace": ws.name,
            "model": spec.model,
            "dtype": spec.dtype,
            "sae": spec.sae,
            "sae_weights": spec.sae_weights,
            "hook": spec.hook,
        },
    )
    return feature_table(forget, retain), record


def feature_means(
    ws: Workspace, features: list[int], table: pd.DataFrame | None = None
) -> tuple[float, ...]:
    """Mean activation of each feature over the retain corpus's counted tokens (mean
    ablation's target): mean where active × firing frequency (SAEBench variant). `table` is
    the workspace's feature table when the caller holds it already."""
    if table is None:
        table, _ = workspace_stats(ws)
    row = table.set_index("feature").loc[features]
    means = row["retain_mean_saebench"] * row["retain_freq_saebench"]
    return tuple(float(m) for m in means)
