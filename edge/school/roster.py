"""Pupils of the school, from a CSV per class (`Mã định danh, Họ và tên, Lớp`), kept in
the local database (`lessons.db`, table `pupils`); personal data stays at the school.

An import is all or nothing: every bad line is reported (`FILE:LINE: problem`) and
nothing is applied. Importing a class again updates it: new pupils are added, names and
classes updated, and pupils of that class missing from the file are marked as left
(their links stop working; their attendance stays).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.school.database import connect, transaction

HEADERS = {
    "id": ("mã định danh", "ma dinh danh", "mã học sinh", "id", "student_id", "student id"),
    "name": ("họ và tên", "ho va ten", "họ tên", "name", "full name"),
    "class": ("lớp", "lop", "class"),
}


@dataclass(frozen=True)
class Pupil:
    id: str
    name: str
    class_name: str
    generation: int = 0  # a revoked personal link raises it: older links stop working


class RosterError(ValueError):
    """A roster file that cannot be imported; `problems` are `FILE:LINE: problem`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _header_map(header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for key, names in HEADERS.items():
        for index, name in enumerate(header):
            if name.strip().lower() in names and key not in columns:
                columns[key] = index
    return columns


def parse_roster(
    text: str, source: str = "roster", known_classes: Iterable[str] | None = None
) -> list[Pupil]:
    """Pupils from CSV text (UTF-8, BOM allowed, `,` or `;`); raises `RosterError` with
    every problem, each naming its line."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    reader = csv.reader(
        io.StringIO(text), delimiter=";" if first.count(";") > first.count(",") else ","
    )
    columns = _header_map(next(reader, []))
    missing = [HEADERS[k][0].capitalize() for k in HEADERS if k not in columns]
    if missing:
        raise RosterError(
            [
                f"{source}:1: missing column(s) {', '.join(missing)} "
                "(expected the headers Mã định danh, Họ và tên, Lớp)"
            ]
        )
    known = set(known_classes) if known_classes is not None else None
    problems: list[str] = []
    pupils: list[Pupil] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(columns.values()):
            problems.append(f"{source}:{line}: too few columns (expected {len(columns)})")
            continue
        pupil_id, name, class_name = (" ".join(row[columns[k]].split()) for k in HEADERS)
        if not pupil_id:
            problems.append(f"{source}:{line}: missing Mã định danh")
        elif pupil_id in seen:
            problems.append(
                f"{source}:{line}: Mã định danh {pupil_id} is already on line {seen[pupil_id]}"
            )
        else:
            seen[pupil_id] = line
        if not name:
            problems.append(f"{source}:{line}: empty Họ và tên")
        if not class_name:
            problems.append(f"{source}:{line}: missing Lớp")
        elif known is not None and class_name not in known:
            classes = ", ".join(sorted(known)) or "none configured"
            problems.append(
                f"{source}:{line}: unknown class {class_name!r} (expected one of: {classes})"
            )
        pupils.append(Pupil(pupil_id, name, class_name))
    if problems:
        raise RosterError(problems)
    return pupils


def read_roster(path: Path, known_classes: Iterable[str] | None = None) -> list[Pupil]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise RosterError([f"{path}:1: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise RosterError(
            [f'{path}:1: not UTF-8 text (expected a CSV saved as "CSV UTF-8")']
        ) from None
    return parse_roster(text, str(path), known_classes)


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    left: int
    classes: tuple[str, ...]


class RosterStore:
    """The `pupils` and `classes` tables in lessons.db."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path, threads=True)  # reports read it in a thread

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _pupil(row: sqlite3.Row) -> Pupil:
        return Pupil(row["id"], row["name"], row["class"], row["generation"])

    def import_pupils(self, pupils: list[Pupil], now: dt.datetime) -> ImportResult:
        """Apply a checked roster in one transaction: the classes in it are replaced."""
        classes = tuple(sorted({p.class_name for p in pupils}))
        added = updated = 0
        stamp = now.astimezone(dt.UTC).isoformat()
        with transaction(self._db):
            ids = {p.id for p in pupils}
            marks = ",".join("?" * len(classes))
            before = self._db.execute(
                f"SELECT id FROM pupils WHERE active = 1 AND class IN ({marks})", classes
            ).fetchall()
            gone = [row["id"] for row in before if row["id"] not in ids]
            for pupil in pupils:
                row = self._db.execute("SELECT * FROM pupils WHERE id = ?", (pupil.id,)).fetchone()
                if row is None:
                    added += 1
                elif (row["name"], row["class"], row["active"]) != (
                    pupil.name,
                    pupil.class_name,
                    1,
                ):
                    updated += 1
                self._db.execute(
                    "INSERT INTO pupils (id, name, class, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, class = excluded.class,"
                    " active = 1, updated_at = excluded.updated_at",
                    (pupil.id, pupil.name, pupil.class_name, stamp),
                )
            self._db.executemany(
                "UPDATE pupils SET active = 0, updated_at = ? WHERE id = ?",
                [(stamp, pupil_id) for pupil_id in gone],
            )
        return ImportResult(added, updated, len(gone), classes)

    def pupils(self, class_name: str | None = None) -> list[Pupil]:
        """The pupils on the roster now (of one class), by name."""
        query, arguments = "SELECT * FROM pupils WHERE active = 1", []
        if class_name is not None:
            query += " AND class = ?"
            arguments.append(class_name)
        rows = self._db.execute(query + " ORDER BY class, name COLLATE NOCASE, id", arguments)
        found = [self._pupil(row) for row in rows.fetchall()]
        return sorted(found, key=lambda p: (p.class_name, class_list_key(p)))

    def get(self, pupil_id: str) -> Pupil | None:
        row = self._db.execute(
            "SELECT * FROM pupils WHERE id = ? AND active = 1", (pupil_id,)
        ).fetchone()
        return self._pupil(row) if row is not None else None

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM pupils LIMIT 1").fetchone() is None

    def revoke_pupil(self, pupil_id: str) -> Pupil | None:
        """Invalidate the pupil's personal link (a new one can be printed)."""
        self._db.execute(
            "UPDATE pupils SET generation = generation + 1 WHERE id = ? AND active = 1",
            (pupil_id,),
        )
        return self.get(pupil_id)

    def class_generation(self, class_name: str) -> int:
        row = self._db.execute(
            "SELECT generation FROM classes WHERE name = ?", (class_name,)
        ).fetchone()
        return int(row["generation"]) if row is not None else 0

    def revoke_class(self, class_name: str) -> int:
        """Invalidate the class link; returns the new generation."""
        self._db.execute(
            "INSERT INTO classes (name, generation) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET generation = generation + 1",
            (class_name,),
        )
        return self.class_generation(class_name)


ALPHABET = "aăâbcdđeêghiklmnoôơpqrstuưvxy"  # Vietnamese letters in their order
LETTER_MARKS = {"\u0306", "\u0302", "\u031b"}  # breve, circumflex, horn: part of the letter
TONES = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")  # ngang, huyền, sắc, hỏi, ngã, nặng


def vietnamese_key(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sorts as Vietnamese lists do: letters first (a < ă < â < b ... d < đ), tones after."""
    letters: list[int] = []
    tones: list[int] = []
    for char in text.casefold():
        parts = unicodedata.normalize("NFD", char)
        letter = unicodedata.normalize(
            "NFC", parts[0] + "".join(m for m in parts[1:] if m in LETTER_MARKS)
        )
        tone = next((m for m in parts[1:] if m in TONES[1:]), "")
        index = ALPHABET.find(letter)
        letters.append(index if index >= 0 else 100 + ord(letter))
        tones.append(TONES.index(tone))
    return tuple(letters), tuple(tones)


def class_list_key(pupil: Pupil) -> tuple[object, ...]:
    """Class lists sort by the given name (the last word), then the whole name."""
    given = pupil.name.rsplit(" ", 1)[-1]
    return (vietnamese_key(given), vietnamese_key(pupil.name), pupil.id)
