"""The label database of one SAE: its SQLite file (migrated forward on opening), the key
its rows are stored under and its feature range. The store's parts (labels, sets,
suggestions, search) build on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.labels.schema import SCHEMA_VERSION, DatabaseProblem, NewerSchemaError, connect, migrate
from core.labels.text import LabelStoreError


class LabelDatabase:
    """The rows of one SAE in a label database: `sae` is the key rows are stored under (its
    weights), `identity` how the workspace names it (defaults to the key)."""

    def __init__(self, path: Path, sae: str, d_sae: int, identity: str | None = None):
        self.path = path
        self.sae = sae
        self.d_sae = d_sae
        self.identity = identity or sae
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            migrate(path)
        except NewerSchemaError as exc:
            raise LabelStoreError(
                f"{path} has schema version {exc.version}, newer than this app's "
                f"{SCHEMA_VERSION}. Upgrade the app; the database is left as it is."
            ) from exc
        except (DatabaseProblem, OSError) as exc:
            raise self._problem(exc) from exc

    def _problem(self, exc: Exception) -> LabelStoreError:
        reason = getattr(exc, "strerror", None) or str(exc)
        return LabelStoreError(
            f"The label database {self.path} cannot be used ({reason}). If another process "
            "holds it, retry; if it is damaged, move it away (a new one is made) and re-import "
            "your exported sets."
        )

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection whose SQLite errors become one clear LabelStoreError."""
        try:
            with connect(self.path, write) as db:
                yield db
        except DatabaseProblem as exc:
            raise self._problem(exc) from exc

    def check_feature(self, feature: int) -> int:
        if not isinstance(feature, int) or isinstance(feature, bool):
            raise LabelStoreError(f"Feature id {feature!r} is not an integer.")
        if not 0 <= feature < self.d_sae:
            raise LabelStoreError(
                f"Feature {feature} is out of range: this SAE has features 0-{self.d_sae - 1}."
            )
        return feature
