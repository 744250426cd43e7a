"""What is on disk of each lesson's recording: `<data dir>/recordings/<lesson id>/`.

A lesson is `presenter.mp4` (camera + classroom sound), `presentation.mp4` (the board)
and `lesson.json`; a lesson interrupted by a restart goes on in parts, whose files are
`presenter-2.mp4`, `presentation-2.mp4` and so on. `lesson.mp4` (board large, camera
inset) is a composed copy made afterwards. `lesson.json` is replaced atomically, so it
is always whole: the record of what the files are, with their sizes and SHA-256.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from edge.config.files import write_atomically
from edge.school.lessons import Lesson

PRESENTER, PRESENTATION, COMPOSED = "presenter", "presentation", "lesson"
RECORD = "lesson.json"
PartEnd = Literal["closed", "stopped", "interrupted", "failed"]


def part_file(kind: str, part: int) -> str:
    return f"{kind}.mp4" if part == 1 else f"{kind}-{part}.mp4"


class MediaFile(BaseModel):
    name: str
    kind: str = Field(pattern="^(presenter|presentation|lesson)$")
    tracks: list[str] = Field(default_factory=list)
    size: int = 0
    sha256: str = ""
    duration: float = 0.0  # seconds
    offset: float = 0.0  # seconds from the part's start to the file's first picture


class Part(BaseModel):
    number: int
    start: dt.datetime
    end: dt.datetime | None = None  # None: still recording, or cut short by a crash
    ended: PartEnd | None = None
    error: str | None = None
    files: list[MediaFile] = Field(default_factory=list)


class LessonRecord(BaseModel):
    lesson: str
    room: str
    kind: str
    school: str
    class_name: str = Field(alias="class")
    subject: str
    teacher: str
    period: int | None
    session: str | None
    planned_start: dt.datetime
    planned_end: dt.datetime | None
    state: Literal["recording", "complete"] = "recording"
    parts: list[Part] = Field(default_factory=list)
    composed: MediaFile | None = None
    model_config = {"populate_by_name": True}

    @classmethod
    def for_lesson(cls, lesson: Lesson, school: str) -> LessonRecord:
        return cls.model_validate(
            {
                "lesson": lesson.id,
                "room": lesson.room,
                "kind": lesson.kind,
                "school": school,
                "class": lesson.class_name,
                "subject": lesson.subject,
                "teacher": lesson.teacher,
                "period": lesson.period,
                "session": lesson.session,
                "planned_start": lesson.start,
                "planned_end": lesson.ends_at or lesson.end,
            }
        )

    @property
    def start(self) -> dt.datetime | None:
        return self.parts[0].start if self.parts else None

    @property
    def end(self) -> dt.datetime | None:
        return self.parts[-1].end if self.parts else None

    @property
    def duration(self) -> float:
        """Seconds recorded: each part's longest file."""
        return sum(max((f.duration for f in p.files), default=0.0) for p in self.parts)

    def media(self) -> list[MediaFile]:
        """Every media file: the parts' in order, then the composed copy."""
        files = [f for part in self.parts for f in part.files]
        return files + ([self.composed] if self.composed is not None else [])

    def as_json(self, zone: dt.tzinfo) -> str:
        """`lesson.json`: times in the school's zone, totals added for readers."""

        def local(moment: dt.datetime | None) -> str | None:
            return moment.astimezone(zone).isoformat() if moment is not None else None

        body = self.model_dump(mode="json", by_alias=True)
        body["planned_start"] = local(self.planned_start)
        body["planned_end"] = local(self.planned_end)
        for part, raw in zip(self.parts, body["parts"], strict=True):
            raw["start"], raw["end"] = local(part.start), local(part.end)
        body["start"], body["end"] = local(self.start), local(self.end)
        body["duration"] = round(self.duration, 3)
        body["size"] = sum(f.size for f in self.media())
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


class RecordingStore:
    """`<data dir>/recordings/`: one folder per lesson."""

    def __init__(self, root: Path, zone: dt.tzinfo) -> None:
        self.root = root
        self.zone = zone
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, lesson_id: str) -> Path:
        if not lesson_id or "/" in lesson_id or lesson_id.startswith("."):
            raise ValueError(f"not a lesson id: {lesson_id!r}")
        return self.root / lesson_id

    def read(self, lesson_id: str) -> LessonRecord | None:
        try:
            text = (self.folder(lesson_id) / RECORD).read_text(encoding="utf-8")
        except (FileNotFoundError, ValueError):
            return None
        return LessonRecord.model_validate_json(text)

    def write(self, record: LessonRecord) -> None:
        """Replace `lesson.json` atomically (a crash leaves the old or the new one)."""
        write_atomically(
            self.folder(record.lesson) / RECORD, record.as_json(self.zone), sync_folder=True
        )

    def lesson_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / RECORD).is_file())

    def local_size(self, lesson_id: str) -> int:
        folder = self.folder(lesson_id)
        return sum(p.stat().st_size for p in folder.glob("*.mp4") if p.is_file())

    def has_media(self, lesson_id: str) -> bool:
        return any(self.folder(lesson_id).glob("*.mp4"))

    def delete_media(self, lesson_id: str) -> int:
        """Delete the lesson's media files (its `lesson.json` stays as the record);
        returns the bytes freed."""
        freed = 0
        for path in self.folder(lesson_id).glob("*.mp4"):
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size
                path.unlink()
        return freed

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free
