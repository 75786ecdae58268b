"""Sparse SAE activation caches on disk (format: docs/cache-format.md).

One cache per (workspace, corpus role): the token rows of METHOD §3 and, for every token,
only its active latents. A build writes CSR shards of consecutive rows, each into a
temporary folder renamed when complete, so a build killed at any moment resumes from the
last complete shard. Finalizing turns the shards into a feature-major (CSC) copy, so one
feature's activations are a slice, never a scan. Extending a cache to more rows builds only
the new rows: the rows are a seeded permutation, so a larger budget has the smaller as its
prefix.

The folder name is a hash of the full provenance (model, dtype, SAE and its weights, hook,
corpus source and content hash, split, context length, seed); `manifest.json` records it.
A changed input gives another folder, so a stale cache is never read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core import data
from core.errors import UserError
from core.records import record_key
from core.workspace import Workspace

FORMAT_VERSION = 1
DEFAULT_SHARD_ROWS = 32
CORPUS_ROLES = {"forget": "forget_corpus", "retain": "retain_corpus"}
_SHARD_NAME = re.compile(r"^rows-(\d{7})-(\d{7})$")


class CacheError(UserError):
    """A cache that does not match its manifest, or is incomplete or corrupt."""


@dataclass(frozen=True)
class CacheSpec:
    """Everything a cache's contents depend on. Its hash names the cache folder."""

    workspace: str
    role: str
    model: str
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


