"""SAE health on held-out text: L0, fraction of variance explained, dead features, and the
cross-entropy added when the SAE's reconstruction replaces the activation.

BOS is left out everywhere: its residual norm is ~14x the rest, so it would dominate the
variance, and it is not spliced (the prediction from BOS is then unchanged by design).
Results are cached per workspace, keyed by everything that determines them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.base.records import read_memo, record_key, write_json
from core.loading import data
from core.runtime.forward import model_lock
from core.sae.adapter import adapter_for
from core.sae.training import MASSIVE_NORM_FACTOR
from core.workspace.workspace import Workspace

HEALTH_ROLES = ("retain_corpus", "forget_corpus")


@dataclass(frozen=True)
class SAEHealth:
    corpus: str
    source: str
    rows: int
    tokens: int
    l0: float
    fve: float
    fve_typical: float
    massive_tokens: int
    dead_features: int
    d_sae: int
    ce_clean: float
    ce_spliced: float
    bos: str = "excluded from L0/FVE; not spliced"
    typical: str = "FVE without tokens whose norm exceeds 4x the batch median"

    @property
    def ce_added(self) -> float:
        return self.ce_spliced - self.ce_clean


def heldout_rows(ws: Workspace, role: str, n_rows: int) -> Int[np.ndarray, "rows ctx"]:
    _, heldout = ws.documents_split(role)
    budgets = ws.config.budgets
    return ws.token_rows(heldout, budgets.context_length, None, budgets.seed)[:n_rows]


@torch.no_grad()
def measure_health(
    ws: Workspace,
    rows: Int[np.ndarray, "rows ctx"],
    corpus: str,
    source: str,
    batch_size: int = 8,
    report: Callable[[int], None] | None = None,
) -> SAEHealth:
    """L0, FVE, dead features and CE added on `rows`; `report` gets the rows done."""
    model, sae, hook = ws.model, ws.sae, ws.hook
    adapter = adapter_for(sae)
    d_model = model.cfg.d_model
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    active = 0.0
    sums = {name: torch.zeros(2, d_model, dtype=torch.float64) for name in ("all", "typical")}
    sse = {"all": 0.0, "typical": 0.0}
    counts = {"all": 0, "typical": 0}
    massive = 0
    ce_clean = ce_spliced = 0.0
    predictions = 0
    for start in range(0, len(rows), batch_size):
        tokens = torch.from_numpy(rows[start : start + batch_size]).long().to(ws.device)
        with model_lock(model):
            logits, cache = model.run_with_cache(tokens, names_filter=hook)
        x = cache[hook][:, 1:]
        acts = adapter.encode(x)
        recon = adapter.decode(acts)
        flat = x.reshape(-1, d_model).double().cpu()
        error = (x - recon).reshape(-1, d_model).double().pow(2).sum(-1).cpu()
        norms = flat.norm(dim=-1)
        typical = norms < MASSIVE_NORM_FACTOR * norms.median()
        massive += int((~typical).sum())
        fired |= (acts > 0).reshape(-1, acts.shape[-1]).any(0).cpu()
        active += (acts > 0).sum().item()
        for name, mask in (("all", torch.ones_like(typical)), ("typical", typical)):
            sums[name][0] += flat[mask].sum(0)
            sums[name][1] += flat[mask].pow(2).sum(0)
            sse[name] += error[mask].sum().item()
            counts[name] += int(mask.sum())

        def splice(
            act: Float[Tensor, "batch pos d_in"],
            hook: object,
            recon: Float[Tensor, "batch body d_in"] = recon,
        ) -> Float[Tensor, "batch pos d_in"]:
            act[:, 1:] = recon
            return act

        with model_lock(model):
            spliced = model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)])
        ce_clean += model.loss_fn(logits, tokens, per_token=True).sum().item()
        ce_spliced += model.loss_fn(spliced, tokens, per_token=True).sum().item()
        predictions += tokens.shape[0] * (tokens.shape[1] - 1)
        if report is not None:
            report(start + tokens.shape[0])

    def fve(name: str) -> float:
        total, squares = sums[name]
        variance = (squares - total.pow(2) / counts[name]).sum().item()
        return 1 - sse[name] / variance

    return SAEHealth(
        corpus=corpus,
        source=source,
        rows=len(rows),
        tokens=counts["all"],
        l0=active / counts["all"],
        fve=fve("all"),
        fve_typical=fve("typical"),
        massive_tokens=massive,
        dead_features=int((~fired).sum()),
        d_sae=sae.cfg.d_sae,
        ce_clean=ce_clean / predictions,
        ce_spliced=ce_spliced / predictions,
    )


def _health_key(ws: Workspace, n_rows: int) -> str:
    record = {
        "workspace": ws.config.provenance(),
        "rows": n_rows,
        "data": [data.fingerprint(ws.config, role) for role in HEALTH_ROLES],
        "sae_files": ws.sae_fingerprint(),
    }
    return record_key(record)


def cached_health(ws: Workspace, n_rows: int = 64) -> list[SAEHealth] | None:
    path = ws.folder / f"health-{_health_key(ws, n_rows)}.json"
    memo = read_memo(path, {"results": list}, _results_problem)
    return None if memo is None else [SAEHealth(**item) for item in memo["results"]]


def _results_problem(memo: dict) -> str | None:
    """What is wrong unless the kept results are one SAEHealth record per corpus."""
    names = {field.name for field in fields(SAEHealth)}
    results = memo["results"]
    if len(results) == len(HEALTH_ROLES) and all(
        isinstance(item, dict) and item.keys() == names for item in results
    ):
        return None
    return f"results are not {len(HEALTH_ROLES)} SAE health records"


def sae_health(
    ws: Workspace, n_rows: int = 64, progress: Callable[[int, int], None] | None = None
) -> list[SAEHealth]:
    """Health on `n_rows` held-out rows of the retain and the forget corpus; cached.
    `progress` gets (rows done, rows to do)."""
    if (found := cached_health(ws, n_rows)) is not None:
        return found
    results = []
    for index, role in enumerate(HEALTH_ROLES):
        rows = heldout_rows(ws, role, n_rows)

        def report(
            done: int, offset: int = index * len(rows), total: int = len(HEALTH_ROLES) * len(rows)
        ) -> None:
            if progress is not None:
                progress(offset + done, total)

        results.append(measure_health(ws, rows, role, ws.describe_source(role), report=report))
    path = ws.folder / f"health-{_health_key(ws, n_rows)}.json"
    record = {"provenance": ws.provenance(), "results": [asdict(r) for r in results]}
    write_json(path, record, indent=2)
    return results
