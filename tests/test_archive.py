"""The archive queue on real SQLite against real targets: Debian's `rclone serve webdav`
on loopback (through `RcloneTarget`, i.e. the rclone command) and a directory.

Lessons here are recorded lessons as the recorder leaves them (lesson.json, files with
their SHA-256), with random bytes for media: what is tested is that each arrives whole,
exactly once, through outages and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.recording.archive import Archiver, ArchiveStore, DiskGuard, Manners
from edge.recording.library import DirectoryTarget, RcloneTarget, Target, UploadError, lesson_folder
from edge.recording.recordings import LessonRecord, MediaFile, Part, RecordingStore
from edge.school.clock import SystemClock
from edge.school.lessons import Lesson, LessonStore
from edge.school.scheduler import lesson_id
from tests.conftest import cli, free_port, write_site
from tests.whep_client import eventually

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
RCLONE = shutil.which("rclone")
needs_rclone = pytest.mark.skipif(RCLONE is None, reason="needs Debian's rclone (README)")


def recorded_lesson(
    lessons: LessonStore,
    recordings: RecordingStore,
    number: int,
    size: int = 300_000,
    extra_at: dt.datetime | None = None,
) -> LessonRecord:
    """A lesson in `recorded` with two media files of random bytes and its lesson.json:
    tiết `number + 1` of a morning, or an extra lesson a teacher started at `extra_at`."""
    start = dt.datetime(2026, 11, 25, 7, 0, tzinfo=ZONE) + dt.timedelta(minutes=50 * number)
    start = extra_at or start
    lesson = Lesson(
        id=lesson_id("r1", start, ZONE, seconds=extra_at is not None),
        room="r1",
        kind="adhoc" if extra_at else "timetable",
        class_name="6A1",
        subject="Tiết học thêm"
        if extra_at
        else ["Toán", "Ngữ văn", "Tiếng Anh", "Tin học", "Lịch sử"][number % 5],
        teacher="Nguyễn Thị Lan",
        period=None if extra_at else number + 1,
        session=None if extra_at else "morning",
        start=start,
        end=start + dt.timedelta(minutes=45),
        ends_at=None,
    )
    lessons.add(lesson, start)
    for state in ("warming", "live", "closing", "recorded"):
        lesson = lessons.move(lesson, state, start)
    record = LessonRecord.for_lesson(lesson, "Trường Thử")
    folder = recordings.folder(lesson.id)
    folder.mkdir(parents=True)
    files = []
    for kind in ("presenter", "presentation"):
        data = os.urandom(size)
        (folder / f"{kind}.mp4").write_bytes(data)
        files.append(
            MediaFile(
                name=f"{kind}.mp4",
                kind=kind,
                size=size,
                sha256=hashlib.sha256(data).hexdigest(),
                duration=2700,
            )
        )
    end = start + dt.timedelta(minutes=45)
    record.parts = [Part(number=1, start=start, end=end, ended="closed", files=files)]
    record.state = "complete"
    recordings.write(record)
    return record


class Queue:
    """An archiver over a data dir, as the service builds it; `restart()` is a new process."""

    def __init__(self, data: Path, target: Target, manners: Manners, live: list[bool]) -> None:
        self.data, self.target, self.manners, self.live = data, target, manners, live
        self.open()

    def open(self) -> None:
        self.lessons = LessonStore(self.data / "lessons.db")
        self.jobs = ArchiveStore(self.data / "lessons.db")
        self.recordings = RecordingStore(self.data / "recordings", ZONE)
        guard = DiskGuard(
            self.recordings, self.jobs, retention=dt.timedelta(days=30), min_free_bytes=0
        )
        self.archiver = Archiver(
            self.lessons,
            self.jobs,
            self.recordings,
            self.target,
            self.manners,
            guard,
            clock=SystemClock(),
            zone=ZONE,
            live=lambda: self.live[0],
        )

    async def close(self) -> None:
        await self.archiver.stop()
        self.jobs.close()
        self.lessons.close()

    async def restart(self) -> None:
        await self.close()
        self.open()
        await self.archiver.start()

    def archived(self, record: LessonRecord) -> bool:
        job = self.jobs.get(record.lesson)
        return job is not None and job.state == "done"


@contextlib.contextmanager
def webdav(root: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    assert RCLONE is not None
    server = subprocess.Popen(
        [RCLONE, "serve", "webdav", str(root), "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(10)


def rclone_target(tmp_path: Path, port: int) -> RcloneTarget:
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[lib]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\n")
    return RcloneTarget("lib:thu-vien", config=conf)


def library_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@contextlib.asynccontextmanager
async def running(queue: Queue) -> AsyncIterator[Queue]:
    await queue.archiver.start()
    try:
        yield queue
    finally:
        await queue.close()


@needs_rclone
async def test_webdav_outage_and_a_restart_every_lesson_arrives_exactly_once(
    tmp_path: Path,
) -> None:
    port, served = free_port(), tmp_path / "served"
    served.mkdir()
    manners = Manners(retry_base=0.3, retry_max=1.0)
    queue = Queue(tmp_path / "data", rclone_target(tmp_path, port), manners, [False])
    first = [recorded_lesson(queue.lessons, queue.recordings, n) for n in range(2)]
    with webdav(served, port) as server:
        async with running(queue):
            assert await eventually(lambda: all(queue.archived(r) for r in first), 60)
            before = {p: p.stat().st_mtime_ns for p in served.rglob("*") if p.is_file()}
            assert len(before) == 6  # two lessons: two media files and lesson.json each

            server.terminate()  # the school's server goes away ...
            server.wait(10)
            later = [recorded_lesson(queue.lessons, queue.recordings, n) for n in range(2, 4)]
            queue.archiver.wake()

            def failed(times: int) -> bool:
                return all(
                    (job := queue.jobs.get(r.lesson)) and job.attempts >= times for r in later
                )

            assert await eventually(lambda: failed(1), 60)
            job = queue.jobs.get(later[0].lesson)
            # queued for its retry, or (0.3 s later, on a busy machine) already retrying
            assert job is not None and job.state in ("queued", "uploading"), job
            assert "connection refused" in job.last_error, job
            await queue.restart()  # ... and the edge restarts meanwhile
            assert await eventually(lambda: failed(2), 30)  # still away: tried again
    with webdav(served, port):  # back, at the same address
        queue.open()
        async with running(queue):
            assert await eventually(lambda: all(queue.archived(r) for r in first + later), 90)
            # nothing more comes: every lesson once
            await asyncio.sleep(1.5)

    every = first + later
    on_server = library_files(served)
    assert len(on_server) == 3 * len(every), sorted(on_server)
    for record in every:
        place = Path("thu-vien") / lesson_folder(record, ZONE)
        for media in record.media():
            assert on_server[str(place / media.name)] == media.sha256, media.name
        assert (served / place / "lesson.json").is_file()
    for path, mtime in before.items():  # archived before the outage: not sent again
        assert path.stat().st_mtime_ns == mtime, path
    lessons = LessonStore(tmp_path / "data" / "lessons.db")
    assert {lessons.get(r.lesson).state for r in every} == {"archived"}  # type: ignore[union-attr]
    jobs = ArchiveStore(tmp_path / "data" / "lessons.db")
    assert all(j.state == "done" for j in jobs.jobs()) and len(jobs.jobs()) == len(every)
    assert max(j.attempts for j in jobs.jobs()) >= 2  # it retried, with backoff


async def test_a_directory_target_resumes_checks_and_keeps_to_its_rate(tmp_path: Path) -> None:
    library = tmp_path / "library"
    target = DirectoryTarget(library)
    source = tmp_path / "presenter.mp4"
    data = os.urandom(1_000_000)
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    dest = lesson_folder(
        recorded_lesson(
            LessonStore(tmp_path / "l.db"), RecordingStore(tmp_path / "rec", ZONE), 0, 1000
        ),
        ZONE,
    )
    partial = library.joinpath(*dest.parts) / "presenter.mp4.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:600_000])  # an upload a power cut interrupted
    seen: list[int] = []
    started = time.monotonic()
    await target.upload(
        source,
        dest / "presenter.mp4",
        size=len(data),
        sha256=digest,
        progress=seen.append,
        rate_bytes=200_000,
    )
    took = time.monotonic() - started
    assert seen[0] > 600_000 and seen[-1] == len(data)  # resumed, not restarted
    assert 1.5 <= took < 10, took  # 400 kB left at 200 kB/s
    assert (library.joinpath(*dest.parts) / "presenter.mp4").read_bytes() == data
    assert await target.verify(dest / "presenter.mp4", size=len(data), sha256=digest) is None

    partial.write_bytes(os.urandom(500_000))  # a partial copy gone bad
    (library.joinpath(*dest.parts) / "presenter.mp4").unlink()
    with pytest.raises(UploadError, match="does not match"):
        await target.upload(
            source,
            dest / "presenter.mp4",
            size=len(data),
            sha256=digest,
            progress=lambda _: None,
            rate_bytes=0,
        )
    assert not partial.exists()  # thrown away: the next attempt starts afresh
    await target.upload(
        source,
        dest / "presenter.mp4",
        size=len(data),
        sha256=digest,
        progress=lambda _: None,
        rate_bytes=0,
    )
    assert await target.verify(dest / "presenter.mp4", size=len(data), sha256=digest) is None
    await target.probe()
    assert [p.name for p in library.iterdir()] == ["Trường Thử"]  # the probe cleaned up


async def test_uploads_wait_while_a_lesson_is_live_and_outside_the_window(tmp_path: Path) -> None:
    live = [True]
    queue = Queue(tmp_path / "data", DirectoryTarget(tmp_path / "lib"), Manners(), live)
    record = recorded_lesson(queue.lessons, queue.recordings, 0)
    async with running(queue):
        await asyncio.sleep(1.0)
        assert not queue.archived(record) and queue.archiver.paused == "a lesson is live"
        live[0] = False
        queue.archiver.wake()
        assert await eventually(lambda: queue.archived(record), 20)

    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=ZONE)
    evening = Manners(window=(dt.time(17), dt.time(6, 30)))
    assert not evening.in_window(now)
    assert evening.in_window(now.replace(hour=18)) and evening.in_window(now.replace(hour=5))
    assert not evening.in_window(now.replace(hour=6, minute=30))
    waits = [Manners(retry_base=30, retry_max=3600).backoff(n) for n in (1, 2, 3, 12)]
    assert 15 <= waits[0] <= 30 and 30 <= waits[1] <= 60 and 60 <= waits[2] <= 120
    assert 1800 <= waits[3] <= 3600


def test_archive_status_retry_and_verify_from_the_command_line(tmp_path: Path) -> None:
    site = f'school = "Trường Thử"\n[library]\npath = "{tmp_path / "lib"}"\n'
    config = write_site(tmp_path, {"r1": 'class = "6A1"\n[mic]\nkind = "test"\n'}, site)
    data = tmp_path / "data"
    queue = Queue(data, DirectoryTarget(tmp_path / "lib"), Manners(retry_base=600), [False])
    done, waiting = (recorded_lesson(queue.lessons, queue.recordings, n) for n in range(2))

    async def archive_one() -> None:
        (queue.recordings.folder(waiting.lesson) / "presenter.mp4").rename(tmp_path / "aside")
        async with running(queue):
            assert await eventually(lambda: queue.archived(done), 20)
            assert await eventually(lambda: bool(queue.jobs.get(waiting.lesson).attempts), 20)  # type: ignore[union-attr]

    asyncio.run(archive_one())
    args = ["--config", str(config), "--data-dir", str(data)]
    status = cli("archive", "status", *args)
    assert "1 archived, 1 waiting" in status.stdout, status.stdout
    assert "missing locally" in status.stdout and "attempt 1" in status.stdout, status.stdout
    retried = cli("archive", "retry", waiting.lesson, *args)
    assert retried.stdout.startswith("1 waiting lesson(s) will be sent now"), retried.stdout
    job = ArchiveStore(data / "lessons.db").get(waiting.lesson)
    assert job is not None and job.next_try <= dt.datetime.now(dt.UTC)

    good = cli("archive", "verify", *args)
    assert good.returncode == 0 and f"OK   {done.lesson}" in good.stdout, good.stdout
    copy = next((tmp_path / "lib").rglob("presentation.mp4"))
    copy.write_bytes(b"x" + copy.read_bytes()[1:])  # the library's copy goes bad
    bad = cli("archive", "verify", *args, check=False)
    assert bad.returncode == 1, bad.stdout
    assert f"FAIL {done.lesson}: library presentation.mp4: SHA-256 differs" in bad.stdout


class SilentlyLosing(DirectoryTarget):
    """A library that says yes to one file and keeps nothing of it (a failing NAS)."""

    def __init__(self, root: Path, lose: str) -> None:
        super().__init__(root)
        self.lose, self.lost = lose, 0

    async def upload(self, source: Path, dest: PurePosixPath, **kwargs: Any) -> None:
        if dest.name == self.lose and not self.lost:
            self.lost += 1
            return
        await super().upload(source, dest, **kwargs)


def whole(root: Path, record: LessonRecord) -> bool:
    """The lesson's media and lesson.json, byte for byte, in its library folder."""
    place = root / lesson_folder(record, ZONE)
    return (
        all(
            (place / m.name).is_file()
            and hashlib.sha256((place / m.name).read_bytes()).hexdigest() == m.sha256
            for m in record.media()
        )
        and json.loads((place / "lesson.json").read_text())["lesson"] == record.lesson
    )


