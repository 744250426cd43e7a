"""Lessons and their lifecycle, persisted in SQLite:
idle → warming → live → closing → recorded (→ archived, by the archive queue).

The scheduler moves lessons up to `recorded`, the archive queue from there to
`archived`; everyone else reads. Every change of state is one transaction, so a crash at
any moment leaves each lesson in a state it really reached.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from edge.school.database import connect, transaction

State = Literal["idle", "warming", "live", "closing", "recorded", "archived"]
Kind = Literal["timetable", "adhoc", "always"]
OPEN_STATES: tuple[State, ...] = ("warming", "live", "closing")
NEXT_STATES: dict[State, tuple[State, ...]] = {
    "idle": ("warming", "closing"),
    "warming": ("live", "closing"),
    "live": ("closing",),
    "closing": ("recorded",),
    "recorded": ("archived",),
    "archived": (),
}


class TransitionError(ValueError):
    """A lesson asked to move to a state it cannot reach from where it is."""


@dataclass(frozen=True)
class Lesson:
    id: str
    room: str
    kind: Kind
    class_name: str
    subject: str
    teacher: str
    period: int | None
    session: str | None
    start: dt.datetime
    end: dt.datetime | None  # as planned; None: open-ended (an always-live room)
    ends_at: dt.datetime | None  # as it stands: extended, or ended early
    state: State = "idle"

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def as_json(self, zone: dt.tzinfo) -> dict[str, object]:
        def iso(moment: dt.datetime | None) -> str | None:
            return moment.astimezone(zone).isoformat() if moment is not None else None

        return {
            "id": self.id,
            "room": self.room,
            "kind": self.kind,
            "class": self.class_name,
            "subject": self.subject,
            "teacher": self.teacher,
            "period": self.period,
            "session": self.session,
            "start": iso(self.start),
            "end": iso(self.ends_at or self.end),
            "planned_end": iso(self.end),
            "state": self.state,
        }


def _iso(moment: dt.datetime | None) -> str | None:
    """UTC, so that text order is time order in SQL."""
    return moment.astimezone(dt.UTC).isoformat() if moment is not None else None


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class LessonStore:
    """`lessons.db` in the data dir; one connection. The service writes from threads (the
    scheduler's `_write`), one transaction at a time; reads come from the event loop and
    from the report threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path, threads=True)
        self._writing = threading.Lock()  # one transaction at a time on the connection

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _lesson(row: sqlite3.Row) -> Lesson:
        start = _parse(row["start"])
        assert start is not None
        return Lesson(
            id=row["id"],
            room=row["room"],
            kind=row["kind"],
            class_name=row["class"],
            subject=row["subject"],
            teacher=row["teacher"],
            period=row["period"],
            session=row["session"],
            start=start,
            end=_parse(row["end"]),
            ends_at=_parse(row["ends_at"]),
            state=row["state"],
        )

    def get(self, lesson_id: str) -> Lesson | None:
        row = self._db.execute("SELECT * FROM lessons WHERE id = ?", (lesson_id,)).fetchone()
        return self._lesson(row) if row is not None else None

    def add(self, lesson: Lesson, at: dt.datetime) -> Lesson:
        """Insert `lesson` unless one with its id exists; returns the stored one."""
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO lessons (id, room, kind, class, subject, teacher, period,"
                " session, start, end, ends_at, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lesson.id,
                    lesson.room,
                    lesson.kind,
                    lesson.class_name,
                    lesson.subject,
                    lesson.teacher,
                    lesson.period,
                    lesson.session,
                    _iso(lesson.start),
                    _iso(lesson.end),
                    _iso(lesson.ends_at),
                    lesson.state,
                    _iso(at),
                ),
            )
        stored = self.get(lesson.id)
        assert stored is not None
        return stored

    def move(self, lesson: Lesson, state: State, at: dt.datetime, note: str = "") -> Lesson:
        """Move `lesson` to `state` and log the event; refuses impossible moves."""
        current = self.get(lesson.id)
        if current is None:
            raise TransitionError(f"no lesson {lesson.id}")
        if state not in NEXT_STATES[current.state]:
            raise TransitionError(f"lesson {lesson.id}: {current.state} cannot become {state}")
        with self._transaction():
            self._db.execute(
                "UPDATE lessons SET state = ?, updated_at = ? WHERE id = ?",
                (state, _iso(at), lesson.id),
            )
            self._log(lesson.id, at, state, note)
        return replace(current, state=state)

    def note(self, lesson: Lesson, at: dt.datetime, note: str) -> None:
        """Log an event that does not change the state (resumed after a restart)."""
        with self._transaction():
            self._log(lesson.id, at, lesson.state, note)

    def set_end(self, lesson: Lesson, ends_at: dt.datetime, at: dt.datetime, note: str) -> Lesson:
        with self._transaction():
            self._db.execute(
                "UPDATE lessons SET ends_at = ?, updated_at = ? WHERE id = ?",
                (_iso(ends_at), _iso(at), lesson.id),
            )
            self._log(lesson.id, at, lesson.state, note)
        return replace(lesson, ends_at=ends_at)

    def _log(self, lesson_id: str, at: dt.datetime, state: State, note: str) -> None:
        self._db.execute(
            "INSERT INTO lesson_events (lesson_id, at, state, note) VALUES (?, ?, ?, ?)",
            (lesson_id, _iso(at), state, note),
        )

    def open_lessons(self, room: str | None = None) -> list[Lesson]:
        marks = ",".join("?" * len(OPEN_STATES))
        query = f"SELECT * FROM lessons WHERE state IN ({marks})"
        arguments: list[str] = list(OPEN_STATES)
        if room is not None:
            query += " AND room = ?"
            arguments.append(room)
        rows = self._db.execute(query + " ORDER BY start", arguments).fetchall()
        return [self._lesson(row) for row in rows]

    def lessons(
        self, room: str, since: dt.datetime, until: dt.datetime | None = None
    ) -> list[Lesson]:
        """The room's lessons starting at or after `since` (and before `until`)."""
        query = "SELECT * FROM lessons WHERE room = ? AND start >= ?"
        arguments = [room, _iso(since)]
        if until is not None:
            query += " AND start < ?"
            arguments.append(_iso(until))
        rows = self._db.execute(query + " ORDER BY start", arguments).fetchall()
        return [self._lesson(row) for row in rows]

    def events(self, lesson_id: str) -> list[tuple[dt.datetime, State, str]]:
        rows = self._db.execute(
            "SELECT at, state, note FROM lesson_events WHERE lesson_id = ? ORDER BY rowid",
            (lesson_id,),
        ).fetchall()
        return [(_parse(r["at"]), r["state"], r["note"]) for r in rows]  # type: ignore[misc]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._writing, transaction(self._db):
            yield
