"""The label store's text search: labels (label, note and tags) and suggested labels, in
SQLite FTS5 (the index is kept in step by core.labels.schema's triggers). FTS finds the
candidates; each is then checked field by field, so a hit says where it matched, and a tag
matches only as a whole ("biology" never finds "not biology")."""

from __future__ import annotations

import json
import re
import unicodedata
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
    fields: tuple[str, ...] = ("text",)  # of a label: "label", "note" and/or "tag"


def words(text: str) -> list[str]:
    """The words of `text` as FTS5's unicode61 tokenizer sees them: lower case, accents
    removed."""
    plain = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return re.findall(r"[^\W_]+", plain)


def _has_words(text: str, wanted: list[str]) -> list[str]:
    """The words of `wanted` that begin a word of `text`."""
    present = words(text)
    return [word for word in wanted if any(p.startswith(word) for p in present)]


def label_fields(query: str, label: str, note: str, tags: list[str]) -> tuple[str, ...]:
    """Where a label matches `query`: "tag" when a tag is the query as a whole (case and
    spaces aside); "label" and "note" when every word of the query begins a word of the
    label or the note, naming those that hold one. () when it does not match."""
    wanted = words(query)
    whole = " ".join(wanted)
    fields = []
    in_label, in_note = _has_words(label, wanted), _has_words(note, wanted)
    if wanted and set(in_label) | set(in_note) == set(wanted):
        fields += ["label"] * bool(in_label) + ["note"] * bool(in_note)
    if whole and any(" ".join(words(tag)) == whole for tag in tags):
        fields.append("tag")
    return tuple(fields)


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
        """Labels and, with `suggestions`, suggested labels that match `text`, best matches
        first: a label when every word begins a word of its label or note, or a tag is
        `text` as a whole (`label_fields`; each hit names its fields); a suggestion when every
        word begins one of its words."""
        kinds = ("label", "suggestion") if suggestions else ("label",)
        with self._db() as db:
            rows = db.execute(
                "SELECT t.feature, t.kind, t.source, t.text, l.label, l.note, l.tags "
                "FROM text_search t LEFT JOIN labels l "
                "ON t.kind = 'label' AND l.sae = t.sae AND l.feature = t.feature "
                "WHERE text_search MATCH ? "
                f"AND t.sae = ? AND t.kind IN ({','.join('?' * len(kinds))}) ORDER BY rank",
                (fts_query(text), self.sae, *kinds),
            ).fetchall()
        hits = []
        for feature, kind, source, found, label, note, tags in rows:
            fields = ("text",)
            if kind == "label":
                fields = label_fields(text, label or "", note or "", json.loads(tags or "[]"))
                if not fields:  # FTS matched across fields or inside a tag
                    continue
            hits.append(SearchHit(int(feature), kind, source, found, fields))
        return hits[:limit]

    def save_search_set(self, name: str, text: str, suggestions: bool = True) -> FeatureSet:
        """The features a search finds, best match first, saved as a set with the query."""
        features = list(dict.fromkeys(hit.feature for hit in self.search(text, suggestions)))
        record = {"method": "label search", "query": text, "suggestions": suggestions}
        return self.save_set(name, features, selection=record)