def cache_spec(ws: Workspace, role: str) -> CacheSpec:
    cfg = ws.config
    budgets = cfg.budgets
    return CacheSpec(
        workspace=cfg.name,
        role=role,
        model=f"{cfg.model.name} ({cfg.model.source}: {cfg.model.path or cfg.model.package or ''})",
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


@dataclass(frozen=True)
class CacheStatus:
    folder: Path
    rows_requested: int
    rows_final: int
    shards_complete: list[tuple[int, int]]
    shards_missing: list[tuple[int, int]]

    @property
    def complete(self) -> bool:
        return self.rows_final >= self.rows_requested

    def describe(self) -> str:
        parts = [f"{self.rows_final} of {self.rows_requested} rows final"]
        if self.shards_complete:
            done = sum(end - start for start, end in self.shards_complete)
            parts.append(f"{len(self.shards_complete)} complete shards ({done} rows) to fold in")
        if self.shards_missing:
            parts.append(f"{len(self.shards_missing)} shards still to build")
        return f"{self.folder.name}: " + ", ".join(parts)


class ActivationCache:
    """One corpus's cache: token rows, CSR shards while building, CSC once final."""

    def __init__(self, folder: Path, spec: CacheSpec):
        self.folder = folder
        self.spec = spec

    @classmethod
    def for_workspace(cls, ws: Workspace, role: str) -> ActivationCache:
        spec = cache_spec(ws, role)
        folder = ws.folder / "activations" / f"{role}-{spec.key()}"
        cache = cls(folder, spec)
        cache.check_manifest()
        return cache

    # -- manifest -----------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def check_manifest(self) -> None:
        if not self.manifest_path.exists():
            return
        try:
            recorded = json.loads(self.manifest_path.read_text())["spec"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CacheError(
                f"{self.manifest_path} is unreadable ({exc}). Move the folder away and rebuild."
            ) from exc
        if recorded != asdict(self.spec):
            changed = sorted(
                k
                for k in recorded.keys() | asdict(self.spec).keys()
                if recorded.get(k) != asdict(self.spec).get(k)
            )
            raise CacheError(
                f"The cache in {self.folder} was built from other inputs ({', '.join(changed)} "
                "differ) than its name says. It is left untouched: move it away and rebuild."
            )

    def _write_manifest(self, rows_requested: int, special_token_ids: list[int]) -> None:
        record = {
            "spec": asdict(self.spec),
            "key": self.spec.key(),
            "rows_requested": rows_requested,
            "special_token_ids": special_token_ids,
        }
        _atomic_write_text(self.manifest_path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def special_token_ids(self) -> list[int]:
        """BOS, EOS and PAD ids of the tokenizer that built the rows."""
        return list(json.loads(self.manifest_path.read_text())["special_token_ids"])

    def rows_requested(self) -> int:
        if not self.manifest_path.exists():
            return 0
        return int(json.loads(self.manifest_path.read_text())["rows_requested"])

    # -- layout -------------------------------------------------------------------------
    @property
    def tokens_path(self) -> Path:
        return self.folder / "tokens.npy"

    @property
    def csc_dir(self) -> Path:
        return self.folder / "csc"

    @property
    def shards_dir(self) -> Path:
        return self.folder / "shards"

    def rows_final(self) -> int:
        meta = self.csc_dir / "meta.json"
        return int(json.loads(meta.read_text())["rows"]) if meta.exists() else 0

    def complete_shards(self) -> list[tuple[int, int]]:
        if not self.shards_dir.exists():
            return []
        found = []
        for path in self.shards_dir.iterdir():
            if match := _SHARD_NAME.match(path.name):
                found.append((int(match.group(1)), int(match.group(2))))
        return sorted(found)

    def plan(self, rows: int, shard_rows: int) -> list[tuple[int, int]]:
        """The shard row ranges that take the final rows up to `rows`, reusing complete
        shards whatever shard size built them."""
        complete = {start: end for start, end in self.complete_shards()}
        ranges = []
        start = self.rows_final()
        while start < rows:
            end = complete.get(start)
            if end is None:
                later = [s for s in complete if start < s < rows]
                end = min([start + shard_rows, rows, *later])
            ranges.append((start, end))
            start = end
        return ranges

    def status(self, shard_rows: int = DEFAULT_SHARD_ROWS) -> CacheStatus:
        requested = self.rows_requested()
        complete = self.complete_shards()
        missing = [r for r in self.plan(requested, shard_rows) if r not in complete]
        return CacheStatus(self.folder, requested, self.rows_final(), complete, missing)

    # -- building -----------------------------------------------------------------------
    def build(
        self,
        ws: Workspace,
        rows: int,
        shard: tuple[int, int] = (0, 1),
        shard_rows: int = DEFAULT_SHARD_ROWS,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> CacheStatus:
        """Build (or resume, or extend) the cache to `rows` rows; with `shard=(i, n)` only
        every n-th shard from the i-th. Finalizes when every shard is there. `progress`
        is called with (tokens done, tokens to do) after each shard."""
        index, count = shard
        if not 0 <= index < count:
            raise CacheError(f"--shard {index}/{count}: need 0 ≤ i < n.")
        requested = max(rows, self.rows_requested())
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()
        tokens = self._ensure_tokens(ws, requested)
        tokenizer = ws.tokenizer
        special = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
        self._write_manifest(requested, sorted({i for i in special if i is not None}))
        self._quarantine_corrupt_shards()
        complete = set(self.complete_shards())
        todo = [
            r
            for i, r in enumerate(self.plan(requested, shard_rows))
            if i % count == index and r not in complete
        ]
        ctx = tokens.shape[1]
        bar = tqdm(
            total=sum(end - start for start, end in todo) * ctx, unit="tok", desc=self.spec.role
        )
        started = time.perf_counter()
        for start, end in todo:
            self._build_shard(ws, tokens, start, end, batch_size)
            bar.update((end - start) * ctx)
            if progress is not None:
                progress(bar.n, bar.total)
        bar.close()
        if todo:
            rate = bar.n / max(time.perf_counter() - started, 1e-9)
            tqdm.write(f"{self.spec.role}: {bar.n:,} tokens at {rate:,.0f} tokens/s")
        self.finalize()
        return self.status(shard_rows)

    def _recover(self) -> None:
        """Undo what a killed process left: temporary folders, a half-swapped CSC copy."""
        for leftover in [*self.folder.glob(".tmp-*"), *self.shards_dir.glob(".tmp-*")]:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        for old in self.folder.glob(".old-csc-*"):
            if self.csc_dir.exists():
                shutil.rmtree(old)
            else:
                old.rename(self.csc_dir)

    def _ensure_tokens(self, ws: Workspace, rows: int) -> np.ndarray:
        if self.tokens_path.exists():
            existing = np.load(self.tokens_path, mmap_mode="r")
            if existing.shape[0] >= rows:
                return np.array(existing[:rows])
        train, _ = ws.documents_split(self.spec.role)
        tokens = ws.token_rows(train, self.spec.context_length, rows, self.spec.seed)
        if self.tokens_path.exists():
            old = np.load(self.tokens_path)
            if not np.array_equal(tokens[: len(old)], old):
                raise CacheError(
                    f"{self.tokens_path} does not match the rows rebuilt from the corpus. "
                    "Move the folder away and rebuild."
                )
        _atomic_save(self.tokens_path, tokens)
        return tokens

    def _build_shard(
        self, ws: Workspace, tokens: np.ndarray, start: int, end: int, batch_size: int
    ) -> None:
        counts, features, values = [], [], []
        for first in range(start, end, batch_size):
            batch = torch.from_numpy(tokens[first : min(first + batch_size, end)]).long()
            resid = ws.residual(batch)
            count, feature, value = sparse_encode(ws.sae, resid.reshape(-1, resid.shape[-1]))
            counts.append(count)
            features.append(feature)
            values.append(value)
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        feature_dtype = np.uint16 if self.spec.d_sae <= 65536 else np.uint32
        name = f"rows-{start:07d}-{end:07d}"
        tmp = self.shards_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            np.save(tmp / "indptr.npy", indptr)
            np.save(tmp / "feature.npy", np.concatenate(features).astype(feature_dtype))
            np.save(tmp / "value.npy", np.concatenate(values).astype(np.float16))
            os.rename(tmp, self.shards_dir / name)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(
                f"Could not write shard {name} in {self.shards_dir} ({exc.strerror or exc}). "
                "Complete shards are kept: free space (or fix permissions) and rerun "
                "`python -m core cache build` to resume."
            ) from exc

    def _read_shard(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        folder = self.shards_dir / f"rows-{start:07d}-{end:07d}"
        try:
            indptr = np.load(folder / "indptr.npy")
            feature = np.load(folder / "feature.npy")
            value = np.load(folder / "value.npy")
        except (OSError, ValueError, EOFError) as exc:
            raise CacheError(f"Shard {folder.name} is unreadable ({exc}).") from exc
        n_tokens = (end - start) * self.spec.context_length
        if (
            indptr.shape != (n_tokens + 1,)
            or indptr[0] != 0
            or indptr[-1] != len(feature)
            or len(feature) != len(value)
            or np.any(np.diff(indptr) < 0)
            or (len(feature) and int(feature.max()) >= self.spec.d_sae)
        ):
            raise CacheError(f"Shard {folder.name} is inconsistent (sizes or feature ids).")
        return indptr, feature, value

    def _quarantine_corrupt_shards(self) -> list[str]:
        """Rename unreadable shards aside (never delete) so the build recomputes them."""
        moved = []
        for start, end in self.complete_shards():
            try:
                self._read_shard(start, end)
            except CacheError as exc:
                folder = self.shards_dir / f"rows-{start:07d}-{end:07d}"
                folder.rename(folder.with_name(f"{folder.name}.corrupt-{os.getpid()}"))
                tqdm.write(f"warning: {exc} Moved aside as {folder.name}.corrupt-*; rebuilding it.")
                moved.append(folder.name)
        return moved

    def finalize(self) -> bool:
        """Fold contiguous complete shards into the feature-major copy. True if final."""
        requested = self.rows_requested()
        final = self.rows_final()
        if final >= requested:
            return True
        complete = dict(self.complete_shards())
        ranges, position = [], final
        while position < requested and position in complete:
            ranges.append((position, complete[position]))
            position = complete[position]
        if position < requested:
            return False
        ctx = self.spec.context_length
        parts_feature, parts_token, parts_value = [], [], []
        if final:
            indptr, token, value = self.csc()
            parts_feature.append(
                np.repeat(np.arange(self.spec.d_sae, dtype=np.uint32), np.diff(indptr))
            )
            parts_token.append(np.asarray(token))
            parts_value.append(np.asarray(value))
        for start, end in ranges:
            indptr, feature, value = self._read_shard(start, end)
            local = np.repeat(np.arange(len(indptr) - 1, dtype=np.uint32), np.diff(indptr))
            parts_feature.append(feature.astype(np.uint32))
            parts_token.append(local + np.uint32(start * ctx))
            parts_value.append(value)
        feature = np.concatenate(parts_feature)
        order = np.argsort(feature, kind="stable")
        counts = np.bincount(feature, minlength=self.spec.d_sae)
        tmp = self.folder / f".tmp-csc-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        np.save(tmp / "indptr.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        np.save(tmp / "token.npy", np.concatenate(parts_token)[order])
        np.save(tmp / "value.npy", np.concatenate(parts_value)[order])
        (tmp / "meta.json").write_text(json.dumps({"rows": requested}) + "\n")
        old = self.folder / f".old-csc-{os.getpid()}"
        if self.csc_dir.exists():
            os.rename(self.csc_dir, old)
        os.rename(tmp, self.csc_dir)
        shutil.rmtree(old, ignore_errors=True)
        for start, end in ranges:
            shutil.rmtree(self.shards_dir / f"rows-{start:07d}-{end:07d}")
        return True

    def merge_from(self, sources: list[Path]) -> int:
        """Copy complete shards of this same cache (same key) from other folders or cache
        roots, e.g. built on other machines with --shard i/n. Returns how many were new."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._recover()
        imported = 0
        for source in sources:
            if not source.exists():
                raise CacheError(f"{source} does not exist.")
            folders = [source] if (source / "manifest.json").exists() else []
            folders += [f for f in source.rglob(self.folder.name) if (f / "manifest.json").exists()]
            for other in folders:
                if other.resolve() == self.folder.resolve():
                    continue
                recorded = json.loads((other / "manifest.json").read_text())
                if recorded.get("key") != self.spec.key():
                    continue
                if recorded["rows_requested"] > self.rows_requested():
                    shutil.copyfile(other / "tokens.npy", self.folder / ".tmp-tokens.npy")
                    os.replace(self.folder / ".tmp-tokens.npy", self.tokens_path)
                    self._write_manifest(recorded["rows_requested"], recorded["special_token_ids"])
                imported += self._import_shards(other)
        self._quarantine_corrupt_shards()
        return imported

    def _import_shards(self, other: Path) -> int:
        have = set(self.complete_shards())
        final = self.rows_final()
        imported = 0
        for shard in sorted((other / "shards").glob("rows-*")):
            match = _SHARD_NAME.match(shard.name)
            rows = (int(match.group(1)), int(match.group(2))) if match else None
            if rows is None or rows in have or rows[1] <= final:
                continue
            tmp = self.shards_dir / f".tmp-{shard.name}-{os.getpid()}"
            shutil.copytree(shard, tmp)
            os.rename(tmp, self.shards_dir / shard.name)
            imported += 1
        return imported

    # -- reading ------------------------------------------------------------------------
    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr [d_sae+1], token index [nnz] uint32, value [nnz] fp16), memory-mapped."""
        try:
            indptr = np.load(self.csc_dir / "indptr.npy", mmap_mode="r")
            token = np.load(self.csc_dir / "token.npy", mmap_mode="r")
            value = np.load(self.csc_dir / "value.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise CacheError(
                f"The cache in {self.folder} is not built or is damaged ({exc}). Run "
                f"`python -m core cache build --workspace {self.spec.workspace}`."
            ) from exc
        if (
            len(indptr) != self.spec.d_sae + 1
            or indptr[-1] != len(token)
            or len(token) != len(value)
        ):
            raise CacheError(f"The cache in {self.folder} is damaged (sizes disagree). Rebuild it.")
        return indptr, token, value

    def tokens(self) -> np.ndarray:
        """The final token rows, [rows, context_length] int32, memory-mapped."""
        return np.load(self.tokens_path, mmap_mode="r")[: self.rows_final()]

    def feature(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Token indices (row * context_length + position) and values where `index` fires."""
        if not 0 <= index < self.spec.d_sae:
            raise CacheError(
                f"Feature {index} is out of range: this SAE has 0-{self.spec.d_sae - 1}."
            )
        indptr, token, value = self.csc()
        lo, hi = int(indptr[index]), int(indptr[index + 1])
        return np.asarray(token[lo:hi]), np.asarray(value[lo:hi])


@torch.no_grad()
def sparse_encode(sae, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Active latents of each row of x [tokens, d_in]: (count per token, feature ids, values),
    in token order and feature order within a token. TopK SAEs go straight from the top-k
    to this form; other architectures encode densely and keep the nonzeros."""
    if type(sae).__name__ == "TopKSAE" and not sae.cfg.rescale_acts_by_decoder_norm:
        pre = sae.process_sae_in(x) @ sae.W_enc + sae.b_enc
        values, indices = pre.topk(sae.cfg.k, dim=-1, sorted=False)
        indices, order = indices.sort(dim=-1)
        values = values.gather(-1, order).relu()
        active = values > 0
        return (
            active.sum(-1).cpu().numpy(),
            indices[active].cpu().numpy(),
            values[active].float().cpu().numpy(),
        )
    acts = sae.encode(x)
    rows, features = acts.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=x.shape[0])
    return counts.cpu().numpy(), features.cpu().numpy(), acts[rows, features].float().cpu().numpy()


def caches_for(ws: Workspace, corpus: str) -> Iterator[ActivationCache]:
    roles = CORPUS_ROLES.values() if corpus == "all" else [CORPUS_ROLES[corpus]]
    for role in roles:
        yield ActivationCache.for_workspace(ws, role)


def default_rows(ws: Workspace, role: str) -> int:
    budgets = ws.config.budgets
    return budgets.forget_rows if role == "forget_corpus" else budgets.retain_rows


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}-{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
