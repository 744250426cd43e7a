"""`classroom-edge drill ROOM`: the room self-test, once a year and after any change.

Each check is a `Step` with a status (pass / warn / fail), the measured value and a
message in Vietnamese and English. The devices are measured for a few seconds, the
encoders against real time, the library with a probe file, the clock, the STUN/TURN
servers; then a mini-lesson runs the room's real sources and encoders in a throwaway
in-process service on 127.0.0.1, with one aiortc viewer that decodes, and records it.
The report goes to `<data dir>/drills/<room>-<YYYY-MM-DD-HHMM>.txt` and `.json`.

What lives where (each module imports only those listed before it, never a later one):
- `report`: `Step`, `Status`, `worst`, `DrillReport`, where it is saved and how;
- `devices`: the room's devices are free, each source's rate, the encoders' shares;
- `host`: the library takes a probe file, the disk's hours of recording, the clock;
- `network`: the STUN exchange, each ICE URL, TURN allocation with minted credentials;
- `loopback`: the viewer of the mini-lesson in its own process (`webrtc.viewer`);
- `lesson`: the mini-lesson (`drill_config`, `MiniLesson`), its video, audio and
  recording steps, `decode_file`;
- here: `run_drill` (every step in order) and `main` (the command).
The drill is the top of `edge`: it may import every layer of `edge` (`ops` is the top
layer), `webrtc` and `capture`; nothing imports it but `edge.ops.cli` and the tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

from edge.config.settings import Config

from .devices import (
    check_devices,
    check_devices_free,
    check_encoders,
    encoder_shares,
    expected_rate,
    room_sources,
)
from .host import check_clock, check_disk, check_library, recorded_bytes_per_second
from .lesson import MiniLesson, decode_file, drill_config, run_mini_lesson
from .network import (
    check_ice_servers,
    check_ice_url,
    check_turn_allocation,
    check_turn_credentials,
)
from .report import (
    DrillError,
    DrillReport,
    Progress,
    Status,
    Step,
    report_paths,
    save_report,
    worst,
)

__all__ = [
    "MIN_SECONDS",
    "DrillError",
    "DrillReport",
    "MiniLesson",
    "Progress",
    "Status",
    "Step",
    "check_clock",
    "check_devices",
    "check_devices_free",
    "check_disk",
    "check_encoders",
    "check_ice_servers",
    "check_ice_url",
    "check_library",
    "check_turn_allocation",
    "check_turn_credentials",
    "decode_file",
    "drill_config",
    "encoder_shares",
    "expected_rate",
    "main",
    "recorded_bytes_per_second",
    "report_paths",
    "room_sources",
    "run_drill",
    "run_mini_lesson",
    "save_report",
    "worst",
]

MIN_SECONDS = 5  # the shortest mini-lesson `--seconds` takes


def _workdir(data_dir: Path, room: str) -> Path:
    drills = data_dir / "drills"
    try:
        drills.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".lesson-{room}-", dir=drills))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"classroom-edge-drill-{room}-"))


async def run_drill(config: Config, room: str, *, seconds: int, progress: Progress) -> DrillReport:
    """Run every check of `room` in order, calling `progress` with each step's line."""
    settings = config.rooms[room]
    report = DrillReport(
        config.site.school,
        room,
        settings.class_name,
        config.zone,
        seconds,
        dt.datetime.now(dt.UTC),
    )

    def done(*steps: Step) -> None:
        for step in steps:
            report.steps.append(step)
            progress(step.line())

    free = check_devices_free(config, room)
    done(free)
    devices_ok = free.status != "fail"
    if devices_ok:
        device_steps, captured = await check_devices(settings)
        done(*device_steps)
        done(await check_encoders(settings, captured))
        captured.clear()
    done(await check_library(config.site.library, config.site.data_dir))
    done(await asyncio.to_thread(check_clock, config.zone))
    done(*await check_ice_servers(config.site.webrtc.ice_servers))
    done(*await check_turn_credentials(config))
    rate = None
    if devices_ok:
        progress(f"  tiết thử · mini-lesson: {seconds} s ...")
        workdir = _workdir(config.site.data_dir, room)
        try:
            result = await run_mini_lesson(config, room, seconds, workdir, progress)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        done(*result.steps)
        rate = result.bytes_per_second
    done(await asyncio.to_thread(check_disk, config, room, rate))
    report.finished = dt.datetime.now(dt.UTC)
    return report


def main(config: Config, room: str, *, seconds: int, output: Path | None) -> int:
    """The `drill` command: progress on stderr, the report on stdout; 0 when nothing failed.
    In a terminal, where both show, the steps are not printed twice: the progress is the
    report, and only its conclusion follows."""
    one_screen = sys.stdout.isatty() and sys.stderr.isatty()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    print(
        f"classroom-edge drill: {config.site.school}, room {room} "
        f"(about {seconds + 15} s; the room's lessons are not disturbed)",
        file=sys.stderr,
        flush=True,
    )
    report = asyncio.run(run_drill(config, room, seconds=seconds, progress=progress))
    print(f"\n{report.verdict()}" if one_screen else report.text())
    try:
        text_path, json_path = save_report(report, config.site.data_dir, output)
    except OSError as exc:
        print(f"classroom-edge: cannot save the report: {exc}", file=sys.stderr)
        return 1
    print(f"Đã lưu báo cáo · report saved: {text_path} ({json_path.name})")
    return 0 if report.passed else 1
