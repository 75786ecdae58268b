"""The work a Ray actor does: one actor per worker process opens each workspace it is asked
about once (model and SAE loaded on first use) and computes cache shards, evaluations and
known-question counts with the same code as the serial path. Nothing here imports Ray."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int

from core.cache.build import encode_rows
from core.cache.shards import Shard, shard_name, write_shard
from core.errors import UserError
from core.evaluation.evaluator import Evaluator
from core.evaluation.known import permutation_correct
from core.evaluation.settings import EvalSettings
from core.interventions.edits import Intervention
from core.loading.data import Question
from core.workspace.workspace import Workspace

PASSED_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT")
PASSED_PREFIX = "UNLEARNING_LENS_"


@dataclass(frozen=True)
class WorkspaceRef:
    """How a worker opens the driver's workspace: its config file and the environment that
    places its data and caches (UNLEARNING_LENS_*, the hub cache)."""

    config_path: str
    env: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, ws: Workspace) -> WorkspaceRef:
        if not ws.config.config_path:
            raise UserError(
                f"Workspace '{ws.name}' was not opened from a config file; Ray workers open "
                "it from one (Workspace.open(path))."
            )
        env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_PREFIX)}
        env |= {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        return cls(str(Path(ws.config.config_path).resolve()), tuple(sorted(env.items())))


@dataclass(frozen=True)
class ShardTarget:
    """Where a shard goes: written by the worker into `shards_dir` when it can read the
    driver's probe file there (a shared filesystem), else returned to the driver."""

    shards_dir: str
    probe: str
    token: str
    d_sae: int

    def shared(self) -> bool:
        try:
            return Path(self.probe).read_text() == self.token
        except OSError:
            return False


class WorkspaceWorker:
    """What each Ray actor runs (core.scale.cluster.WorkerPool makes them)."""

    def __init__(self, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self._workspaces: dict[WorkspaceRef, Workspace] = {}
        self._evaluators: dict[tuple[WorkspaceRef, EvalSettings], Evaluator] = {}

    def pid(self) -> int:
        return os.getpid()

    def call(self, method: str, *args: Any) -> tuple[int, Any]:
        """(this process's id, what `method` returns): the pool tells a restarted actor by
        its new process id."""
        return os.getpid(), getattr(self, method)(*args)

    def workspace(self, ref: WorkspaceRef) -> Workspace:
        """The workspace of `ref`, its model and SAE loaded (once per actor)."""
        os.environ.update(dict(ref.env))
        if ref not in self._workspaces:
            ws = Workspace.open(ref.config_path)
            assert ws.sae is not None  # loads the model and the SAE, checks they fit
            self._workspaces[ref] = ws
        return self._workspaces[ref]

    def evaluator(self, ref: WorkspaceRef, settings: EvalSettings) -> Evaluator:
        ws = self.workspace(ref)
        if (ref, settings) not in self._evaluators:
            self._evaluators[ref, settings] = Evaluator(ws, settings)
        return self._evaluators[ref, settings]

    def encode_shard(
        self,
        ref: WorkspaceRef,
        start: int,
        rows: Int[np.ndarray, "rows ctx"],
        batch_size: int,
        target: ShardTarget,
    ) -> Shard | None:
        """The shard of `rows` (rows start..start+len of the cache): written in place on a
        shared filesystem (None returned), else returned compact (the file dtypes)."""
        end = start + len(rows)
        shared = target.shared()
        if shared and (Path(target.shards_dir) / shard_name(start, end)).is_dir():
            return None  # a retried task whose first attempt finished the shard
        rows = np.array(rows)  # writable: arrays from Ray's object store are read-only
        indptr, feature, value = encode_rows(self.workspace(ref), rows, batch_size)
        if shared:
            write_shard(Path(target.shards_dir), start, end, (indptr, feature, value), target.d_sae)
            return None
        feature_dtype = np.uint16 if target.d_sae <= 65536 else np.uint32
        return indptr, feature.astype(feature_dtype), value.astype(np.float16)

    def baseline(self, ref: WorkspaceRef, settings: EvalSettings) -> None:
        self.evaluator(ref, settings).baseline()

    def evaluate(self, ref: WorkspaceRef, settings: EvalSettings, iv: Intervention) -> None:
        """Evaluate and memoise (the driver reads the memo)."""
        self.evaluator(ref, settings).evaluate(iv)

    def known_counts(
        self,
        ref: WorkspaceRef,
        settings: EvalSettings,
        questions: list[Question],
        with_question: bool,
    ) -> list[int]:
        """Orderings (of 24) answered right per question, as build_known counts them."""
        scorer = self.evaluator(ref, settings).scorer
        return permutation_correct(scorer, questions, with_question).sum(axis=1).tolist()
