"""The label database's schema, its versioned migrations, and how a connection is opened
(WAL, foreign keys, a busy timeout so concurrent writers wait instead of failing)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 2

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE labels (
        sae TEXT NOT NULL, feature INTEGER NOT NULL,
        label TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]', author TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        PRIMARY KEY (sae, feature)
    );
    CREATE TABLE label_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sae TEXT NOT NULL, feature INTEGER NOT NULL,
        changes TEXT NOT NULL, author TEXT NOT NULL, at TEXT NOT NULL
    );
    CREATE TABLE feature_sets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sae TEXT NOT NULL, name TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
        selection TEXT NOT NULL DEFAULT '{}', results TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        UNIQUE (sae, name)
    );
    CREATE TABLE feature_set_members (
        set_id INTEGER NOT NULL REFERENCES feature_sets(id) ON DELETE CASCADE,
        feature INTEGER NOT NULL, multiplier REAL NOT NULL DEFAULT 1.0,
        note TEXT NOT NULL DEFAULT '', position INTEGER NOT NULL,
        PRIMARY KEY (set_id, feature)
    );
    """,
    # Label suggestions (never labels until the user accepts one) and a full-text index of
    # labels and suggestions, kept in step by triggers (an insert first drops the row's old
    # entry: INSERT OR REPLACE fires no delete trigger); existing labels are indexed once.
    2: """
    CREATE TABLE suggestions (
        sae TEXT NOT NULL, feature INTEGER NOT NULL, source TEXT NOT NULL,
        text TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,
        PRIMARY KEY (sae, feature, source)
    );
    CREATE VIRTUAL TABLE text_search USING fts5(
        text, sae UNINDEXED, feature UNINDEXED, kind UNINDEXED, source UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER labels_indexed AFTER INSERT ON labels BEGIN
        DELETE FROM text_search
        WHERE sae = new.sae AND feature = new.feature AND kind = 'label';
        INSERT INTO text_search (text, sae, feature, kind, source)
        VALUES (new.label || ' ' || new.note || ' ' || new.tags, new.sae, new.feature, 'label', '');
    END;
    CREATE TRIGGER labels_reindexed AFTER UPDATE ON labels BEGIN
        DELETE FROM text_search
        WHERE sae = old.sae AND feature = old.feature AND kind = 'label';
        INSERT INTO text_search (text, sae, feature, kind, source)
        VALUES (new.label || ' ' || new.note || ' ' || new.tags, new.sae, new.feature, 'label', '');
    END;
    CREATE TRIGGER labels_unindexed AFTER DELETE ON labels BEGIN
        DELETE FROM text_search
        WHERE sae = old.sae AND feature = old.feature AND kind = 'label';
    END;
    CREATE TRIGGER suggestions_indexed AFTER INSERT ON suggestions BEGIN
        DELETE FROM text_search WHERE sae = new.sae AND feature = new.feature
        AND kind = 'suggestion' AND source = new.source;
        INSERT INTO text_search (text, sae, feature, kind, source)
        VALUES (new.text, new.sae, new.feature, 'suggestion', new.source);
    END;
    CREATE TRIGGER suggestions_unindexed AFTER DELETE ON suggestions BEGIN
        DELETE FROM text_search WHERE sae = old.sae AND feature = old.feature
        AND kind = 'suggestion' AND source = old.source;
    END;
    CREATE TRIGGER suggestions_reindexed AFTER UPDATE ON suggestions BEGIN
        DELETE FROM text_search WHERE sae = old.sae AND feature = old.feature
        AND kind = 'suggestion' AND source = old.source;
        INSERT INTO text_search (text, sae, feature, kind, source)
        VALUES (new.text, new.sae, new.feature, 'suggestion', new.source);
    END;
    INSERT INTO text_search (text, sae, feature, kind, source)
    SELECT label || ' ' || note || ' ' || tags, sae, feature, 'label', '' FROM labels;
    """,
}


class NewerSchemaError(Exception):
    """The database was written by a newer app (its schema version is higher)."""

    def __init__(self, version: int):
        super().__init__(version)
        self.version = version


class DatabaseProblem(Exception):
    """The database cannot be opened or read: damaged, not a database, locked, no access."""


@contextmanager
def connect(path: Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (callers open their own transactions). Reads never
    take the write lock, so they go on while another process writes. SQLite's errors come
    out as DatabaseProblem."""
    try:
        if not write and not path.exists():
            raise DatabaseProblem(f"{path} does not exist")
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseProblem(str(exc)) from exc
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA foreign_keys=ON")
        if write:
            db.execute("PRAGMA journal_mode=WAL")
        yield db
    except sqlite3.Error as exc:
        raise DatabaseProblem(str(exc)) from exc
    finally:
        db.close()


def schema_version(db: sqlite3.Connection) -> int:
    found = db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone()
    if found is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def statements(script: str) -> list[str]:
    """A migration's SQL statements, each complete (a trigger's body keeps its semicolons)."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending.strip())
            pending = ""
    return found


def migrate(path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction (safe against a second process
    doing the same); a newer version is left as it is. A current database is only read."""
    if path.exists():
        with connect(path) as db:
            version = schema_version(db)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(version)
    with connect(path, write=True) as db:
        db.execute("BEGIN IMMEDIATE")
        version = schema_version(db)
        if version > SCHEMA_VERSION:
            db.execute("ROLLBACK")
            raise NewerSchemaError(version)
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in statements(MIGRATIONS[target]):
                db.execute(statement)
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        db.execute("COMMIT")
