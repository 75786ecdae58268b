"""The label store's text search: labels (label, note and tags) and suggested labels, in
SQLite FTS5 (the index is kept in step by core.labels.schema's triggers)."""

from __future__ import annotations

from dataclasses import dataclass

from core.labels.sets import FeatureSet
from core.labels.store_sets import SetsMixin
from core.labels.text import LabelStoreError


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


class SearchMixin(SetsMixin):
    """Search of one SAE's labels and suggestions; built on sets, as a search can be saved
    as one."""

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

    def save_search_set(self, name: str, text: str, suggestions: bool = True) -> FeatureSet:
        """The features a search finds, best match first, saved as a set with the query."""
        features = list(dict.fromkeys(hit.feature for hit in self.search(text, suggestions)))
        record = {"method": "label search", "query": text, "suggestions": suggestions}
        return self.save_set(name, features, selection=record)
