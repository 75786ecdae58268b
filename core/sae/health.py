"""SAE health on held-out text: L0, fraction of variance explained, dead features, and the
cross-entropy added when the SAE's reconstruction replaces the activation.

BOS is left out everywhere: its residual norm is ~14x the rest, so it would dominate the
variance, and it is not spliced (the prediction from BOS is then unchanged by design).
Results are cached per workspace, keyed by everything that determines them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.base.records import read_memo, record_key, write_json
from core.base.uncertainty import mean_se
from core.loading import data
from core.runtime.forward import model_lock
from core.sae.adapter import adapter_for
from core.sae.training import MASSIVE_NORM_FACTOR
from core.workspace.throughput import estimate, record_throughput
from core.workspace.workspace import Workspace

HEALTH_ROLES = ("retain_corpus", "forget_corpus")


@dataclass(frozen=True)
class SAEHealth:
    """One corpus's health; every `_se` is a standard error over its rows (a jackknife
    for the FVEs, which are ratios)."""

    corpus: str
    source: str
    rows: int
    tokens: int
    l0: float
    l0_se: float | None
    fve: float
    fve_se: float | None
    fve_typical: float
    fve_typical_se: float | None
    massive_tokens: int
    dead_features: int
    d_sae: int
    ce_clean: float
    ce_spliced: float
    ce_added_se: float | None
    bos: str = "excluded from L0/FVE; not spliced"
    typical: str = "FVE without tokens whose norm exceeds 4x the batch median"

    @property
    def ce_added(self) -> float:
        return self.ce_spliced - self.ce_clean


def with_se(value: float, se: float | None, rows: int, digits: int = 4, sign: str = "") -> str:
    """A health number with its standard error over rows, or why it has none."""
    if se is None:
        return f"{value:{sign}.{digits}f} (no SE: {rows} row{'s' * (rows != 1)})"
    return f"{value:{sign}.{digits}f} ± {se:.{digits}f}"


def heldout_rows(ws: Workspace, role: str, n_rows: int) -> Int[np.ndarray, "rows ctx"]:
    _, heldout = ws.documents_split(role)
    budgets = ws.config.budgets
    return ws.token_rows(heldout, budgets.context_length, None, budgets.seed)[:n_rows]


@dataclass
class _Parts:
    """Per row: squared error, count, sum and sum of squares of the activations."""

    sse: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    sums: list[Tensor] = field(default_factory=list)
    squares: list[Tensor] = field(default_factory=list)

    def add(
        self,
        x: Float[Tensor, "batch body d_in"],
        error: Float[Tensor, "batch body"],
        mask: Bool[Tensor, "batch body"],
    ) -> None:
        kept = mask[..., None].double()
        self.sse += (error * mask).sum(1).tolist()
        self.count += mask.sum(1).tolist()
        self.sums += list((x * kept).sum(1))
        self.squares += list((x.pow(2) * kept).sum(1))

    def fve(self) -> tuple[float, float | None]:
        """FVE over all rows, and its jackknife standard error (rows left out one at a time)."""
        sse, count = np.array(self.sse), np.array(self.count, dtype=np.float64)
        sums, squares = torch.stack(self.sums), torch.stack(self.squares)

        def fve(sse_: np.ndarray, count_: np.ndarray, sums_: Tensor, squares_: Tensor):
            variance = (squares_ - sums_.pow(2) / torch.as_tensor(count_)[..., None]).sum(-1)
            return 1 - sse_ / variance.numpy()

        whole = float(fve(sse.sum(), count.sum(), sums.sum(0), squares.sum(0)))
        if len(sse) < 2:
            return whole, None
        left_out = fve(
            sse.sum() - sse, count.sum() - count, sums.sum(0) - sums, squares.sum(0) - squares
        )
        rows = len(sse)
        return whole, float(np.sqrt((rows - 1) / rows * ((left_out - left_out.mean()) ** 2).sum()))


@torch.no_grad()
def measure_health(
    ws: Workspace,
    rows: Int[np.ndarray, "rows ctx"],
    corpus: str,
    source: str,
    batch_size: int = 8,
    report: Callable[[int], None] | None = None,
) -> SAEHealth:
    """L0, FVE, dead features and CE added on `rows`, each with its standard error over the
    rows; `report` gets the rows done."""
    model, sae, hook = ws.model, ws.sae, ws.hook
    adapter = adapter_for(sae)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    parts = {"all": _Parts(), "typical": _Parts()}
    active: list[float] = []
    ce: dict[str, list[float]] = {"clean": [], "spliced": []}
    massive = 0
    for start in range(0, len(rows), batch_size):
        tokens = torch.from_numpy(rows[start : start + batch_size]).long().to(ws.device)
        with model_lock(model):
            logits, cache = model.run_with_cache(tokens, names_filter=hook)
        x = cache[hook][:, 1:]
        acts = adapter.encode(x)
        recon = adapter.decode(acts)
        error = (x - recon).double().pow(2).sum(-1).cpu()
        body = x.double().cpu()
        norms = body.norm(dim=-1)
        typical = norms < MASSIVE_NORM_FACTOR * norms.median()
        massive += int((~typical).sum())
        fired |= (acts > 0).reshape(-1, acts.shape[-1]).any(0).cpu()
        active += (acts > 0).sum(-1).double().mean(-1).tolist()
        parts["all"].add(body, error, torch.ones_like(typical))
        parts["typical"].add(body, error, typical)

        def splice(
            act: Float[Tensor, "batch pos d_in"],
            hook: object,
            recon: Float[Tensor, "batch body d_in"] = recon,
        ) -> Float[Tensor, "batch pos d_in"]:
            act[:, 1:] = recon
            return act

        with model_lock(model):
            spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)])
        ce["clean"] += model.loss_fn(logits, tokens, per_token=True).mean(-1).tolist()
        ce["spliced"] += model.loss_fn(spliced, tokens, per_token=True).mean(-1).tolist()
        if report is not None:
            report(start + tokens.shape[0])
    fve, fve_se = parts["all"].fve()
    fve_typical, fve_typical_se = parts["typical"].fve()
    clean, edited = np.array(ce["clean"]), np.array(ce["spliced"])
    return SAEHealth(
        corpus=corpus,
        source=source,
        rows=len(rows),
        tokens=sum(parts["all"].count),
        l0=float(np.mean(active)),
        l0_se=mean_se(active)[1],
        fve=fve,
        fve_se=fve_se,
        fve_typical=fve_typical,
        fve_typical_se=fve_typical_se,
        massive_tokens=massive,
        dead_features=int((~fired).sum()),
        d_sae=sae.cfg.d_sae,
        ce_clean=float(clean.mean()),
        ce_spliced=float(edited.mean()),
        ce_added_se=mean_se(edited - clean)[1],
    )


def _health_key(ws: Workspace, n_rows: int) -> str:
    record = {
        "workspace": ws.config.provenance(),
        "rows": n_rows,
        "data": [data.fingerprint(ws.config, role) for role in HEALTH_ROLES],
        "sae_files": ws.sae_fingerprint(),
        "version": 2,  # standard errors
    }
    return record_key(record)


def health_path(ws: Workspace, n_rows: int) -> Path:
    """Where the health of `n_rows` rows a corpus is kept."""
    return ws.folder / f"health-{_health_key(ws, n_rows)}.json"


def kept_health(ws: Workspace, n_rows: int = 64) -> tuple[list[SAEHealth], str] | None:
    """The kept health and when it was measured (UTC, to the minute), from one read; None
    when none is kept. Memos from before the date was kept give their file's time."""
    path = health_path(ws, n_rows)
    memo = read_memo(path, {"results": list}, _results_problem)
    if memo is None:
        return None
    when = memo.get("measured_at")
    if not isinstance(when, str):
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    results = [SAEHealth(**item) for item in memo["results"]]
    return results, when[:16].replace("T", " ") + " UTC"