async def two_extra_lessons_in_one_minute(
    tmp_path: Path, target: Target, root: Path, library: str
) -> None:
    """Both lessons whole in the library (`root` on disk), `archive verify` agrees
    (`library`: the [library] keys of the same target)."""
    queue = Queue(tmp_path / "data", target, Manners(retry_base=0.3, retry_max=1.0), [False])
    started = dt.datetime(2026, 12, 4, 15, 45, 0, tzinfo=ZONE)
    both = [
        recorded_lesson(queue.lessons, queue.recordings, 0, extra_at=started),
        # ended by mistake, started again 16 s later
        recorded_lesson(
            queue.lessons, queue.recordings, 0, extra_at=started + dt.timedelta(seconds=16)
        ),
    ]
    assert [r.lesson for r in both] == ["r1-20261204-154500", "r1-20261204-154516"]
    async with running(queue):
        assert await eventually(lambda: all(queue.archived(r) for r in both), 60)
    folders = {lesson_folder(r, ZONE) for r in both}
    assert len(folders) == 2, folders
    for record in both:
        assert whole(root, record), lesson_folder(record, ZONE)
    assert len(library_files(root)) == 6
    site = f'school = "Trường Thử"\ndata_dir = "{tmp_path / "data"}"\n[library]\n{library}'
    config = write_site(tmp_path / "site", {"r1": 'class = "6A1"\n[mic]\nkind = "test"\n'}, site)
    verify = cli("archive", "verify", "--config", str(config), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 of 2 archived lesson(s) check out" in verify.stdout, verify.stdout


async def test_two_extra_lessons_in_one_minute_reach_a_directory_library_whole(
    tmp_path: Path,
) -> None:
    root = tmp_path / "thu-vien"
    await two_extra_lessons_in_one_minute(
        tmp_path, DirectoryTarget(root), root, f'path = "{root}"\n'
    )


@needs_rclone
async def test_two_extra_lessons_in_one_minute_reach_webdav_whole(tmp_path: Path) -> None:
    port, served = free_port(), tmp_path / "served"
    served.mkdir()
    with webdav(served, port):
        conf = tmp_path / "rclone.conf"
        library = f'kind = "rclone"\nremote = "lib:thu-vien"\nrclone_config = "{conf}"\n'
        await two_extra_lessons_in_one_minute(
            tmp_path, rclone_target(tmp_path, port), served / "thu-vien", library
        )


async def test_a_folder_of_another_lesson_is_never_written_into(tmp_path: Path) -> None:
    root = tmp_path / "thu-vien"
    queue = Queue(tmp_path / "data", DirectoryTarget(root), Manners(retry_base=30), [False])
    record = recorded_lesson(queue.lessons, queue.recordings, 0)
    place = root / lesson_folder(record, ZONE)
    place.mkdir(parents=True)
    theirs = {"presenter.mp4": b"another lesson's picture", "lesson.json": b'{"lesson": "lab-1"}'}
    for name, data in theirs.items():
        (place / name).write_bytes(data)
    async with running(queue):
        assert await eventually(
            lambda: bool((j := queue.jobs.get(record.lesson)) and j.attempts), 30
        )
        job = queue.jobs.get(record.lesson)
        assert job is not None and job.state == "queued", job
        assert f"{lesson_folder(record, ZONE)} already holds lesson lab-1; nothing replaced" in (
            job.last_error
        )
    for name, data in theirs.items():
        assert (place / name).read_bytes() == data
    assert not (place / "presentation.mp4").exists()


async def test_a_lesson_counts_as_archived_only_once_the_library_holds_it(tmp_path: Path) -> None:
    root = tmp_path / "thu-vien"
    target = SilentlyLosing(root, "presentation.mp4")
    queue = Queue(tmp_path / "data", target, Manners(retry_base=0.3, retry_max=1.0), [False])
    record = recorded_lesson(queue.lessons, queue.recordings, 0)
    async with running(queue):
        assert await eventually(
            lambda: bool((j := queue.jobs.get(record.lesson)) and j.attempts), 30
        )
        job = queue.jobs.get(record.lesson)
        assert job is not None and job.state != "done", job
        assert "checked after the upload: library presentation.mp4: missing" in job.last_error
        assert queue.lessons.get(record.lesson).state == "recorded"  # type: ignore[union-attr]
        assert await eventually(lambda: queue.archived(record), 30)  # the next attempt sends it
    assert target.lost == 1 and whole(root, record)
