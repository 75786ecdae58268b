"""Labels and feature sets, in one SQLite database per workspace (WAL mode).

    store = LabelStore.for_workspace(ws)
    store.set_label(40, label="DNA replication", tags=["biology"])
    store.save_set("top 10", [40, 12, 311])

Keyed by (SAE weights, feature id): the weights' hash for a local SAE, its registry
coordinates for a public one. Labels survive restarts, cache rebuilds, moving the SAE's
folder and app upgrades (core.labels.schema migrates forward); an SAE retrained in place
starts with no labels instead of inheriting ones made for other features. Every label write
is also kept in a history table, an edit changes only the fields it names, and every write
is one transaction, so two sessions editing at once lose nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.labels.schema import SCHEMA_VERSION, DatabaseProblem, NewerSchemaError, connect, migrate
from core.labels.sets import FeatureSet, check_gate_record, check_members
from core.labels.text import MAX_NAME, LabelStoreError, check_text, now

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

DEFAULT_TAGS = ("biology", "not biology", "unclear")


def _utc(feature: int, stamp: object) -> str:
    """An ISO date as UTC in the store's format, so dates compare as text."""
    try:
        moment = datetime.fromisoformat(check_text("Date", stamp, MAX_NAME))
    except ValueError as exc:
        raise LabelStoreError(
            f"The label of feature {feature} has no valid date: {stamp!r}."
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Suggestion:
    """A proposed label, from `source` (what it was built from); never a label by itself."""

    feature: int
    source: str
    text: str
    evidence: dict
    created_at: str = ""


@dataclass(frozen=True)
class SearchHit:
    feature: int
    kind: str  # "label" or "suggestion"
    source: str  # the suggestion's source; "" for a label
    text: str


def fts_query(text: str) -> str:
    """Words as an FTS5 query: every word must match, as a word or a word's beginning;
    quotes keep FTS5's own syntax (AND, NEAR, *, ...) from being read into plain words."""
    words = text.replace('"', " ").split()
    if not words:
        raise LabelStoreError("Type a word to search for.")
    return " ".join(f'"{word}"*' for word in words)


@dataclass(frozen=True)
class Label:
    feature: int
    label: str = ""
    note: str = ""
    tags: tuple[str, ...] = ()
    author: str = ""
    updated_at: str = ""


class LabelStore:
    """Labels and feature sets of one SAE: `sae` is the key rows are stored under (its
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

    @classmethod
    def for_workspace(cls, ws: Workspace) -> LabelStore:
        """The workspace's store, for its SAE's weights. Rows an earlier version stored under
        the SAE's name, or a registry SAE's coordinates alone, are moved to its weights once
        (see `adopt`)."""
        identity = ws.config.sae.identity()
        store = cls(ws.folder / "labels.sqlite", ws.sae_fingerprint(), ws.sae_width(), identity)
        store.adopt(identity)
        if ws.config.sae.source == "sae-lens":
            store.adopt(f"sae-lens:{identity}")
        return store

    def adopt(self, old_key: str) -> int:
        """Move rows kept under `old_key` (how labels were keyed before they were keyed by
        weights) to this SAE, when this SAE has none yet; a history row records it. Returns
        how many labels moved."""
        if old_key == self.sae:
            return 0
        with self._db() as db:
            old = db.execute("SELECT count(*) FROM labels WHERE sae = ?", (old_key,)).fetchone()
            sets = db.execute(
                "SELECT count(*) FROM feature_sets WHERE sae = ?", (old_key,)
            ).fetchone()
        if not old[0] and not sets[0]:
            return 0
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            taken = db.execute(
                "SELECT (SELECT count(*) FROM labels WHERE sae = ?) + "
                "(SELECT count(*) FROM feature_sets WHERE sae = ?)",
                (self.sae, self.sae),
            ).fetchone()[0]
            if taken:
                db.execute("ROLLBACK")
                return 0
            for table in ("labels", "label_history", "feature_sets"):
                db.execute(f"UPDATE {table} SET sae = ? WHERE sae = ?", (self.sae, old_key))
            note = json.dumps({"moved": f"from {old_key} to the weights {self.sae}"})
            db.execute(
                "INSERT INTO label_history (sae, feature, changes, author, at) "
                "SELECT sae, feature, ?, 'unlearning-lens', ? FROM labels WHERE sae = ?",
                (note, now(), self.sae),
            )
            db.execute("COMMIT")
        return int(old[0])

    def check_feature(self, feature: int) -> int:
        if not isinstance(feature, int) or isinstance(feature, bool):
            raise LabelStoreError(f"Feature id {feature!r} is not an integer.")
        if not 0 <= feature < self.d_sae:
            raise LabelStoreError(
                f"Feature {feature} is out of range: this SAE has features 0-{self.d_sae - 1}."
            )
        return feature

    # -- labels -------------------------------------------------------------------------
    def set_label(
        self,
        feature: int,
        *,
        label: str | None = None,
        note: str | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
        author: str = "",
    ) -> Label:
        """Change the given fields of a feature's label; the others stay as they are."""
        self.check_feature(feature)
        changes: dict[str, object] = {}
        if label is not None:
            changes["label"] = check_text("Label", label, MAX_NAME * 5)
        if note is not None:
            changes["note"] = check_text("Note", note)
        if tags is not None:
            clean = sorted({check_text("Tag", tag, MAX_NAME).strip() for tag in tags} - {""})
            changes["tags"] = json.dumps(clean)
        author = check_text("Author", author, MAX_NAME)
        at = now()
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO labels (sae, feature, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (sae, feature) DO NOTHING",
                (self.sae, feature, at),
            )
            for column, value in changes.items():
                db.execute(
                    f"UPDATE labels SET {column} = ? WHERE sae = ? AND feature = ?",
                    (value, self.sae, feature),
                )
            db.execute(
                "UPDATE labels SET author = ?, updated_at = ? WHERE sae = ? AND feature = ?",
                (author, at, self.sae, feature),
            )
            db.execute(
                "INSERT INTO label_history (sae, feature, changes, author, at) VALUES (?,?,?,?,?)",
                (self.sae, feature, json.dumps(changes), author, at),
            )
            db.execute("COMMIT")
        return self.label(feature)

    def label(self, feature: int) -> Label:
        return self.labels([feature]).get(feature, Label(feature))

    def labels(self, features: list[int] | None = None) -> dict[int, Label]:
        query = "SELECT feature, label, note, tags, author, updated_at FROM labels WHERE sae = ?"
        with self._db() as db:
            rows = db.execute(query, (self.sae,)).fetchall()
        wanted = None if features is None else set(features)
        return {
            row[0]: Label(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5])
            for row in rows
            if wanted is None or row[0] in wanted
        }

    def label_texts(self) -> dict[int, str]:
        """Each labelled feature's label text."""
        return {feature: label.label for feature, label in self.labels().items()}

    def recent(self, limit: int = 5) -> list[Label]:
        """The most recently edited labels, newest first."""
        ordered = sorted(self.labels().values(), key=lambda item: item.updated_at, reverse=True)
        return ordered[:limit]

    def history(self, feature: int) -> list[dict]:
        with self._db() as db:
            rows = db.execute(
                "SELECT changes, author, at FROM label_history WHERE sae = ? AND feature = ? "
                "ORDER BY id",
                (self.sae, feature),
            ).fetchall()
        return [{"changes": json.loads(c), "author": a, "at": t} for c, a, t in rows]

    def _label_row(self, feature: int, record: dict) -> tuple:
        """A label as exported, checked, as a row of the labels table (its date in UTC)."""
        self.check_feature(feature)
        if not isinstance(record, dict):
            raise LabelStoreError(f"The label of feature {feature} is not an object.")
        tags = record.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise LabelStoreError(f"The tags of feature {feature} are not a list of text.")
        return (
            self.sae,
            feature,
            check_text("Label", record.get("label", ""), MAX_NAME * 5),
            check_text("Note", record.get("note", "")),
            json.dumps(sorted({check_text("Tag", t, MAX_NAME) for t in tags})),
            check_text("Author", record.get("author", ""), MAX_NAME),
            _utc(feature, record.get("updated_at", "") or now()),
        )

    # -- feature sets -------------------------------------------------------------------
    def save_set(
        self,
        name: str,
        features: list[int],
        multipliers: list[float] | None = None,
        *,
        notes: list[str] | None = None,
        note: str = "",
        selection: dict | None = None,
        results: list | None = None,
        created_at: str | None = None,
        labels: dict[int, dict] | None = None,
        overwrite: bool = False,
    ) -> FeatureSet:
        """Create (or with overwrite=True replace) a named set, and write `labels` (as
        exported) with it: all or nothing, in one transaction."""
        name = check_text("Set name", name, MAX_NAME).strip()
        if not name:
            raise LabelStoreError("A feature set needs a name.")
        if not features:
            raise LabelStoreError(f"The set '{name}' has no features: add at least one.")
        if selection is not None and not isinstance(selection, dict):
            raise LabelStoreError("A set's selection record must be an object.")
        if results is not None and (
            not isinstance(results, list) or not all(isinstance(r, dict) for r in results)
        ):
            raise LabelStoreError("A set's results must be a list of result objects.")
        members = check_members(name, features, multipliers, notes, self.check_feature)
        label_rows = [self._label_row(f, record) for f, record in (labels or {}).items()]
        set_note = check_text("Set note", note)
        at = now()
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            old = db.execute(
                "SELECT id, created_at FROM feature_sets WHERE sae = ? AND name = ?",
                (self.sae, name),
            ).fetchone()
            if old and not overwrite:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"A feature set named '{name}' exists already.")
            if old:
                db.execute("DELETE FROM feature_sets WHERE id = ?", (old[0],))
            cursor = db.execute(
                "INSERT INTO feature_sets (sae, name, note, selection, results, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?)",
                (
                    self.sae,
                    name,
                    set_note,
                    json.dumps(selection or {}),
                    json.dumps(results or []),
                    created_at or (old[1] if old else at),
                    at,
                ),
            )
            db.executemany(
                "INSERT INTO feature_set_members (set_id, feature, multiplier, note, position) "
                "VALUES (?,?,?,?,?)",
                [
                    (cursor.lastrowid, feature, multiplier, text, position)
                    for position, (feature, multiplier, text) in enumerate(members)
                ],
            )
            for row in label_rows:
                self._import_label(db, row, overwrite, at)
            db.execute("COMMIT")
        return self.get_set(name)

    def _import_label(self, db: sqlite3.Connection, row: tuple, overwrite: bool, at: str) -> None:
        """Write an imported label unless the local one is newer (and not `overwrite`);
        either way, a history row says what happened."""
        feature, updated_at = row[1], row[6]
        local = db.execute(
            "SELECT updated_at FROM labels WHERE sae = ? AND feature = ?", (self.sae, feature)
        ).fetchone()
        keep_local = local is not None and local[0] > updated_at and not overwrite
        if not keep_local:
            db.execute(
                "INSERT OR REPLACE INTO labels (sae, feature, label, note, tags, author, "
                "updated_at) VALUES (?,?,?,?,?,?,?)",
                row,
            )
        what = "import kept the newer local label" if keep_local else "imported"
        changes = {"import": what, "label": row[2], "note": row[3], "tags": json.loads(row[4])}
        db.execute(
            "INSERT INTO label_history (sae, feature, changes, author, at) VALUES (?,?,?,?,?)",
            (self.sae, feature, json.dumps(changes | {"updated_at": updated_at}), row[5], at),
        )

    def set_names(self) -> list[str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT name FROM feature_sets WHERE sae = ? ORDER BY name", (self.sae,)
            ).fetchall()
        return [row[0] for row in rows]

    def get_set(self, name: str) -> FeatureSet:
        """A set as one snapshot (its head and members read in one transaction)."""
        with self._db() as db:
            db.execute("BEGIN")
            try:
                return self._read_set(db, name)
            finally:
                db.execute("COMMIT")

    def _read_set(self, db: sqlite3.Connection, name: str) -> FeatureSet:
        head = db.execute(
            "SELECT id, note, selection, results, created_at, updated_at FROM feature_sets "
            "WHERE sae = ? AND name = ?",
            (self.sae, name),
        ).fetchone()
        if head is None:
            raise LabelStoreError(f"No feature set named '{name}'.")
        members = db.execute(
            "SELECT feature, multiplier, note FROM feature_set_members WHERE set_id = ? "
            "ORDER BY position",
            (head[0],),
        ).fetchall()
        return FeatureSet(
            name=name,
            features=tuple(m[0] for m in members),
            multipliers=tuple(m[1] for m in members),
            notes=tuple(m[2] for m in members),
            note=head[1],
            selection=json.loads(head[2]),
            results=json.loads(head[3]),
            created_at=head[4],
            updated_at=head[5],
        )

    def delete_set(self, name: str) -> None:
        with self._db() as db:
            deleted = db.execute(
                "DELETE FROM feature_sets WHERE sae = ? AND name = ?", (self.sae, name)
            ).rowcount
        if not deleted:
            raise LabelStoreError(f"No feature set named '{name}'.")

    def duplicate_set(self, name: str, new_name: str) -> FeatureSet:
        original = self.get_set(name)
        return self.save_set(
            new_name,
            list(original.features),
            list(original.multipliers),
            notes=list(original.notes),
            note=original.note,
            selection=original.selection,
            results=original.results,
        )

    def set_multipliers(self, name: str, multipliers: dict[int, float]) -> FeatureSet:
        """Change the multipliers of some of a set's features, in one transaction."""
        checked = check_members(
            name, list(multipliers), list(multipliers.values()), None, self.check_feature
        )
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id FROM feature_sets WHERE sae = ? AND name = ?", (self.sae, name)
            ).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"No feature set named '{name}'.")
            members = {
                f
                for (f,) in db.execute(
                    "SELECT feature FROM feature_set_members WHERE set_id = ?", (row[0],)
                )
            }
            strangers = [f for f, _, _ in checked if f not in members]
            if strangers:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"Features {strangers[:10]} are not in the set '{name}'.")
            db.executemany(
                "UPDATE feature_set_members SET multiplier = ? WHERE set_id = ? AND feature = ?",
                [(m, row[0], f) for f, m, _ in checked],
            )
            db.execute("UPDATE feature_sets SET updated_at = ? WHERE id = ?", (now(), row[0]))
            db.execute("COMMIT")
        return self.get_set(name)

    def set_gate(self, name: str, gate: dict | None) -> FeatureSet:
        """Keep a gate (METHOD §10: rule, alpha and its calibration) with a set, in its
        selection record under "gate", or drop it (None)."""
        if gate is not None:
            check_gate_record(gate)
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id, selection FROM feature_sets WHERE sae = ? AND name = ?",
                (self.sae, name),
            ).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"No feature set named '{name}'.")
            selection = json.loads(row[1])
            selection.pop("gate", None)
            if gate is not None:
                selection["gate"] = gate
            db.execute(
                "UPDATE feature_sets SET selection = ?, updated_at = ? WHERE id = ?",
                (json.dumps(selection), now(), row[0]),
            )
            db.execute("COMMIT")
        return self.get_set(name)

    def add_results(self, name: str, result: dict) -> FeatureSet:
        """Append an evaluation result (with its provenance) to a set, in one transaction."""
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id, results FROM feature_sets WHERE sae = ? AND name = ?",
                (self.sae, name),
            ).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"No feature set named '{name}'.")
            db.execute(
                "UPDATE feature_sets SET results = ?, updated_at = ? WHERE id = ?",
                (json.dumps([*json.loads(row[1]), result]), now(), row[0]),
            )
            db.execute("COMMIT")
        return self.get_set(name)

    # -- suggestions and text search ------------------------------------------------------
    def put_suggestions(self, source: str, suggestions: dict[int, tuple[str, dict]]) -> int:
        """Store suggested labels {feature: (text, evidence)} from `source`, replacing that
        source's earlier suggestion for the same features; labels are left as they are."""
        source = check_text("Suggestion source", source, MAX_NAME).strip()
        if not source:
            raise LabelStoreError("A suggestion needs the name of its source.")
        at = now()
        rows = [
            (
                self.sae,
                self.check_feature(feature),
                source,
                check_text("Suggestion", text, MAX_NAME * 5),
                json.dumps(evidence),
                at,
            )
            for feature, (text, evidence) in suggestions.items()
        ]
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO suggestions (sae, feature, source, text, evidence, "
                "created_at) VALUES (?,?,?,?,?,?)",
                rows,
            )
            db.execute("COMMIT")
        return len(rows)

    def suggestions(self, feature: int) -> list[Suggestion]:
        """A feature's stored suggestions, newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT source, text, evidence, created_at FROM suggestions "
                "WHERE sae = ? AND feature = ? ORDER BY created_at DESC, source",
                (self.sae, feature),
            ).fetchall()
        return [Suggestion(feature, s, t, json.loads(e), c) for s, t, e, c in rows]

    def search(self, text: str, suggestions: bool = True, limit: int = 500) -> list[SearchHit]:
        """Labels (label, note and tags) and, with `suggestions`, suggested labels that
        contain every word of `text` (word beginnings match), best matches first."""
        kinds = ("label", "suggestion") if suggestions else ("label",)
        with self._db() as db:
            rows = db.execute(
                "SELECT feature, kind, source, text FROM text_search WHERE text_search MATCH ? "
                f"AND sae = ? AND kind IN ({','.join('?' * len(kinds))}) ORDER BY rank LIMIT ?",
                (fts_query(text), self.sae, *kinds, limit),
            ).fetchall()
        return [SearchHit(int(f), k, s, t) for f, k, s, t in rows]

    def save_contrast_set(
        self, name: str, features: Sequence[int], record: dict, n: int
    ) -> FeatureSet:
        """The top `n` features of a contrast search (best first) saved as a set, with what
        was compared."""
        return self.save_set(name, list(features)[:n], selection=record | {"n": n})

    def save_search_set(self, name: str, text: str, suggestions: bool = True) -> FeatureSet:
        """The features a search finds, best match first, saved as a set with the query."""
        features = list(dict.fromkeys(hit.feature for hit in self.search(text, suggestions)))
        record = {"method": "label search", "query": text, "suggestions": suggestions}
        return self.save_set(name, features, selection=record)
