"""The label store's feature sets: saved, read, edited and deleted one transaction each;
a set saved from an import writes the labels it carries in the same transaction."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from core.labels.database import LabelDatabase
from core.labels.sets import FeatureSet, check_gate_record, check_members
from core.labels.text import MAX_NAME, LabelStoreError, check_tags, check_text, now

log = logging.getLogger(__name__)
FUTURE_KEPT = "after this machine's clock, so not known to be newer: kept the local label"
FUTURE_DATED_NOW = "after this machine's clock: imported, dated now"
UNCHANGED = object()  # add_results without a gate: the set's gate stays as it is


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


class SetsMixin(LabelDatabase):
    """Named, ordered feature sets of one SAE (see core.labels.sets for what a set holds)."""

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

    def _label_row(self, feature: int, record: dict) -> tuple:
        """A label as exported, checked, as a row of the labels table (its date in UTC)."""
        self.check_feature(feature)
        if not isinstance(record, dict):
            raise LabelStoreError(f"The label of feature {feature} is not an object.")
        tags = record.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise LabelStoreError(f"The tags of feature {feature} are not a list of text.")
        check_tags(feature, tags)
        return (
            self.sae,
            feature,
            check_text("Label", record.get("label", ""), MAX_NAME * 5),
            check_text("Note", record.get("note", "")),
            json.dumps(sorted({check_text("Tag", t, MAX_NAME) for t in tags})),
            check_text("Author", record.get("author", ""), MAX_NAME),
            _utc(feature, record.get("updated_at", "") or now()),
        )

    def _import_label(self, db: sqlite3.Connection, row: tuple, overwrite: bool, at: str) -> None:
        """Write an imported label unless the local one is newer (and not `overwrite`);
        either way, a history row says what happened. A label dated after this machine's
        clock (`at`) is suspect: it never replaces a local one without `overwrite`, and is
        kept dated `at`, so a later local edit stays newer."""
        feature, updated_at = row[1], row[6]
        local = db.execute(
            "SELECT updated_at FROM labels WHERE sae = ? AND feature = ?", (self.sae, feature)
        ).fetchone()
        future = updated_at > at
        keep_local = local is not None and (future or local[0] > updated_at) and not overwrite
        if not keep_local:
            db.execute(
                "INSERT OR REPLACE INTO labels (sae, feature, label, note, tags, author, "
                "updated_at) VALUES (?,?,?,?,?,?,?)",
                (*row[:6], min(updated_at, at)),
            )
        what = "import kept the newer local label" if keep_local else "imported"
        if future:
            what = FUTURE_KEPT if keep_local else FUTURE_DATED_NOW
            log.warning(
                "Feature %d: the imported label is dated %s: %s.", feature, updated_at, what
            )
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
        return self._update(name, gate=gate)

    def add_results(
        self, name: str, result: dict, gate: dict | object | None = UNCHANGED
    ) -> FeatureSet:
        """Append an evaluation result (with its provenance) to a set and, when `gate` is
        given, keep that gate (None drops it): one transaction, so a kill keeps both or
        neither."""
        return self._update(name, result=result, gate=gate)

    def _update(
        self, name: str, result: dict | None = None, gate: dict | object | None = UNCHANGED
    ) -> FeatureSet:
        if gate is not UNCHANGED and gate is not None:
            check_gate_record(gate)
        with self._db(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id, selection, results FROM feature_sets WHERE sae = ? AND name = ?",
                (self.sae, name),
            ).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise LabelStoreError(f"No feature set named '{name}'.")
            selection, results = json.loads(row[1]), json.loads(row[2])
            if gate is not UNCHANGED:
                selection.pop("gate", None)
                if gate is not None:
                    selection["gate"] = gate
            if result is not None:
                results.append(result)
            db.execute(
                "UPDATE feature_sets SET selection = ?, results = ?, updated_at = ? WHERE id = ?",
                (json.dumps(selection), json.dumps(results), now(), row[0]),
            )
            db.execute("COMMIT")
        return self.get_set(name)

    def save_contrast_set(
        self, name: str, features: Sequence[int], record: dict, n: int
    ) -> FeatureSet:
        """The top `n` features of a contrast search (best first) saved as a set, with what
        was compared."""
        return self.save_set(name, list(features)[:n], selection=record | {"n": n})
