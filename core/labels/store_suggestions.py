"""The label store's suggested labels: kept per feature and source, apart from the labels
(core.labels.suggestions builds them; the user accepts or edits one)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.labels.database import LabelDatabase
from core.labels.text import MAX_NAME, LabelStoreError, check_text, now


@dataclass(frozen=True)
class Suggestion:
    """A proposed label, from `source` (what it was built from); never a label by itself."""

    feature: int
    source: str
    text: str
    evidence: dict
    created_at: str = ""


class SuggestionsMixin(LabelDatabase):
    """Suggested labels of one SAE's features."""

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
