"""What a room owes the school hub, kept on disk until the hub has it (`outbox.db`).

One row per thing to deliver, by key (`lesson:ROOM:ID`, `beat:ROOM`): putting a new
body under a key replaces the old one (only the latest state of a lesson matters), and
an unchanged body is not sent again. A row is sent, retried with backoff, and marked
sent only if its body did not change meanwhile. A restart resumes where it stood.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from edge.school.database import open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    path TEXT NOT NULL,
    body BLOB NOT NULL,
    digest TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT NOT NULL DEFAULT ''
)
"""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class Item:
    key: str
    room: str
    path: str  # where on the hub it goes
    body: bytes
    digest: str
    attempts: int
    created_at: dt.datetime


class Outbox:
    """The queue; every method is one short transaction, called from a thread."""

    def __init__(self, path: Path) -> None:
        self._db = open_db(path, threads=True)
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, key: str, room: str, path: str, body: bytes, now: dt.datetime) -> bool:
        """Queue `body` under `key` unless the hub already has (or is owed) these bytes;
        True when queued."""
        digest = hashlib.sha256(path.encode() + b"\n" + body).hexdigest()
        with self._lock:
            row = self._db.execute("SELECT digest FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is not None and row["digest"] == digest:
                return False
            self._db.execute(
                "INSERT INTO outbox (key, room, path, body, digest, next_try, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                " path = excluded.path, body = excluded.body, digest = excluded.digest,"
                " attempts = 0, next_try = excluded.next_try, sent_at = NULL, last_error = ''",
                (key, room, path, body, digest, _iso(now), _iso(now)),
            )
        return True

    def due(self, now: dt.datetime) -> Item | None:
        """The unsent item to send next: due, heartbeats first, then the oldest."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM outbox WHERE sent_at IS NULL AND next_try <= ?"
                " ORDER BY key NOT LIKE 'beat:%', created_at, key LIMIT 1",
                (_iso(now),),
            ).fetchone()
        if row is None:
            return None
        return Item(
            row["key"],
            row["room"],
            row["path"],
            bytes(row["body"]),
            row["digest"],
            row["attempts"],
            dt.datetime.fromisoformat(row["created_at"]),
        )

    def next_due(self) -> dt.datetime | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_try) FROM outbox WHERE sent_at IS NULL"
            ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def sent(self, item: Item, now: dt.datetime) -> None:
        """The hub has `item`: done, unless a newer body replaced it meanwhile."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET sent_at = ?, last_error = '' WHERE key = ? AND digest = ?",
                (_iso(now), item.key, item.digest),
            )

    def failed(self, item: Item, now: dt.datetime, error: str, wait: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ?"
                " WHERE key = ? AND digest = ?",
                (_iso(now + dt.timedelta(seconds=wait)), error[:500], item.key, item.digest),
            )

    def retry_now(self, now: dt.datetime) -> int:
        """Every waiting item due now (the hub answered again); how many."""
        with self._lock:
            return self._db.execute(
                "UPDATE outbox SET next_try = ? WHERE sent_at IS NULL AND next_try > ?",
                (_iso(now), _iso(now)),
            ).rowcount

    def backlog(self, now: dt.datetime) -> tuple[int, float]:
        """Lesson reports not yet delivered, and the age of the oldest, in seconds."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox"
                " WHERE sent_at IS NULL AND key NOT LIKE 'beat:%'"
            ).fetchone()
        oldest = dt.datetime.fromisoformat(row[1]) if row[1] else None
        return int(row[0]), (now - oldest).total_seconds() if oldest else 0.0
