"""A busy database never freezes a watching pupil: while another program (the CLI, a
backup) holds lessons.db's write lock for 5 s, a pupil joins and leaves and another keeps
watching; the picture goes on, and the join and the leave are written once the lock
is gone (attendance has a writer thread of its own)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from tests.conftest import run_service
from tests.whep_client import Viewer, eventually

HOLD_SECONDS = 5.0


async def test_a_locked_database_does_not_freeze_the_picture(tmp_path: Path) -> None:
    with run_service(tmp_path, ["--demo"]) as service:
        token = service.token()
        watcher = Viewer(service.whep(), token, video_lines=1, audio=False)
        assert (await watcher.connect()).status_code == 201
        camera = watcher.stats["camera"]
        try:
            assert await eventually(lambda: camera.frames >= 30, 20)

            watched_from = time.monotonic()
            other = sqlite3.connect(service.data_dir / "lessons.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # the write lock, held as a slow writer would
            locked_at = time.monotonic()
            joiner = Viewer(service.whep(), token, video_lines=1, audio=False)
            assert (await joiner.connect()).status_code == 201
            assert await eventually(lambda: joiner.stats["camera"].frames >= 5, 10)
            assert joiner.location is not None
            session_id = joiner.location.rsplit("/", 1)[1]
            await joiner.close()  # joined and left, both to be written
            await asyncio.sleep(max(0.0, HOLD_SECONDS - (time.monotonic() - locked_at)))
            held = time.monotonic() - locked_at
            other.execute("ROLLBACK")
            other.close()
            await asyncio.sleep(1)
            gaps = camera.gaps(watched_from, time.monotonic())
        finally:
            await watcher.close()

        def written() -> bool:
            with sqlite3.connect(service.data_dir / "lessons.db") as db:
                row = db.execute(
                    "SELECT left_at FROM presence WHERE session_id = ?", (session_id,)
                ).fetchone()
            return row is not None and row[0] is not None

        assert await eventually(written, 15)  # the writer thread caught up after the lock
    print(f"lock held {held:.1f} s; camera frames {len(gaps) + 1}, largest gap "
          f"{max(gaps) * 1000:.0f} ms")  # fmt: skip
    assert held >= HOLD_SECONDS
    assert max(gaps) < 1.0, max(gaps)  # no freeze (a write on the loop waited up to 10 s)
