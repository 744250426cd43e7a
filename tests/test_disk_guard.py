"""The disk guard on a real, small file system (a 64 MB tmpfs the test mounts): archived
lessons go oldest first, lessons not yet archived are never touched, and a disk that
stays short is said loudly."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.recording.archive import ArchiveStore, DiskGuard
from edge.recording.recordings import RecordingStore
from edge.school.lessons import LessonStore
from tests.test_archive import ZONE, recorded_lesson

MB = 1_000_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_archived_lessons_go_oldest_first_and_unarchived_ones_stay(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lessons = LessonStore(small_disk / "lessons.db")
    jobs = ArchiveStore(small_disk / "lessons.db")
    recordings = RecordingStore(small_disk / "recordings", ZONE)
    # five lessons of 8 MB (two files of 4 MB): the first and the last are not archived
    records = [recorded_lesson(lessons, recordings, n, size=4 * MB) for n in range(5)]
    now = dt.datetime(2026, 11, 26, 9, 0, tzinfo=ZONE)
    # archived newest first: what counts is when the lessons were, not the queue's order
    for order, record in enumerate(reversed(records[1:4])):
        jobs.add(record.lesson, "queued", now + dt.timedelta(seconds=order))
        jobs.update(record.lesson, now, state="done", archived_at=now)
    jobs.add(records[4].lesson, "queued", now)  # waiting for the library
    free = recordings.free_bytes()
    assert 15 * MB < free < 30 * MB, free  # 64 MB less 40 MB of lessons (and the database)

    guard = DiskGuard(
        recordings, jobs, retention=dt.timedelta(days=30), min_free_bytes=free + 12 * MB
    )
    deleted = await guard.check(now, loop_time=0.0)
    assert deleted == [records[1].lesson, records[2].lesson]  # the two oldest archived
    assert not guard.low and guard.free >= free + 12 * MB
    for record in records:
        kept = recordings.has_media(record.lesson)
        assert kept == (record not in records[1:3]), record.lesson
        assert recordings.read(record.lesson) is not None  # lesson.json stays, as the record
    job = jobs.get(records[1].lesson)
    assert job is not None and job.evicted_at == now

    # the threshold out of reach: the last archived one goes, the unarchived stay; loudly
    guard.min_free_bytes = 63 * MB
    with caplog.at_level(logging.ERROR, logger="edge.recording.archive"):
        assert await guard.check(now, loop_time=1.0) == [records[3].lesson]
    assert guard.low
    assert recordings.has_media(records[0].lesson) and recordings.has_media(records[4].lesson)
    assert any("DISK LOW" in r.getMessage() for r in caplog.records), caplog.records
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="edge.recording.archive"):
        await guard.check(now, loop_time=2.0)  # said once, then again only every few minutes
    assert not [r for r in caplog.records if "DISK LOW" in r.getMessage()]


async def test_local_copies_go_after_their_retention(tmp_path: Path) -> None:
    lessons = LessonStore(tmp_path / "lessons.db")
    jobs = ArchiveStore(tmp_path / "lessons.db")
    recordings = RecordingStore(tmp_path / "recordings", ZONE)
    old, recent = (recorded_lesson(lessons, recordings, n, size=1000) for n in range(2))
    now = dt.datetime(2026, 12, 30, 9, 0, tzinfo=ZONE)
    for record, days in ((old, 31), (recent, 29)):
        archived = now - dt.timedelta(days=days)
        jobs.add(record.lesson, "queued", archived)
        jobs.update(record.lesson, archived, state="done", archived_at=archived)
    guard = DiskGuard(recordings, jobs, retention=dt.timedelta(days=30), min_free_bytes=0)
    assert await guard.check(now, 0.0) == [old.lesson]
    assert not recordings.has_media(old.lesson) and recordings.has_media(recent.lesson)


def test_a_short_disk_is_said_on_the_console_and_in_metrics_and_lessons_go_on(
    tmp_path: Path,
) -> None:
    import httpx

    from tests.conftest import run_service, write_site

    site = 'school = "Trường Thử"\n[recordings]\nmin_free_mb = 10000000\n'  # 10 TB
    room = 'class = "6A1"\n[camera]\nkind = "test"\n[mic]\nkind = "test"\n'
    config = write_site(tmp_path, {"r1": room}, site)
    with run_service(tmp_path, ["--config", str(config)]) as service:
        api = f"{service.base}/api/rooms/r1/lesson"
        started = httpx.post(api, json={"minutes": 5}, timeout=10)
        assert started.status_code == 201, started.text
        state = httpx.get(api, timeout=10).json()
        assert state["live"] is not None and state["recording"] == started.json()["id"]
        assert any(w.startswith("Ổ đĩa sắp đầy") for w in state["warnings"]), state
        metrics = httpx.get(f"{service.base}/metrics", timeout=10).text
        assert "classroom_edge_disk_low 1.0" in metrics
        health = service.health()
        assert health["status"] == "ok" and health["warnings"], health  # streaming goes on
    assert "DISK LOW" in service.log.read_text()


def test_recording_pauses_before_the_disk_is_full_and_resumes(tmp_path: Path) -> None:
    import json
    import time

    import httpx

    from tests.conftest import run_service, write_site
    from tests.whep_client import eventually_sync

    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the CI runs as root)")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        site = 'school = "Trường Thử"\n[recordings]\nstop_below_mb = 30\nmin_free_mb = 30\n'
        room = 'class = "6A1"\nalways_live = true\n[camera]\nkind = "test"\n[mic]\nkind = "test"\n'
        config = write_site(tmp_path, {"r1": room}, site)
        filler = data / "filler"
        with run_service(tmp_path, ["--config", str(config)]) as service:
            free = shutil.disk_usage(data).free
            filler.write_bytes(b"\0" * (free - 30 * MB - MB // 2))  # 0.5 MB above the floor
            api = f"{service.base}/healthz"

            def recorder() -> dict[str, object]:
                rooms = httpx.get(api, timeout=10).json()["rooms"]
                state: dict[str, object] = rooms["r1"]["recorder"]
                return state

            assert eventually_sync(lambda: bool(recorder()["error"]), 40), recorder()
            paused = shutil.disk_usage(data).free
            assert paused > 25 * MB, paused  # stopped near the floor, never at a full disk
            assert "nearly full" in str(recorder()["error"])
            assert httpx.get(api, timeout=10).json()["rooms"]["r1"]["live"]  # streams on
            time.sleep(3)
            assert shutil.disk_usage(data).free >= paused - 1 * MB  # nothing more written
            filler.unlink()  # space again: a new part begins
            assert eventually_sync(lambda: recorder()["part"] == 2 and not recorder()["error"], 40)
        record = json.loads(next((data / "recordings").glob("*/lesson.json")).read_text())
        assert (
            record["parts"][0]["ended"] == "failed" and "nearly full" in record["parts"][0]["error"]
        )
        assert record["parts"][0]["files"][0]["size"] > 100_000
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
