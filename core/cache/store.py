"""One corpus's activation cache on disk, and reading it (format: docs/cache-format.md).

A cache holds the token rows of METHOD §3 and, for every token, only its active latents:
CSR shards of consecutive rows while it is built (core.cache.build), a feature-major (CSC)
copy once final, so one feature's activations are a slice, never a scan. `manifest.json`
records the spec its folder name is the hash of.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Float, Int

from core.base.records import write_json
from core.cache.shards import Shard, read_shard, shard_name, shard_rows
from core.cache.spec import CORPUS_ROLES, DEFAULT_SHARD_ROWS, CacheError, CacheSpec, cache_spec

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

CSC_FILES = ("meta.json", "indptr.npy", "token.npy", "value.npy")
_CHECKED: dict[Path, tuple[tuple, int, str | None]] = {}  # folder: (file stamps, rows, problem)


@dataclass(frozen=True)
class CacheStatus:
    folder: Path
    rows_requested: int
    rows_final: int
    shards_complete: list[tuple[int, int]]
    shards_missing: list[tuple[int, int]]
    damaged: str | None = None

    @property
    def complete(self) -> bool:
        return self.damaged is None and self.rows_final >= self.rows_requested

    def describe(self) -> str:
        if self.damaged:
            return (
                f"{self.folder.name}: damaged ({self.damaged}); `cache build` moves it aside "
                "and rebuilds"
            )
        parts = [f"{self.rows_final} of {self.rows_requested} rows final"]
        if self.shards_complete:
            done = sum(end - start for start, end in self.shards_complete)
            parts.append(f"{len(self.shards_complete)} complete shards ({done} rows) to fold in")
        if self.shards_missing:
            parts.append(f"{len(self.shards_missing)} shards still to build")
        return f"{self.folder.name}: " + ", ".join(parts)


class SparseActivationStore:
    """One corpus's activations on disk: token rows, CSR shards while building, CSC once
    final. Not TransformerLens's in-memory `ActivationCache` of one forward pass."""

    def __init__(self, folder: Path, spec: CacheSpec):
        self.folder = folder
        self.spec = spec

    @classmethod
    def for_workspace(cls, ws: Workspace, role: str, borrow: bool = True) -> SparseActivationStore:
        """The workspace's cache of `role`. While the hub model or dataset it reads has no
        revision here (`CacheSpec.unresolved`), a cache built elsewhere from the same inputs
        and copied here is read when `borrow` (a laptop browses what a GPU machine built)."""
        spec = cache_spec(ws, role)
        folder = ws.folder / "activations" / f"{role}-{spec.key()}"
        cache = cls(folder, spec)
        if borrow and spec.unresolved() and cache.manifest() is None:
            cache = cls._built_elsewhere(folder.parent, spec) or cache
        cache.check_manifest()
        return cache

    @classmethod
    def _built_elsewhere(cls, root: Path, spec: CacheSpec) -> SparseActivationStore | None:
        """The one cache under `root` whose spec equals `spec` but in its unresolved fields."""
        wanted = {k: v for k, v in asdict(spec).items() if k not in spec.unresolved()}
        found = []
        for manifest in sorted(root.glob(f"{spec.role}-*/manifest.json")):
            try:
                recorded = CacheSpec(**json.loads(manifest.read_text())["spec"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # damaged or of another format: never guessed at
            if {k: v for k, v in asdict(recorded).items() if k in wanted} == wanted:
                found.append(cls(manifest.parent, recorded))
        return found[0] if len(found) == 1 else None

    # -- manifest -----------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def manifest(self) -> dict | None:
        """The manifest, checked field by field; None before the first build."""
        if not self.manifest_path.exists():
            return None
        try:
            record = json.loads(self.manifest_path.read_text())
            rows, special = record["rows_requested"], record["special_token_ids"]
            valid = (
                isinstance(record["spec"], dict)
                and isinstance(rows, int)
                and rows >= 0
                and isinstance(special, list)
                and all(isinstance(i, int) for i in special)
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            valid, record = False, {"error": exc}
        if not valid:
            raise CacheError(
                f"{self.manifest_path} is damaged ({record.get('error', 'wrong fields')}). "
                "Move the folder away and rebuild with `python -m core cache build`."
            )
        return record

    def check_manifest(self) -> None:
        manifest = self.manifest()
        if manifest is None:
            return
        recorded = manifest["spec"]
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

    def write_manifest(self, rows_requested: int, special_token_ids: list[int]) -> None:
        record = {
            "spec": asdict(self.spec),
            "key": self.spec.key(),
            "rows_requested": rows_requested,
            "special_token_ids": special_token_ids,
        }
        write_json(self.manifest_path, record, indent=2, sort_keys=True)

    def special_token_ids(self) -> list[int]:
        """BOS, EOS and PAD ids of the tokenizer that built the rows."""
        manifest = self.manifest()
        return [] if manifest is None else list(manifest["special_token_ids"])

    def rows_requested(self) -> int:
        manifest = self.manifest()
        return 0 if manifest is None else manifest["rows_requested"]

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

    def shard_folder(self, start: int, end: int) -> Path:
        return self.shards_dir / shard_name(start, end)

    def rows_final(self) -> int:
        """Rows in the feature-major copy: 0 before the first fold; a damaged copy is an
        error that says how to rebuild it."""
        if not (self.csc_dir / "meta.json").exists():
            return 0
        if problem := self.csc_problem():
            raise CacheError(
                f"The cache in {self.folder} is damaged ({problem}). Run `python -m core cache "
                f"build --workspace {self.spec.workspace}`: it moves the damaged copy aside "
                "and rebuilds."
            )
        return _CHECKED[self.folder][1]

    def csc_problem(self) -> str | None:
        """What is wrong with the feature-major copy (sizes against each other, against
        its meta and the token rows), or None. Checked once per version of its files in a
        process, whichever SparseActivationStore object asks (pages make new ones every rerun)."""
        try:
            stamp = self.version()
        except OSError as exc:
            return f"{exc.filename} is missing"
        checked = _CHECKED.get(self.folder)
        if checked is None or checked[0] != stamp:
            checked = _CHECKED[self.folder] = (stamp, *self._check_csc())
        return checked[2]

    def version(self) -> tuple[tuple[int, int], ...]:
        """The size and modification time (ns) of each file of the feature-major copy and
        of the token rows: what in-process memos of numbers read from them are keyed by.
        OSError when one is missing."""
        files = [*(self.csc_dir / name for name in CSC_FILES), self.tokens_path]
        return tuple((stat.st_size, stat.st_mtime_ns) for stat in (f.stat() for f in files))

    def _check_csc(self) -> tuple[int, str | None]:
        try:
            rows = json.loads((self.csc_dir / "meta.json").read_text())["rows"]
            indptr = np.load(self.csc_dir / "indptr.npy", mmap_mode="r")
            token = np.load(self.csc_dir / "token.npy", mmap_mode="r")
            value = np.load(self.csc_dir / "value.npy", mmap_mode="r")
            token_rows = np.load(self.tokens_path, mmap_mode="r").shape[0]
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            return 0, f"unreadable: {exc}"
        if not isinstance(rows, int) or not 0 < rows <= token_rows:
            return 0, f"meta.json says {rows!r} rows, tokens.npy holds {token_rows}"
        if len(indptr) != self.spec.d_sae + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            return 0, "indptr.npy does not fit the SAE's width"
        if indptr[-1] != len(token) or len(token) != len(value):
            return 0, f"{len(token)} token entries and {len(value)} values for {indptr[-1]}"
        if len(token) and int(token.max()) >= rows * self.spec.context_length:
            return 0, f"token indices beyond the {rows} rows meta.json says"
        return rows, None

    def complete_shards(self) -> list[tuple[int, int]]:
        if not self.shards_dir.exists():
            return []
        return sorted(rows for p in self.shards_dir.iterdir() if (rows := shard_rows(p.name)))

    def read_shard(self, start: int, end: int) -> Shard:
        n_tokens = (end - start) * self.spec.context_length
        return read_shard(self.shard_folder(start, end), n_tokens, self.spec.d_sae)

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
        if (self.csc_dir / "meta.json").exists() and (problem := self.csc_problem()):
            return CacheStatus(self.folder, requested, 0, [], [], problem)
        complete = self.complete_shards()
        missing = [r for r in self.plan(requested, shard_rows) if r not in complete]
        return CacheStatus(self.folder, requested, self.rows_final(), complete, missing)

    # -- reading ------------------------------------------------------------------------
    def csc(
        self,
    ) -> tuple[
        Int[np.ndarray, " d_sae_plus_1"], Int[np.ndarray, " nnz"], Float[np.ndarray, " nnz"]
    ]:
        """(indptr, token index uint32, value fp16), memory-mapped."""
        self.rows_final()  # a damaged copy is refused with the fix
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

    def tokens(self) -> Int[np.ndarray, "rows context"]:
        """The final token rows (int32), memory-mapped."""
        rows = self.rows_final()
        try:
            return np.load(self.tokens_path, mmap_mode="r")[:rows]
        except (OSError, ValueError) as exc:
            raise CacheError(
                f"{self.tokens_path} is unreadable ({exc}). Run `python -m core cache build "
                f"--workspace {self.spec.workspace}` to rebuild it."
            ) from exc

    def feature(self, index: int) -> tuple[Int[np.ndarray, " n"], Float[np.ndarray, " n"]]:
        """Token indices (row * context_length + position) and values where `index` fires."""
        if not 0 <= index < self.spec.d_sae:
            raise CacheError(
                f"Feature {index} is out of range: this SAE has 0-{self.spec.d_sae - 1}."
            )
        indptr, token, value = self.csc()
        lo, hi = int(indptr[index]), int(indptr[index + 1])
        return np.asarray(token[lo:hi]), np.asarray(value[lo:hi])


def resolved(cache: SparseActivationStore, ws: Workspace) -> SparseActivationStore:
    """`cache` under its final key: the hub model it reads downloaded and the hub dataset
    read first (a build needs both anyway), so a build never writes where the key moves."""
    pending = cache.spec.unresolved()
    if not pending:
        return cache
    if "model_weights" in pending:
        ws.model  # noqa: B018 (downloads it, or says why it cannot)
    if "corpus_hash" in pending:
        ws.documents_split(cache.spec.role)
    return SparseActivationStore.for_workspace(ws, cache.spec.role, borrow=False)


def caches_for(ws: Workspace, corpus: str = "all") -> Iterator[SparseActivationStore]:
    """The caches of "forget", "retain" or "all" corpora."""
    roles = CORPUS_ROLES.values() if corpus == "all" else [CORPUS_ROLES[corpus]]
    for role in roles:
        yield SparseActivationStore.for_workspace(ws, role)


# The name this store had in 0.1 (it was mistaken for TransformerLens's ActivationCache);
# kept for notebooks written against it, to be removed in the next release.
ActivationCache = SparseActivationStore
