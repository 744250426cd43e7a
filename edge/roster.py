"""Pupils of the school: read from a CSV (`Mã định danh, Họ và tên, Lớp`)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

HEADERS = {
    "id": ("mã định danh", "ma dinh danh", "id", "student_id", "student id"),
    "name": ("họ và tên", "ho va ten", "họ tên", "name", "full name"),
    "class": ("lớp", "lop", "class"),
}


@dataclass(frozen=True)
class Pupil:
    id: str
    name: str
    class_name: str


class RosterError(ValueError):
    pass


def parse_roster(text: str, source: str = "roster") -> list[Pupil]:
    """Pupils from CSV text (UTF-8, BOM allowed, `,` or `;`); errors name the line."""
    text = text.removeprefix("\ufeff")
    delimiter = (
        ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    )
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    columns: dict[str, int] = {}
    for key, names in HEADERS.items():
        for index, name in enumerate(header):
            if name in names:
                columns[key] = index
    missing = [HEADERS[k][0] for k in HEADERS if k not in columns]
    if missing:
        raise RosterError(f"{source}:1: missing column(s): {', '.join(missing)}")
    pupils = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        try:
            pupil = Pupil(*(row[columns[k]].strip() for k in ("id", "name", "class")))
        except IndexError:
            raise RosterError(f"{source}:{reader.line_num}: too few columns") from None
        if not pupil.id or not pupil.name or not pupil.class_name:
            raise RosterError(f"{source}:{reader.line_num}: empty ID, name or class")
        pupils.append(pupil)
    return pupils


def load_roster(path: Path) -> list[Pupil]:
    return parse_roster(path.read_text(encoding="utf-8"), str(path))