def cached_health(ws: Workspace, n_rows: int = 64) -> list[SAEHealth] | None:
    kept = kept_health(ws, n_rows)
    return None if kept is None else kept[0]


def health_measured_at(ws: Workspace, n_rows: int = 64) -> str | None:
    """When the kept health was measured; None when none is kept."""
    kept = kept_health(ws, n_rows)
    return None if kept is None else kept[1]


def _results_problem(memo: dict) -> str | None:
    """What is wrong unless the kept results are one SAEHealth record per corpus."""
    names = {field.name for field in fields(SAEHealth)}
    results = memo["results"]
    if len(results) == len(HEALTH_ROLES) and all(
        isinstance(item, dict) and item.keys() == names for item in results
    ):
        return None
    return f"results are not {len(HEALTH_ROLES)} SAE health records"


HEALTH_RUN = "SAE health"  # its throughput record: two full forwards per token


def health_estimate(ws: Workspace, n_rows: int = 64) -> str:
    """How long `sae_health` should take here (from throughput measured on this machine),
    or that nothing has been measured yet."""
    tokens = len(HEALTH_ROLES) * n_rows * ws.config.budgets.context_length
    return estimate(ws, HEALTH_RUN, tokens, hook_passes=0, full_passes=2)


def sae_health(
    ws: Workspace,
    n_rows: int = 64,
    progress: Callable[[int, int], None] | None = None,
    recompute: bool = False,
) -> list[SAEHealth]:
    """Health on `n_rows` held-out rows of the retain and the forget corpus; cached unless
    `recompute` (the kept result is replaced only once the new one is whole).
    `progress` gets (rows done, rows to do)."""
    if not recompute and (found := cached_health(ws, n_rows)) is not None:
        return found
    results = []
    tokens, seconds = 0, 0.0
    for index, role in enumerate(HEALTH_ROLES):
        rows = heldout_rows(ws, role, n_rows)

        def report(
            done: int, offset: int = index * len(rows), total: int = len(HEALTH_ROLES) * len(rows)
        ) -> None:
            if progress is not None:
                progress(offset + done, total)

        ws.model  # noqa: B018 (loaded before the clock starts)
        started = time.perf_counter()
        results.append(measure_health(ws, rows, role, ws.describe_source(role), report=report))
        tokens, seconds = tokens + rows.size, seconds + time.perf_counter() - started
    record_throughput(ws, HEALTH_RUN, tokens, seconds, hook_passes=0, full_passes=2)
    record = {
        "provenance": ws.provenance(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": [asdict(r) for r in results],
    }
    write_json(health_path(ws, n_rows), record, indent=2)
    return results
