"""The recorder: each live lesson's record (`lesson.json`) and its parts.

One recorder per room. A part begins when a lesson goes live (or resumes after a restart,
or after the media process was replaced) and ends when it closes. Its files are written by
a take (`edge.recording.take`) next to the encoders, from the buses the viewers use (no
second encode): the recorder only starts and ends takes, notes what they wrote, and
watches the disk. A failing disk never stops the lesson: the part ends as `failed`, the
viewers go on, and a new part is tried a little later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from capture.mux import file_sha256, probe
from edge.recording.recordings import (
    LessonRecord,
    MediaFile,
    Part,
    PartEnd,
    RecordingStore,
    part_file,
)
from edge.recording.take import OnOpen, Take, TakeFile, TakePlan, Tracks
from edge.school.clock import Clock
from edge.school.lessons import Lesson

logger = logging.getLogger(__name__)

RETRY_SECONDS = 15.0  # after a failed part, the next one is tried this much later
DISK_CHECK_SECONDS = 10.0
WATCH_SECONDS = 1.0  # how often a take's progress is looked at

StartTake = Callable[[TakePlan, OnOpen], Awaitable[Take]]


@dataclass
class _ActivePart:
    lesson: Lesson
    record: LessonRecord
    part: Part | None = None
    take: Take | None = None  # None: the last one could not start (asked again each watch)
    task: asyncio.Task[None] | None = None
    start_error: str | None = None
    dropped: int = 0  # by the parts before this one
    checked: float = 0.0  # when the disk was last looked at


class Recorder:
    """Records one room's lessons; `begin()` at go-live, `finish()` at the close,
    `stop()` at shutdown (the lesson stays open: a restart adds a part). `start_take`
    starts a take of the room's buses wherever its encoders run."""

    def __init__(
        self,
        room: str,
        start_take: StartTake,
        tracks: Tracks,
        store: RecordingStore,
        *,
        origin: float,
        clock: Clock,
        school: str,
        stop_below_bytes: int = 0,
    ) -> None:
        self.stop_below_bytes = stop_below_bytes  # free disk under which recording pauses
        self.room = room
        self.start_take = start_take
        self.tracks = tracks
        self.store = store
        self.origin = origin  # the buses' time zero, on the monotonic clock
        self.clock = clock
        self.school = school
        self._active: _ActivePart | None = None
        self._lock = asyncio.Lock()
        self.parts_failed = 0
        self.last_error: str | None = None

    @property
    def recording(self) -> str | None:
        """The id of the lesson being recorded, if any."""
        return self._active.lesson.id if self._active is not None else None

    async def begin(self, lesson: Lesson) -> None:
        """Start a new part of `lesson` (its first, or the next after a restart)."""
        async with self._lock:
            await self._begin(lesson)

    async def _begin(self, lesson: Lesson) -> None:
        if self._active is not None:
            await self._end_part("closed")
        record = self.store.read(lesson.id) or LessonRecord.for_lesson(lesson, self.school)
        await self._settle_interrupted(record)
        record.state = "recording"
        self.store.write(record)
        active = _ActivePart(lesson, record)
        await self._new_part(active)
        active.task = asyncio.create_task(self._watch(active), name=f"recorder-{self.room}")
        self._active = active

    async def _new_part(self, active: _ActivePart) -> None:
        """Start a take and, once it runs, add its part to the lesson's record."""
        lesson, record = active.lesson, active.record
        number = len(record.parts) + 1
        start = self.clock.now()
        plan = TakePlan(
            folder=str(self.store.folder(lesson.id)),
            part=number,
            tracks=self.tracks,
            zero=time.monotonic() - self.origin,
            metadata={
                "title": f"{lesson.subject or 'Tiết học'} · {lesson.class_name}",
                "artist": lesson.teacher,
                "album": self.school,
                "date": lesson.start.isoformat(),
                "comment": f"{lesson.id} phần {number}",
            },
        )
        part = Part(number=number, start=start)
        try:
            take = await self.start_take(plan, lambda entry: self._file_opened(part, entry))
        except (ConnectionError, TimeoutError, RuntimeError) as exc:  # asked again next watch
            if active.start_error is None:
                logger.error("room %s: recording %s: %s", self.room, lesson.id, exc)
            active.start_error = str(exc) or type(exc).__name__
            return
        active.take, active.part, active.start_error = take, part, None
        record.parts.append(part)
        self.store.write(record)
        logger.info("room %s: recording %s part %d", self.room, lesson.id, number)

    def _file_opened(self, part: Part, entry: MediaFile) -> None:
        active = self._active
        if active is None or active.part is not part:
            return
        part.files.append(entry)
        self.store.write(active.record)  # the file's offset survives a crash

    async def _watch(self, active: _ActivePart) -> None:
        """Look at the take now and then: start one that could not start, begin a new
        part when the media process that wrote this one has gone, pause while the disk is
        nearly full (streaming goes on; a full disk would also stop the lessons'
        database), and try a new part a while after a failure."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            async with self._lock:  # a begin, finish or stop waits; none cuts a step short
                await self._look(active)

    async def _look(self, active: _ActivePart) -> None:
        take = active.take
        if take is None:
            await self._new_part(active)
            return
        progress = take.progress()
        if progress.lost:
            logger.warning(
                "room %s: the process writing %s part %d has gone: a new part",
                self.room,
                active.lesson.id,
                active.part.number if active.part else 0,
            )
            await self._close_part(active, "interrupted", None)
            await self._new_part(active)
            return
        now = time.monotonic()
        room_left = True
        if self.stop_below_bytes and now - active.checked >= DISK_CHECK_SECONDS:
            active.checked = now
            free = self.store.free_bytes()
            room_left = free >= self.stop_below_bytes
            if not room_left and progress.error is None:  # stop writing, close later
                error = f"the disk is nearly full ({free / 1e6:.0f} MB free)"
                take.fail(error)
                logger.error("room %s: recording paused: %s", self.room, error)
        failed_at = progress.failed_at
        retry = failed_at is not None and now - failed_at > RETRY_SECONDS and room_left
        if retry and self._room_on_disk():
            logger.warning(
                "room %s: recording %s again after: %s",
                self.room,
                active.lesson.id,
                progress.error,
            )
            await self._close_part(active, "failed", await self._end_take(take))
            await self._new_part(active)

    def _room_on_disk(self) -> bool:
        return not self.stop_below_bytes or self.store.free_bytes() >= self.stop_below_bytes

    async def _end_take(self, take: Take) -> tuple[list[TakeFile], str | None] | None:
        """Close the take's files; None: its process has gone (the files are measured)."""
        try:
            ended = await take.end()
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("room %s: ending a take: %s", self.room, exc)
            return None
        return ended.files, ended.error

    async def _end_part(self, ended: PartEnd) -> _ActivePart | None:
        active, self._active = self._active, None
        if active is None:
            return None
        if active.task is not None:
            active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await active.task
        if active.take is not None:
            progress = active.take.progress()
            written = None if progress.lost else await self._end_take(active.take)
            await self._close_part(active, ended, written)
        return active

    async def _close_part(
        self,
        active: _ActivePart,
        ended: PartEnd,
        written: tuple[list[TakeFile], str | None] | None,
    ) -> None:
        """Note in `lesson.json` what the part's (closed) take wrote; `written` None: the
        take was lost with its process, its files are measured as they are on disk."""
        part, take = active.part, active.take
        active.part = active.take = None
        if part is None or take is None:
            return
        active.dropped += take.progress().dropped
        if written is None:
            await self._measure(self.store.folder(active.record.lesson), part)
            part.ended = "interrupted"
            self.store.write(active.record)
            return
        files, error = written
        part.end = self.clock.now()
        part.ended = "failed" if error else ended
        part.error = error
        if error:
            self.parts_failed += 1
            self.last_error = error
        entries = {entry.kind: entry for entry in part.files}
        for result in files:
            entry = entries.get(result.kind) or MediaFile(name=result.name, kind=result.kind)
            entry.size, entry.sha256 = result.size, result.sha256
            entry.duration, entry.offset = result.duration, result.offset
            entry.tracks = self.tracks.files()[result.kind]
            if result.kind not in entries:
                part.files.append(entry)
        self.store.write(active.record)
        logger.info(
            "room %s: %s part %d %s (%s)",
            self.room,
            active.lesson.id,
            part.number,
            part.ended,
            ", ".join(f"{f.name} {f.size / 1e6:.1f} MB {f.duration:.1f} s" for f in part.files),
        )

    async def _settle_interrupted(self, record: LessonRecord) -> None:
        """Parts a crash cut short: measure their files as they are on disk."""
        folder = self.store.folder(record.lesson)
        for part in record.parts:
            if part.end is None:
                part.ended = "interrupted"
                await self._measure(folder, part)

    async def _measure(self, folder: Path, part: Part) -> None:
        """Note a part's files as they are on disk, and its end from the longest."""
        known = {entry.kind: entry for entry in part.files}
        for kind, buses in self.tracks.files().items():
            path = folder / part_file(kind, part.number)
            if not path.is_file():
                continue
            entry = known.get(kind) or MediaFile(name=path.name, kind=kind)
            entry.tracks = buses
            try:
                duration, _ = await asyncio.to_thread(probe, path)
            except (OSError, ValueError) as exc:  # unreadable: kept, counted as empty
                logger.warning("recording %s: %s", path, exc)
                duration = 0.0
            entry.duration = round(duration, 3)
            entry.size = path.stat().st_size
            entry.sha256 = await asyncio.to_thread(file_sha256, path)
            if kind not in known:
                part.files.append(entry)
        longest = max((f.duration + f.offset for f in part.files), default=0.0)
        part.end = part.start + dt.timedelta(seconds=longest)

    async def finish(self, lesson: Lesson) -> LessonRecord | None:
        """The lesson has closed: end its part and complete `lesson.json`."""
        async with self._lock:
            if self._active is not None and self._active.lesson.id == lesson.id:
                await self._end_part("closed")
            record = self.store.read(lesson.id)
            if record is None:
                return None
            await self._settle_interrupted(record)
            record.state = "complete"
            record.planned_end = lesson.ends_at or lesson.end
            self.store.write(record)
            return record

    async def stop(self) -> None:
        """Shutdown: end the part; the lesson stays open for the next start."""
        async with self._lock:
            await self._end_part("stopped")

    def health(self) -> dict[str, object]:
        active = self._active
        progress = active.take.progress() if active and active.take else None
        error = progress.error if progress else (active.start_error if active else None)
        return {
            "recording": active.lesson.id if active else None,
            "part": active.part.number if active and active.part else None,
            "bytes": progress.bytes if progress else 0,
            "dropped": (active.dropped + (progress.dropped if progress else 0)) if active else 0,
            "error": error or None,
            "parts_failed": self.parts_failed,
        }
