"""lessons.db has versions: an empty file and a file as the mini-PCs in schools have it
today (no version, rows in it) both come up to the latest schema, keeping every row; a
migration that fails leaves the file as it was; a file newer than the code is refused
with a message that says so."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from edge.recording.archive import ArchiveStore
from edge.school import database
from edge.school.attendance import AttendanceStore
from edge.school.database import DatabaseTooNew, connect
from edge.school.lessons import LessonStore
from edge.school.roster import RosterStore

TODAY = Path(__file__).parent / "fixtures" / "lessons-db-2026-12-04.sql"
AT = dt.datetime(2026, 12, 4, 7, 30, tzinfo=dt.UTC)


def tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return {name: " ".join(sql.replace("IF NOT EXISTS ", "").split()) for name, sql in rows}


def version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def todays_file(path: Path) -> None:
    """lessons.db as classroom-edge left it up to today: its schema, no version, rows."""
    with sqlite3.connect(path) as db:
        db.executescript(TODAY.read_text(encoding="utf-8"))
        db.execute(
            "INSERT INTO presence (session_id, room, class, pupil_id, verified, joined_at,"
            " seen_at) VALUES ('s1', 'r1', '6A1', '0101000001', 1, ?, ?)",
            (AT.isoformat(), AT.isoformat()),
        )
        db.execute(
            "INSERT INTO pupils (id, name, class, updated_at)"
            " VALUES ('0101000001', 'Nguyễn Văn An', '6A1', ?)",
            (AT.isoformat(),),
        )


def open_every_store(path: Path) -> None:
    for store in (LessonStore(path), AttendanceStore(path), ArchiveStore(path)):
        store.close()
    RosterStore(path)


def test_an_empty_file_and_todays_file_reach_the_same_latest_schema(tmp_path: Path) -> None:
    empty, today = tmp_path / "empty.db", tmp_path / "today.db"
    open_every_store(empty)
    todays_file(today)
    assert version(today) == 0
    open_every_store(today)
    assert version(empty) == version(today) == len(database.MIGRATIONS)
    assert tables(empty) == tables(today)
    assert {"lessons", "presence", "at_home", "archive_jobs", "pupils"} <= set(tables(today))
    attendance = AttendanceStore(today)  # the rows from before are all there
    try:
        [row] = attendance.presence("6A1", AT - dt.timedelta(hours=1), AT + dt.timedelta(hours=1))
        assert row.pupil_id == "0101000001" and row.verified
    finally:
        attendance.close()
    pupil = RosterStore(today).get("0101000001")
    assert pupil is not None and pupil.name == "Nguyễn Văn An"


def test_a_new_migration_runs_once_and_a_failing_one_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lessons.db"
    todays_file(path)
    shipped = len(database.MIGRATIONS)
    monkeypatch.setattr(
        database,
        "MIGRATIONS",
        [
            *database.MIGRATIONS,
            "ALTER TABLE presence ADD COLUMN network TEXT NOT NULL DEFAULT '';\n"
            "CREATE INDEX presence_network ON presence (network);",
        ],
    )
    connect(path).close()
    connect(path).close()  # once: a second run would fail on the existing column
    assert version(path) == shipped + 1 and "presence_network" in tables(path)
    before = tables(path)
    monkeypatch.setattr(
        database,
        "MIGRATIONS",
        [
            *database.MIGRATIONS,
            "CREATE TABLE half_made (x INTEGER);\nALTER TABLE no_such_table ADD COLUMN y;",
        ],
    )
    with pytest.raises(sqlite3.OperationalError):
        connect(path)
    assert version(path) == shipped + 1 and tables(path) == before  # all or nothing


def test_a_file_from_a_newer_classroom_edge_is_refused_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "lessons.db"
    connect(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(database.MIGRATIONS) + 3}")
    with pytest.raises(DatabaseTooNew, match="newer classroom-edge"):
        connect(path)
