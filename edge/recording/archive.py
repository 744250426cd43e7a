"""The archive queue: every recorded lesson to the school's library, exactly once.

pyCA's way: the recorder and the uploader share nothing but persisted state. A lesson
the scheduler has moved to `recorded` gets a job in `archive_jobs` (lessons.db); the job
goes `composing` (lesson.mp4, at low priority, one at a time) → `queued` → `uploading` →
`done`, and the lesson becomes `archived` only once every file is checked at the target
(size and SHA-256). A failed attempt waits (exponential backoff with jitter) and tries
again; a restart picks up where the queue stood, and what already reached the target is
not sent again. Uploads keep to a rate cap and a daily window, and hold while a lesson
is live, so archiving never starves a live lesson on the school's uplink.

The disk guard deletes local copies N days after they are archived, and, when free
space falls under the threshold, the oldest archived lessons first; never one that is
not archived. If space stays short it says so loudly (log, health, metrics) and the
lessons go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from capture.mux import file_sha256
from capture.supervise import cancel_all, supervised
from edge.recording.compose import Composer
from edge.recording.library import Target, UploadError, lesson_folder, owner_of
from edge.recording.recordings import RECORD, MediaFile, RecordingStore
from edge.school.clock import Clock
from edge.school.database import connect
from edge.school.lessons import LessonStore, TransitionError

logger = logging.getLogger(__name__)

JobState = Literal["composing", "queued", "uploading", "done", "empty"]
POLL_SECONDS = 5.0  # the queue looks again this often (CLI retries, the window, lessons)
GUARD_SECONDS = 30.0
PROGRESS_SECONDS = 1.0  # progress reaches the database this often
LOUD_SECONDS = 300.0  # a low disk is logged again this often


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class Job:
    lesson_id: str
    state: JobState
    attempts: int
    next_try: dt.datetime
    last_error: str
    folder: str
    bytes_total: int
    bytes_done: int
    created_at: dt.datetime
    updated_at: dt.datetime
    archived_at: dt.datetime | None
    evicted_at: dt.datetime | None

    def as_json(self, zone: dt.tzinfo) -> dict[str, object]:
        def local(moment: dt.datetime | None) -> str | None:
            return moment.astimezone(zone).isoformat() if moment else None

        return {
            "lesson": self.lesson_id,
            "state": self.state,
            "attempts": self.attempts,
            "next_try": local(self.next_try) if self.state == "queued" else None,
            "last_error": self.last_error or None,
            "folder": self.folder or None,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "created": local(self.created_at),
            "archived": local(self.archived_at),
            "local_copy_deleted": local(self.evicted_at),
        }


class ArchiveStore:
    """`archive_jobs` in lessons.db; the CLI opens it too (`archive status|retry`). Each
    write is one statement; the service makes them from a thread (`Archiver`), off the
    event loop, as lessons.db may be locked by the CLI or slow to sync."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path, threads=True)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        def moment(text: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(text) if text else None

        return Job(
            lesson_id=row["lesson_id"],
            state=row["state"],
            attempts=row["attempts"],
            next_try=dt.datetime.fromisoformat(row["next_try"]),
            last_error=row["last_error"],
            folder=row["folder"],
            bytes_total=row["bytes_total"],
            bytes_done=row["bytes_done"],
            created_at=dt.datetime.fromisoformat(row["created_at"]),
            updated_at=dt.datetime.fromisoformat(row["updated_at"]),
            archived_at=moment(row["archived_at"]),
            evicted_at=moment(row["evicted_at"]),
        )

    def get(self, lesson_id: str) -> Job | None:
        row = self._db.execute(
            "SELECT * FROM archive_jobs WHERE lesson_id = ?", (lesson_id,)
        ).fetchone()
        return self._job(row) if row is not None else None

    def add(self, lesson_id: str, state: JobState, now: dt.datetime) -> Job:
        self._db.execute(
            "INSERT OR IGNORE INTO archive_jobs (lesson_id, state, next_try, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?)",
            (lesson_id, state, _iso(now), _iso(now), _iso(now)),
        )
        job = self.get(lesson_id)
        assert job is not None
        return job

    def jobs(self, *states: JobState) -> list[Job]:
        query = "SELECT * FROM archive_jobs"
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
        rows = self._db.execute(query + " ORDER BY created_at, lesson_id", states).fetchall()
        return [self._job(row) for row in rows]

    def due(self, now: dt.datetime) -> Job | None:
        """The queued job to send next: due, the oldest first."""
        row = self._db.execute(
            "SELECT * FROM archive_jobs WHERE state IN ('queued', 'uploading') AND next_try <= ?"
            " ORDER BY created_at, lesson_id LIMIT 1",
            (_iso(now),),
        ).fetchone()
        return self._job(row) if row is not None else None

    def next_due(self) -> dt.datetime | None:
        row = self._db.execute(
            "SELECT MIN(next_try) FROM archive_jobs WHERE state IN ('queued', 'uploading')"
        ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def update(self, lesson_id: str, now: dt.datetime, **fields: object) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        values = [_iso(v) if isinstance(v, dt.datetime) else v for v in fields.values()]
        self._db.execute(
            f"UPDATE archive_jobs SET {names}, updated_at = ? WHERE lesson_id = ?",
            (*values, _iso(now), lesson_id),
        )

    def unqueued(self) -> list[str]:
        """Lessons the scheduler has recorded that have no job yet."""
        rows = self._db.execute(
            "SELECT l.id FROM lessons l LEFT JOIN archive_jobs j ON j.lesson_id = l.id"
            " WHERE l.state = 'recorded' AND j.lesson_id IS NULL ORDER BY l.start"
        ).fetchall()
        return [row[0] for row in rows]

    def retry(self, now: dt.datetime, lesson_ids: list[str] | None = None) -> int:
        """Make waiting jobs due now (all, or those named); the number changed."""
        query = "UPDATE archive_jobs SET next_try = ?, updated_at = ? WHERE state = 'queued'"
        arguments: list[str] = [_iso(now), _iso(now)]
        if lesson_ids:
            query += f" AND lesson_id IN ({','.join('?' * len(lesson_ids))})"
            arguments += lesson_ids
        return self._db.execute(query, arguments).rowcount


@dataclass(frozen=True)
class Manners:
    """How uploads share the school's uplink."""

    rate_bytes: int = 0  # bytes/s, 0: no cap
    window: tuple[dt.time, dt.time] | None = None  # daily, may wrap past midnight
    pause_while_live: bool = True
    retry_base: float = 30.0
    retry_max: float = 3600.0

    def in_window(self, local: dt.datetime) -> bool:
        if self.window is None:
            return True
        start, end = self.window
        now = local.timetz().replace(tzinfo=None)
        return start <= now < end if start <= end else (now >= start or now < end)

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: doubling, capped, with jitter so that
        many mini-PCs do not come back to a restarted server all at once."""
        ceiling = min(self.retry_max, self.retry_base * 2 ** max(attempts - 1, 0))
        return float(ceiling * random.uniform(0.5, 1.0))


class DiskGuard:
    """Keeps room on the disk for recordings by deleting archived local copies."""

    def __init__(
        self,
        recordings: RecordingStore,
        jobs: ArchiveStore,
        *,
        retention: dt.timedelta,
        min_free_bytes: int,
        free_bytes: Callable[[], int] | None = None,
    ) -> None:
        self.recordings = recordings
        self.jobs = jobs
        self.retention = retention
        self.min_free_bytes = min_free_bytes
        self._free = free_bytes or recordings.free_bytes
        self.free = self._free()
        self.low = False
        self.evicted = 0
        self._said_at: float | None = None

    async def check(self, now: dt.datetime, loop_time: float) -> list[str]:
        """Delete what may go; the lessons whose local copies were deleted. The files are
        deleted in a thread (gigabytes of them are not deleted in an instant) and the free
        space read there too: the event loop, where the media runs, never waits on them."""
        deleted: list[str] = []
        archived = [
            job
            for job in self.jobs.jobs("done")
            if job.evicted_at is None and self.recordings.has_media(job.lesson_id)
        ]
        for job in archived:  # kept long enough after archiving
            if job.archived_at is not None and now - job.archived_at >= self.retention:
                await self._evict(job.lesson_id, now, "kept its days")
                deleted.append(job.lesson_id)
        self.free = await asyncio.to_thread(self._free)
        if self.free < self.min_free_bytes:
            remaining = [job for job in archived if job.lesson_id not in deleted]
            for job in sorted(remaining, key=lambda j: self._started(j.lesson_id)):
                if self.free >= self.min_free_bytes:
                    break
                await self._evict(job.lesson_id, now, "the disk is short")
                deleted.append(job.lesson_id)
                self.free = await asyncio.to_thread(self._free)
        was_low, self.low = self.low, self.free < self.min_free_bytes
        if self.low and (was_low is False or loop_time - (self._said_at or 0) > LOUD_SECONDS):
            self._said_at = loop_time
            logger.error(
                "DISK LOW: %.0f MB free, %.0f MB wanted, and nothing archived is left to delete:"
                " archive the waiting lessons or free space; lessons go on streaming",
                self.free / 1e6,
                self.min_free_bytes / 1e6,
            )
        elif was_low and not self.low:
            logger.warning("disk space is back: %.0f MB free", self.free / 1e6)
        return deleted

    def _started(self, lesson_id: str) -> str:
        record = self.recordings.read(lesson_id)
        return record.planned_start.astimezone(dt.UTC).isoformat() if record else lesson_id

    async def _evict(self, lesson_id: str, now: dt.datetime, why: str) -> None:
        freed = await asyncio.to_thread(self.recordings.delete_media, lesson_id)
        await asyncio.to_thread(self.jobs.update, lesson_id, now, evicted_at=now)
        self.evicted += 1
        logger.info("deleted the local copy of %s (%.1f MB, %s)", lesson_id, freed / 1e6, why)


async def library_problems(
    target: Target, folder: PurePosixPath, files: list[tuple[str, int, str]]
) -> list[str]:
    """What is wrong with a lesson's `files` (name, size, SHA-256) in the library's
    `folder`: an empty list when every one is there, whole."""
    problems = []
    for name, size, digest in files:
        found = await target.verify(folder / name, size=size, sha256=digest)
        if found is not None:
            problems.append(f"library {name}: {found}")
    return problems


class Archiver:
    """Composes, uploads and guards the disk; `start()`/`stop()` own three tasks."""

    def __init__(
        self,
        lessons: LessonStore,
        jobs: ArchiveStore,
        recordings: RecordingStore,
        target: Target | None,
        manners: Manners,
        guard: DiskGuard,
        *,
        clock: Clock,
        zone: dt.tzinfo,
        live: Callable[[], bool],
        composer: Composer | None = None,
    ) -> None:
        self.lessons = lessons
        self.jobs = jobs
        self.recordings = recordings
        self.target = target
        self.manners = manners
        self.guard = guard
        self.clock = clock
        self.zone = zone
        self.live = live
        self.composer = composer if composer is not None and composer.available else None
        if composer is not None and self.composer is None:
            logger.warning("ffmpeg is not installed: lessons get no composed lesson.mp4")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.uploading: str | None = None
        self._sent = 0  # bytes of the current upload at the target
        self.paused: str | None = None  # why uploads wait, for health and status
        self.uploaded_files = 0

    async def start(self) -> None:
        await self._enqueue()
        loop = asyncio.get_running_loop()
        await self.guard.check(self.clock.now(), loop.time())
        self._tasks = [
            supervised("archive-uploads", self._uploads),
            supervised("archive-compose", self._composing),
            supervised("archive-guard", self._guarding),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    def wake(self) -> None:
        """Something changed (a lesson was recorded): look at the queue now."""
        self._wake.set()

    # ------------------------------------------------------------ the queue

    async def _enqueue(self) -> None:
        """A job for every recorded lesson that has files and no job yet."""
        now = self.clock.now()
        for lesson_id in self.jobs.unqueued():
            record = self.recordings.read(lesson_id)
            if record is None or not any(f.size for f in record.media()):
                # nothing recorded (recording off, or closed before the first picture)
                await asyncio.to_thread(self.jobs.add, lesson_id, "empty", now)
                continue
            await asyncio.to_thread(
                self.jobs.add, lesson_id, "composing" if self.composer else "queued", now
            )
            logger.info("lesson %s queued for the library", lesson_id)

    async def _nap(self, seconds: float) -> None:
        """Wait `seconds` of real time, or until woken. Due times are read on the clock;
        only this polling pace is real time, so a manual clock's day replays stay in step
        with the scheduler's (which alone sleeps on it)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # 3.11's wait_for can swallow a cancel
                await self._wake.wait()

    def _hold(self, now: dt.datetime) -> str | None:
        """Why uploads must wait now, or None."""
        if self.target is None:
            return "no library configured ([library] path or remote)"
        if not self.manners.in_window(now.astimezone(self.zone)):
            return "outside the upload window"
        if self.manners.pause_while_live and self.live():
            return "a lesson is live"
        return None

    async def _uploads(self) -> None:
        while True:
            try:
                await self._enqueue()
                now = self.clock.now()
                self.paused = self._hold(now)
                job = self.jobs.due(now) if self.paused is None else None
                if job is None:
                    wait = POLL_SECONDS
                    due = self.jobs.next_due()
                    if due is not None and self.paused is None:
                        wait = min(wait, max((due - now).total_seconds(), 0.05))
                    await self._nap(wait)
                    continue
                await self._attempt(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad lesson stop the queue
                logger.exception("archive queue")
                await self._nap(POLL_SECONDS)

    async def _attempt(self, job: Job) -> None:
        record = self.recordings.read(job.lesson_id)
        now = self.clock.now()
        if record is None:
            await asyncio.to_thread(
                self.jobs.update,
                job.lesson_id,
                now,
                state="queued",
                last_error="lesson.json missing",
                next_try=now + dt.timedelta(seconds=self.manners.retry_max),
            )
            return
        folder = lesson_folder(record, self.zone)
        media = [f for f in record.media() if f.size]
        total = sum(f.size for f in media)
        await asyncio.to_thread(
            self.jobs.update,
            job.lesson_id,
            now,
            state="uploading",
            folder=str(folder),
            bytes_total=total,
            bytes_done=0,
        )
        self.uploading = job.lesson_id
        sending = asyncio.create_task(self._send(job.lesson_id, folder, media, total))
        self._sent = 0
        try:
            while not sending.done():
                await asyncio.wait({sending}, timeout=PROGRESS_SECONDS)
                await asyncio.to_thread(
                    self.jobs.update, job.lesson_id, self.clock.now(), bytes_done=self._sent
                )
                why = self._hold(self.clock.now())
                if why is not None and not sending.done():
                    sending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sending
                    await asyncio.to_thread(
                        self.jobs.update, job.lesson_id, self.clock.now(), state="queued"
                    )
                    logger.info("upload of %s paused: %s", job.lesson_id, why)
                    return
            sending.result()
        except (UploadError, OSError, ValueError) as exc:
            attempts = job.attempts + 1
            wait = self.manners.backoff(attempts)
            await asyncio.to_thread(
                self.jobs.update,
                job.lesson_id,
                self.clock.now(),
                state="queued",
                attempts=attempts,
                last_error=str(exc),
                next_try=self.clock.now() + dt.timedelta(seconds=wait),
            )
            logger.warning(
                "upload of %s failed (attempt %d): %s; again in %.0f s",
                job.lesson_id,
                attempts,
                exc,
                wait,
            )
            return
        finally:
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            self.uploading = None
        await self._archived(job.lesson_id, folder)

    async def _send(
        self, lesson_id: str, folder: PurePosixPath, media: list[MediaFile], total: int
    ) -> None:
        local = self.recordings.folder(lesson_id)
        done = 0

        def progress(sent: int) -> None:  # from the copying thread: only note it
            self._sent = min(done + sent, total)

        target = self.target_or_fail()
        found = await target.read_small(folder / RECORD)
        owner = owner_of(found) if found is not None else None
        if found is not None and owner != lesson_id:  # never write into another lesson
            raise UploadError(
                f"{target.describe()}: {folder} already holds lesson {owner or '(unreadable)'}; "
                "nothing replaced"
            )
        for entry in media:
            path = local / entry.name
            if not path.is_file():
                raise UploadError(f"{path}: missing locally (deleted by hand?)")
            await self.target_or_fail().upload(
                path,
                folder / entry.name,
                size=entry.size,
                sha256=entry.sha256,
                progress=progress,
                rate_bytes=self.manners.rate_bytes,
            )
            done += entry.size
            self.uploaded_files += 1
        record_path = local / RECORD  # last: its presence says the lesson is whole
        digest = await asyncio.to_thread(file_sha256, record_path)
        await self.target_or_fail().upload(
            record_path,
            folder / RECORD,
            size=record_path.stat().st_size,
            sha256=digest,
            progress=lambda _: None,
            rate_bytes=self.manners.rate_bytes,
        )
        # `archive verify` before the lesson counts as archived (and may leave this disk)
        files = [(m.name, m.size, m.sha256) for m in media]
        files.append((RECORD, record_path.stat().st_size, digest))
        problems = await library_problems(target, folder, files)
        if problems:
            raise UploadError("checked after the upload: " + "; ".join(problems))
        await asyncio.to_thread(self.jobs.update, lesson_id, self.clock.now(), bytes_done=total)

    def target_or_fail(self) -> Target:
        if self.target is None:
            raise UploadError("no library configured")
        return self.target

    async def _archived(self, lesson_id: str, folder: PurePosixPath) -> None:
        now = self.clock.now()
        await asyncio.to_thread(
            self.jobs.update, lesson_id, now, state="done", archived_at=now, last_error=""
        )
        lesson = self.lessons.get(lesson_id)
        if lesson is not None and lesson.state == "recorded":
            with contextlib.suppress(TransitionError):  # synced: in a thread, off the loop
                await asyncio.to_thread(
                    self.lessons.move, lesson, "archived", now, f"library: {folder}"
                )
        logger.info("lesson %s archived to %s", lesson_id, folder)
        await self.guard.check(now, asyncio.get_running_loop().time())

    # ------------------------------------------------------------ composing, the disk

    async def _composing(self) -> None:
        while True:
            try:
                await self._compose_next()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad lesson stop the composing
                logger.exception("composing")
                await self._nap(POLL_SECONDS)

    async def _compose_next(self) -> None:
        waiting = self.jobs.jobs("composing")
        if not waiting:
            await self._nap(POLL_SECONDS)
            return
        job = waiting[0]
        record = self.recordings.read(job.lesson_id)
        if record is not None and self.composer is not None:
            folder = self.recordings.folder(job.lesson_id)
            try:
                record.composed = await self.composer.compose(folder, record)
                self.recordings.write(record)
                logger.info("lesson %s: lesson.mp4 composed", job.lesson_id)
            except asyncio.CancelledError:
                raise  # shutdown: composed again at the next start
            except Exception as exc:  # no composed copy; the sources still go
                logger.warning("lesson %s: no lesson.mp4: %s", job.lesson_id, exc)
        await asyncio.to_thread(self.jobs.update, job.lesson_id, self.clock.now(), state="queued")
        self.wake()

    async def _guarding(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(GUARD_SECONDS)
            await self.guard.check(self.clock.now(), loop.time())

    def health(self) -> dict[str, object]:
        jobs = self.jobs.jobs("composing", "queued", "uploading")
        now = self.clock.now()
        oldest = min((j.created_at for j in jobs), default=None)
        failing = [j for j in jobs if j.attempts]
        return {
            "target": self.target.describe() if self.target else None,
            "waiting": len(jobs),
            "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None,
            "failing": len(failing),
            "last_error": failing[-1].last_error if failing else None,
            "uploading": self.uploading,
            "paused": self.paused,
            "disk_free_mb": round(self.guard.free / 1e6),
            "disk_low": self.guard.low,
        }
