"""Attendance (điểm danh) of the pupils who watch from home, in the local database.

Each viewer session of a known pupil is a row of `presence`: when it connected, when it
was last seen (every 30 s, so a crash costs at most that) and when it left. A period's
attendance is read from them afterwards: the union of a pupil's sessions (several
devices count once) within the lesson's time. Teachers mark who studies from home today
(`at_home`), the count the report sets the online count against.

Joins, leaves and "still here" are written by a thread of their own, in order: a busy
or locked database (the CLI writing beside the service) never holds up the event loop
where the pupils' media runs. Reads first wait for the writes queued before them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.school.database import connect, transaction

logger = logging.getLogger(__name__)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class Presence:
    session_id: str
    room: str
    class_name: str
    pupil_id: str | None
    verified: bool
    joined_at: dt.datetime
    left_at: dt.datetime | None  # None: still watching


class AttendanceStore:
    def __init__(self, path: Path) -> None:
        self._db = connect(path, synced=False, threads=True)
        self._lock = threading.Lock()  # one statement at a time on the shared connection
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="attendance")

    def close(self) -> None:
        self._writer.shutdown(wait=True)  # what was queued is written
        with self._lock:
            self._db.close()

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        def run() -> None:
            try:
                with self._lock:
                    self._db.executemany(sql, rows)
            except sqlite3.Error:
                logger.exception("attendance: writing %d rows", len(rows))

        try:
            self._writer.submit(run)
        except RuntimeError:  # closed: the service is stopping
            logger.warning("attendance closed: %d rows not written", len(rows))

    def flush(self) -> None:
        """Wait until every write queued so far is done (off the event loop)."""
        with contextlib.suppress(RuntimeError):
            self._writer.submit(lambda: None).result()

    def joined(
        self,
        session_id: str,
        *,
        room: str,
        class_name: str,
        pupil_id: str | None,
        verified: bool,
        at: dt.datetime,
        address: str = "",
        device: str = "",
    ) -> None:
        self._write(
            "INSERT OR IGNORE INTO presence (session_id, room, class, pupil_id, verified,"
            " address, device, joined_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    session_id,
                    room,
                    class_name,
                    pupil_id,
                    int(verified),
                    address,
                    device[:120],
                    _iso(at),
                    _iso(at),
                )
            ],
        )

    def seen(self, session_ids: Iterable[str], at: dt.datetime) -> None:
        self._write(
            "UPDATE presence SET seen_at = ? WHERE session_id = ? AND left_at IS NULL",
            [(_iso(at), sid) for sid in session_ids],
        )

    def left(self, session_id: str, at: dt.datetime) -> None:
        self._write(
            "UPDATE presence SET left_at = ?, seen_at = ? WHERE session_id = ? AND left_at IS NULL",
            [(_iso(at), _iso(at), session_id)],
        )

    def close_dangling(self) -> int:
        """Sessions a crash left open end when they were last seen."""
        self.flush()
        with self._lock:
            return self._db.execute(
                "UPDATE presence SET left_at = seen_at WHERE left_at IS NULL"
            ).rowcount

    @staticmethod
    def _presence(row: sqlite3.Row) -> Presence:
        return Presence(
            row["session_id"],
            row["room"],
            row["class"],
            row["pupil_id"],
            bool(row["verified"]),
            dt.datetime.fromisoformat(row["joined_at"]),
            dt.datetime.fromisoformat(row["left_at"]) if row["left_at"] else None,
        )

    def presence(self, class_name: str, since: dt.datetime, until: dt.datetime) -> list[Presence]:
        """Sessions of the class that overlap [since, until)."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM presence WHERE class = ? AND joined_at < ?"
                " AND (left_at IS NULL OR left_at > ?) ORDER BY joined_at",
                (class_name, _iso(until), _iso(since)),
            ).fetchall()
        return [self._presence(row) for row in rows]

    def set_at_home(
        self, day: dt.date, class_name: str, pupil_ids: Iterable[str], by: str, at: dt.datetime
    ) -> None:
        """Who of the class studies from home on `day` (replaces what was marked)."""
        with self._lock, transaction(self._db):
            self._db.execute(
                "DELETE FROM at_home WHERE day = ? AND class = ?", (day.isoformat(), class_name)
            )
            self._db.executemany(
                "INSERT INTO at_home (day, class, pupil_id, marked_by, marked_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (day.isoformat(), class_name, pid, by, _iso(at))
                    for pid in sorted(set(pupil_ids))
                ],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO at_home_days (day, class, marked_by, marked_at)"
                " VALUES (?, ?, ?, ?)",
                (day.isoformat(), class_name, by, _iso(at)),
            )

    def at_home(self, day: dt.date, class_name: str) -> set[str] | None:
        """The pupils marked as studying from home, or None if nobody marked the day."""
        with self._lock:
            return self._at_home(day, class_name)

    def _at_home(self, day: dt.date, class_name: str) -> set[str] | None:
        marked = self._db.execute(
            "SELECT 1 FROM at_home_days WHERE day = ? AND class = ?",
            (day.isoformat(), class_name),
        ).fetchone()
        if marked is None:
            return None
        rows = self._db.execute(
            "SELECT pupil_id FROM at_home WHERE day = ? AND class = ?",
            (day.isoformat(), class_name),
        ).fetchall()
        return {row["pupil_id"] for row in rows}
