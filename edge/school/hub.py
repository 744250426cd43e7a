"""The school hub's store (`school.db`): every room's lessons as report cells, upserted
by (room, lesson id), so a report sent twice counts once; each room's last heartbeat;
each room's planned periods per day (what streamed, what was skipped and why)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.school.database import open_db
from edge.school.reports import PeriodCells

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lessons (
        room TEXT NOT NULL,
        lesson_id TEXT NOT NULL,
        day TEXT NOT NULL,
        class TEXT NOT NULL,
        start TEXT NOT NULL,
        state TEXT NOT NULL,
        roster TEXT NOT NULL,
        cells TEXT NOT NULL,
        received_at TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        PRIMARY KEY (room, lesson_id)
    )""",
    "CREATE INDEX IF NOT EXISTS lessons_by_day ON lessons (day, class, start)",
    """CREATE TABLE IF NOT EXISTS beats (
        room TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        received_at TEXT NOT NULL,
        sent_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS plans (
        room TEXT NOT NULL,
        day TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (room, day)
    )""",
)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class HeldLesson:
    room: str
    lesson_id: str
    state: str
    roster: str
    cells: PeriodCells
    received_at: dt.datetime


@dataclass(frozen=True)
class Beat:
    room: str
    body: dict[str, Any]
    received_at: dt.datetime


class HubStore:
    """Called from threads (one lock); `school.db` in the hub's data dir."""

    def __init__(self, path: Path) -> None:
        self._db = open_db(path, threads=True)
        for statement in SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put_lesson(
        self,
        room: str,
        lesson_id: str,
        state: str,
        roster: str,
        cells: PeriodCells,
        now: dt.datetime,
        sent: dt.datetime,
    ) -> bool:
        """The lesson as the room last reported it: a repeat replaces, never adds; a
        report sent before the one kept (a replay, a late retry) changes nothing. True
        when kept."""
        with self._lock:
            changed = self._db.execute(
                "INSERT INTO lessons (room, lesson_id, day, class, start, state, roster, cells,"
                " received_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(room, lesson_id) DO UPDATE SET day = excluded.day,"
                " class = excluded.class, start = excluded.start, state = excluded.state,"
                " roster = excluded.roster, cells = excluded.cells,"
                " received_at = excluded.received_at, sent_at = excluded.sent_at"
                " WHERE excluded.sent_at >= lessons.sent_at",
                (
                    room,
                    lesson_id,
                    cells.day.isoformat(),
                    cells.class_name,
                    _iso(cells.start),
                    state,
                    roster,
                    json.dumps(cells.as_json(), ensure_ascii=False),
                    _iso(now),
                    _iso(sent),
                ),
            ).rowcount
        return changed > 0

    def lessons(self, first: dt.date, last: dt.date) -> list[HeldLesson]:
        """The lessons of days `first` to `last`, by day, class and start."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM lessons WHERE day BETWEEN ? AND ? ORDER BY day, class, start, room",
                (first.isoformat(), last.isoformat()),
            ).fetchall()
        return [
            HeldLesson(
                row["room"],
                row["lesson_id"],
                row["state"],
                row["roster"],
                PeriodCells.from_json(json.loads(row["cells"])),
                dt.datetime.fromisoformat(row["received_at"]),
            )
            for row in rows
        ]

    def put_beat(
        self, room: str, body: dict[str, Any], now: dt.datetime, sent: dt.datetime
    ) -> None:
        """The room's heartbeat, unless a later one is kept already."""
        text = json.dumps(body, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT INTO beats (room, body, received_at, sent_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(room) DO UPDATE SET body = excluded.body,"
                " received_at = excluded.received_at, sent_at = excluded.sent_at"
                " WHERE excluded.sent_at >= beats.sent_at",
                (room, text, _iso(now), _iso(sent)),
            )

    def beats(self) -> dict[str, Beat]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM beats").fetchall()
        return {
            row["room"]: Beat(
                row["room"], json.loads(row["body"]), dt.datetime.fromisoformat(row["received_at"])
            )
            for row in rows
        }

    def put_plan(self, room: str, day: dt.date, periods: list[dict[str, Any]]) -> None:
        text = json.dumps(periods, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT INTO plans (room, day, body) VALUES (?, ?, ?)"
                " ON CONFLICT(room, day) DO UPDATE SET body = excluded.body",
                (room, day.isoformat(), text),
            )

    def plans(self, first: dt.date, last: dt.date) -> dict[tuple[str, dt.date], list[Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM plans WHERE day BETWEEN ? AND ?",
                (first.isoformat(), last.isoformat()),
            ).fetchall()
        return {
            (row["room"], dt.date.fromisoformat(row["day"])): json.loads(row["body"])
            for row in rows
        }
