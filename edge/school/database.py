"""lessons.db: one SQLite file for lessons, attendance, the archive queue and the roster,
opened by the service and the CLI side by side (WAL). Its schema is a list of numbered
migrations: `connect()` brings a file up to the latest in one transaction, recorded in
`PRAGMA user_version`, so a change of schema reaches the mini-PCs already in schools.
Version 1 is the schema as it shipped up to 2026-12-04 (every table `IF NOT EXISTS`, so
those files take it as they are); add a migration at the end, never edit one shipped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MIGRATIONS: list[str] = [
    # 1: lessons and their events; attendance (presence, who studies from home); the
    # archive queue; the roster
    """
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    subject TEXT NOT NULL,
    teacher TEXT NOT NULL,
    period INTEGER,
    session TEXT,
    start TEXT NOT NULL,
    end TEXT,
    ends_at TEXT,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lessons_room_start ON lessons (room, start);
CREATE TABLE IF NOT EXISTS lesson_events (
    lesson_id TEXT NOT NULL REFERENCES lessons (id),
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS lesson_events_lesson ON lesson_events (lesson_id);
CREATE TABLE IF NOT EXISTS presence (
    session_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    class TEXT NOT NULL,
    pupil_id TEXT,
    verified INTEGER NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '',
    joined_at TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    left_at TEXT
);
CREATE INDEX IF NOT EXISTS presence_class ON presence (class, joined_at);
CREATE TABLE IF NOT EXISTS at_home (
    day TEXT NOT NULL,
    class TEXT NOT NULL,
    pupil_id TEXT NOT NULL,
    marked_by TEXT NOT NULL DEFAULT '',
    marked_at TEXT NOT NULL,
    PRIMARY KEY (day, class, pupil_id)
);
CREATE TABLE IF NOT EXISTS at_home_days (
    day TEXT NOT NULL,
    class TEXT NOT NULL,
    marked_by TEXT NOT NULL DEFAULT '',
    marked_at TEXT NOT NULL,
    PRIMARY KEY (day, class)
);
CREATE TABLE IF NOT EXISTS archive_jobs (
    lesson_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    folder TEXT NOT NULL DEFAULT '',
    bytes_total INTEGER NOT NULL DEFAULT 0,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    archived_at TEXT,
    evicted_at TEXT
);
CREATE INDEX IF NOT EXISTS archive_jobs_state ON archive_jobs (state, next_try);
CREATE TABLE IF NOT EXISTS pupils (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    class TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pupils_class ON pupils (class, active);
CREATE TABLE IF NOT EXISTS classes (
    name TEXT PRIMARY KEY,
    generation INTEGER NOT NULL DEFAULT 0
);
""",
]


class DatabaseTooNew(RuntimeError):
    """The file was migrated by a newer classroom-edge than this one."""


def migrate(db: sqlite3.Connection, path: Path | str = "lessons.db") -> int:
    """Apply the migrations `db` has not had, all in one transaction; its version after."""
    latest = len(MIGRATIONS)
    if _version(db) == latest:
        return latest  # the usual case: no write lock needed (a reader beside a writer)
    db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
    try:
        version = _version(db)
        if version > latest:
            raise DatabaseTooNew(
                f"{path}: schema version {version}, but this classroom-edge knows up to "
                f"{latest} (expected the newer classroom-edge that wrote it)"
            )
        for number in range(version + 1, latest + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {latest}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return latest


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """A migration's statements (`execute` runs one at a time, inside our transaction;
    `executescript` would commit it)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def open_db(path: Path, *, synced: bool = True, threads: bool = False) -> sqlite3.Connection:
    """A SQLite file of ours: WAL (the CLI reads and writes beside the service), rows by
    name, transactions made explicit. `synced`: every commit reaches the disk before it
    returns; else (frequent small writes) at WAL checkpoints: a power cut may cost the
    last seconds, a crash of the process nothing. `threads`: used from more than one
    thread (the caller serialises)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=not threads)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
    return db


def connect(path: Path, *, synced: bool = True, threads: bool = False) -> sqlite3.Connection:
    """lessons.db (`open_db`), migrated to the latest schema."""
    db = open_db(path, synced=synced, threads=threads)
    migrate(db, path)
    return db


class transaction:
    """`with transaction(db):` one IMMEDIATE transaction, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
