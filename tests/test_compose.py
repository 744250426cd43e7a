"""The archive's composing never competes with a live lesson: ffmpeg runs at nice 19 in
the idle scheduling class (the CPU only when nothing else wants it) with idle I/O."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import sys
from pathlib import Path

import av
import pytest

from edge.recording.compose import Composer
from edge.recording.recordings import PRESENTATION, LessonRecord, MediaFile, Part

# stands in for ffmpeg: says how it was scheduled, leaves an output that is no video
FAKE_FFMPEG = f"""#!{sys.executable}
import json, os, subprocess, sys
io = subprocess.run(["ionice", "-p", str(os.getpid())], capture_output=True, text=True)
report = {{"policy": os.sched_getscheduler(0), "nice": os.nice(0), "io": io.stdout.strip()}}
with open(os.environ["SCHEDULING_REPORT"], "w") as out:
    json.dump(report, out)
open(sys.argv[-1], "wb").close()
"""


def lesson(folder: Path) -> LessonRecord:
    (folder / "presentation.mp4").write_bytes(b"\0" * 100)
    start = dt.datetime(2026, 12, 5, 7, 0, tzinfo=dt.UTC)
    board = MediaFile(name="presentation.mp4", kind=PRESENTATION, tracks=["board"], size=100)
    return LessonRecord.model_validate(
        {
            "lesson": "l1", "room": "r1", "kind": "lesson", "school": "s", "class": "6A",
            "subject": "Toán", "teacher": "t", "period": 1, "session": None,
            "planned_start": start, "planned_end": None,
            "parts": [Part(number=1, start=start, files=[board])],
        }
    )  # fmt: skip


@pytest.mark.parametrize(("nice", "idle"), [(19, True), (10, False)])
async def test_composing_takes_only_spare_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nice: int, idle: bool
) -> None:
    binary = tmp_path / "ffmpeg"
    binary.write_text(FAKE_FFMPEG)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    report = tmp_path / "scheduling.json"
    monkeypatch.setenv("SCHEDULING_REPORT", str(report))
    composer = Composer(nice=nice, binary=str(binary))
    with pytest.raises(av.error.InvalidDataError):  # the fake's output is no video
        await composer.compose(tmp_path, lesson(tmp_path))
    seen = json.loads(report.read_text())
    assert seen["nice"] == min(os.nice(0) + nice, 19), seen
    assert (seen["policy"] == os.SCHED_IDLE) is idle, seen
    assert seen["io"].startswith("idle"), seen
    assert not (tmp_path / "lesson.mp4").exists()
