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

`LabelStore` is the one object callers hold; it keeps the labels and the workspace's
keying, and takes its connection, sets, suggestions and search from the modules named in
its docstring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.labels.store_search import SearchMixin
from core.labels.store_sets import SetsMixin
from core.labels.store_suggestions import SuggestionsMixin
from core.labels.text import MAX_NAME, check_tags, check_text, now

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

DEFAULT_TAGS = ("biology", "not biology", "unclear")


@dataclass(frozen=True)
class Label:
    feature: int
    label: str = ""
    note: str = ""
    tags: tuple[str, ...] = ()
    author: str = ""
    updated_at: str = ""


class LabelStore(SearchMixin, SetsMixin, SuggestionsMixin):
    """Labels, feature sets (core.labels.store_sets), suggested labels
    (core.labels.store_suggestions) and their search (core.labels.store_search) of one SAE,
    in its workspace's database (core.labels.database)."""

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
            check_tags(feature, clean)
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
