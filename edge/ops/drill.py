"""`classroom-edge drill ROOM`: the room self-test, once a year and after any change.

Each check is a `Step` with a status (pass / warn / fail), the measured value and a
message in Vietnamese and English. The devices are measured for a few seconds, the
encoders against real time, the library with a probe file, the clock, the STUN/TURN
servers; then a mini-lesson runs the room's real sources and encoders in a throwaway
in-process service on 127.0.0.1, with one aiortc viewer that decodes, and records it.
The report goes to `<data dir>/drills/<room>-<YYYY-MM-DD-HHMM>.txt` and `.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import aioice.stun
import aioice.turn
import av
import numpy as np
import numpy.typing as npt
import uvicorn
from aioice import stun
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcicetransport import parse_stun_turn_uri

from capture import AudioEncoder, Frame, Source, VideoEncoder, read_timestamp
from capture.timecode import estimate_square
from edge.access.connections import EdgeProtocol
from edge.access.links import room_links
from edge.config.files import write_atomically
from edge.config.settings import (
    Config,
    IceServerSettings,
    LibrarySettings,
    RoomSettings,
    ScreenSource,
    TestVideoSource,
    V4L2Source,
    VideoRendition,
)
from edge.live.room import audio_source, video_source
from edge.live.service import EdgeService, library_target, turn_rest
from edge.recording.library import UploadError
from edge.web.app import create_app
from webrtc import gather_only

Status = Literal["pass", "warn", "fail"]
Progress = Callable[[str], None]

MIN_SECONDS = 5
DEVICE_SECONDS = 3.0  # how long each source is measured
DEVICE_OPEN_SECONDS = 8.0  # how long a device may take to deliver its first frame
RATE_SHARE = 0.9  # a source must deliver this share of its configured rate
ENCODE_FAIL, ENCODE_WARN = 0.8, 0.7  # share of real time the encoders may use
BUSY_MACHINE = 0.25  # other programs' share of the machine worth saying in the report
KEPT_FRAMES = 60  # frames of each video source kept to time the encoders on
STUN_TIMEOUT = 2.0
LIBRARY_TIMEOUT = 120.0
FIRST_PICTURE_SECONDS = 15.0
LESSON_WARMUP = 1.0  # seconds after the first picture left out of the lesson's rates
REPORT_EVERY = 10.0
CLOSE_SECONDS = 30.0  # ending the lesson (its recording closes) may take this long
AUDIO_PACKETS_PER_SECOND = 50.0  # 20 ms Opus packets
AUDIO_RATE = 48000
SERVICE_UNIT = "classroom-edge"

LABELS: dict[Status, tuple[str, str]] = {
    "pass": ("ĐẠT", "PASS"),
    "warn": ("CẢNH BÁO", "WARN"),
    "fail": ("KHÔNG ĐẠT", "FAIL"),
}
SOURCE_NAMES = {"camera": ("Camera", "Camera"), "board": ("Bảng", "Board"), "mic": ("Micro", "Mic")}


class DrillError(RuntimeError):
    """The drill itself could not run a step (the message says why)."""


@dataclass
class Step:
    """One check: its status, what was measured, and what it means in both languages."""

    key: str
    status: Status
    vi: str
    en: str
    value: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        vi, en = LABELS[self.status]
        return f"[{vi} · {en}] {self.vi} · {self.en}"

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "value": self.value,
            "message_vi": self.vi,
            "message_en": self.en,
        }


def worst(*statuses: Status) -> Status:
    order: tuple[Status, ...] = ("pass", "warn", "fail")
    return max(statuses, key=order.index, default="pass")


@dataclass
class DrillReport:
    """The drill's outcome: `passed` when no step failed."""

    school: str
    room: str
    class_name: str
    zone: dt.tzinfo
    seconds: int
    started: dt.datetime
    finished: dt.datetime | None = None
    host: str = field(default_factory=socket.gethostname)
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def verdict(self) -> str:
        warned = sum(s.status == "warn" for s in self.steps)
        ok = sum(s.status == "pass" for s in self.steps)
        if self.passed:
            return (
                f"KẾT LUẬN: PHÒNG {self.room} SẴN SÀNG ({ok} đạt, {warned} cảnh báo) · "
                f"RESULT: ROOM {self.room} READY ({ok} passed, {warned} warning(s))"
            )
        names = ", ".join(s.key for s in self.failed)
        return (
            f"KẾT LUẬN: PHÒNG {self.room} CHƯA SẴN SÀNG: {len(self.failed)} mục không đạt "
            f"({names}) · RESULT: ROOM {self.room} NOT READY: {len(self.failed)} check(s) "
            f"failed ({names})"
        )

    def text(self) -> str:
        start = self.started.astimezone(self.zone)
        end = (self.finished or self.started).astimezone(self.zone)
        lines = [
            "BÁO CÁO KIỂM TRA PHÒNG HỌC · CLASSROOM DRILL REPORT",
            f"Trường · School: {self.school}",
            f"Phòng · Room: {self.room} (lớp · class {self.class_name})",
            f"Thời gian · Time: {start:%d/%m/%Y %H:%M:%S} – {end:%H:%M:%S} ({start:%z})",
            f"Máy · Host: {self.host}",
            f"Tiết thử · Mini-lesson: {self.seconds} s",
            "",
            *(step.line() for step in self.steps),
            "",
            self.verdict(),
            "",
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "school": self.school,
            "room": self.room,
            "class": self.class_name,
            "host": self.host,
            "started": self.started.astimezone(self.zone).isoformat(),
            "finished": (self.finished or self.started).astimezone(self.zone).isoformat(),
            "seconds": self.seconds,
            "passed": self.passed,
            "verdict": self.verdict(),
            "steps": [step.as_json() for step in self.steps],
        }


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------ devices busy


def _service_running(config: Config) -> str | None:
    """Why we think the service is running on this machine, or None."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["systemctl", "is-active", SERVICE_UNIT], capture_output=True, text=True, timeout=5
        )
        if result.stdout.strip() == "active":
            return f"systemd unit {SERVICE_UNIT} is active"
    port = config.site.http.port
    try:
        status, _, body = _http("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)
    except OSError:
        return None
    if status == 200 and b'"status"' in body:
        return f"a classroom-edge service answers on port {port}"
    return None


def _real_devices(settings: RoomSettings) -> list[str]:
    """Sources one process at a time may open (an X11 screen can be grabbed by many)."""
    sources = {"camera": settings.camera, "board": settings.board, "mic": settings.mic}
    return [name for name, s in sources.items() if s and s.kind in ("v4l2", "alsa")]


def check_devices_free(config: Config, room: str) -> Step:
    """The room's V4L2/ALSA/X11 devices can be opened by one process only."""
    devices = _real_devices(config.rooms[room])
    running = _service_running(config)
    if running is None:
        return Step(
            "devices_free",
            "pass",
            "Thiết bị: không có tiến trình nào khác đang giữ",
            "Devices: not held by the service",
            {"service_running": False, "devices": devices},
        )
    if not devices:
        return Step(
            "devices_free",
            "pass",
            "Thiết bị: dịch vụ đang chạy, nhưng nguồn của phòng là nguồn thử nên không xung đột",
            f"Devices: the service is running ({running}); this room's sources are synthetic, "
            "no conflict",
            {"service_running": True, "devices": []},
        )
    names = ", ".join(devices)
    return Step(
        "devices_free",
        "fail",
        f"Thiết bị ({names}) đang bị dịch vụ classroom-edge giữ: hãy chạy "
        f"`systemctl stop {SERVICE_UNIT}`, chạy lại bài kiểm tra, rồi `systemctl start "
        f"{SERVICE_UNIT}`",
        f"Devices ({names}) are held by the running service ({running}): run "
        f"`systemctl stop {SERVICE_UNIT}`, run the drill again, then `systemctl start "
        f"{SERVICE_UNIT}`",
        {"service_running": True, "devices": devices, "why": running},
    )


# ------------------------------------------------------------------ devices


@dataclass
class Captured:
    """What one source delivered while it was measured."""

    times: list[float] = field(default_factory=list)  # capture times (monotonic)
    samples: list[int] = field(default_factory=list)  # audio samples of each frame
    frames: list[tuple[Frame, float]] = field(default_factory=list)  # kept to encode
    size: tuple[int, int] = (0, 0)


def expected_rate(name: str, settings: RoomSettings) -> float:
    """Frames per second a video source must deliver (audio: samples per second)."""
    if name == "mic":
        return float(AUDIO_RATE)
    source = settings.camera if name == "camera" else settings.board
    top = (settings.camera_renditions if name == "camera" else settings.board_renditions)[0]
    if isinstance(source, TestVideoSource):
        return float(source.fps or top.fps)
    if isinstance(source, V4L2Source | ScreenSource):
        return float(source.fps)
    return float(top.fps)


def room_sources(settings: RoomSettings) -> dict[str, Source]:
    """The room's sources, built as the service builds them."""
    sources: dict[str, Source] = {}
    if settings.camera is not None:
        sources["camera"] = video_source("camera", settings.camera, settings.camera_renditions[0])
    if settings.board is not None:
        sources["board"] = video_source("board", settings.board, settings.board_renditions[0])
    if settings.mic is not None:
        sources["mic"] = audio_source(settings.mic)
    return sources


def _measured_rate(captured: Captured, audio: bool) -> float:
    times = captured.times
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    count = sum(captured.samples[:-1]) if audio else len(times) - 1
    return count / (times[-1] - times[0])


async def check_devices(settings: RoomSettings) -> tuple[list[Step], dict[str, Captured]]:
    """For `DEVICE_SECONDS`, each source must deliver ≥ 90 % of its configured rate."""
    sources = room_sources(settings)
    captured = {name: Captured() for name in sources}
    started = time.monotonic()

    def sink_for(name: str) -> Callable[[Frame, float], None]:
        got = captured[name]

        def sink(frame: Frame, captured_at: float) -> None:
            if got.times and captured_at - got.times[0] > DEVICE_SECONDS:
                return
            got.times.append(captured_at)
            if isinstance(frame, av.AudioFrame):
                got.samples.append(frame.samples)
                if len(got.frames) < 100:
                    got.frames.append((frame, captured_at))
            else:
                got.size = (frame.width, frame.height)
                got.frames.append((frame, captured_at))
                del got.frames[:-KEPT_FRAMES]

        return sink

    for name, source in sources.items():
        source.start(sink_for(name))

    def finished(name: str) -> bool:
        times = captured[name].times
        if not times:
            return time.monotonic() - started > DEVICE_OPEN_SECONDS
        return time.monotonic() - times[0] > DEVICE_SECONDS

    try:
        while not all(finished(name) for name in sources):  # noqa: ASYNC110 (threads count)
            await asyncio.sleep(0.1)
    finally:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in sources.values()))
    steps = []
    for name, source in sources.items():
        got, audio = captured[name], name == "mic"
        expected = expected_rate(name, settings)
        rate = _measured_rate(got, audio)
        vi_name, en_name = SOURCE_NAMES[name]
        value: dict[str, Any] = {
            "rate": round(rate, 2),
            "expected": expected,
            "unit": "Hz" if audio else "fps",
            "frames": len(got.times),
        }
        if not audio:
            value["size"] = list(got.size)
        if not got.times:
            error = source.error or "no frames"
            busy = "busy" in error.lower()
            hint_vi = " (thiết bị đang bận: có thể dịch vụ đang chạy)" if busy else ""
            hint_en = " (the device is busy: is the service running?)" if busy else ""
            steps.append(
                Step(
                    f"device.{name}",
                    "fail",
                    f"{vi_name}: không nhận được tín hiệu trong {DEVICE_OPEN_SECONDS:.0f} giây: "
                    f"{error}{hint_vi}",
                    f"{en_name}: nothing within {DEVICE_OPEN_SECONDS:.0f} s: {error}{hint_en}",
                    {**value, "error": error},
                )
            )
            continue
        status: Status = "pass" if rate >= RATE_SHARE * expected else "fail"
        if audio:
            vi = f"{vi_name}: {_f(rate / 1000)} kHz (cần {_f(expected / 1000, 0)} kHz)"
            en = f"{en_name}: {_f(rate / 1000)} kHz (expected {_f(expected / 1000, 0)} kHz)"
        else:
            size = f"{got.size[0]}×{got.size[1]}"
            vi = f"{vi_name}: {_f(rate)} hình/giây (cần {expected:g}), {size}"
            en = f"{en_name}: {_f(rate)} fps (expected {expected:g}), {size}"
        steps.append(Step(f"device.{name}", status, vi, en, value))
    return steps, captured


# ------------------------------------------------------------------ encoders


def _renditions(settings: RoomSettings, name: str) -> list[VideoRendition]:
    return settings.camera_renditions if name == "camera" else settings.board_renditions


def encoder_shares(settings: RoomSettings, captured: dict[str, Captured]) -> dict[str, float]:
    """Each rendition's encoding time per second of lesson (1.0 = all of real time)."""
    shares: dict[str, float] = {}
    for name, got in captured.items():
        if not got.frames:
            continue
        origin = got.frames[0][1]
        if name == "mic":
            encoder = AudioEncoder("mic", bitrate=settings.audio.bitrate_kbps * 1000, origin=origin)
            spent = 0.0
            samples = 0
            for frame, moment in got.frames:
                begin = time.perf_counter()
                encoder.encode(frame, moment)  # type: ignore[arg-type]
                spent += time.perf_counter() - begin
                samples += frame.samples  # type: ignore[union-attr]
            shares["mic"] = spent / max(samples / AUDIO_RATE, 1e-9)
            continue
        for rendition in _renditions(settings, name):
            video = VideoEncoder(
                f"{name}/{rendition.name}",
                width=rendition.width,
                height=rendition.height,
                fps=rendition.fps,
                bitrate=rendition.bitrate_kbps * 1000,
                origin=origin,
                keyframe_interval=rendition.keyframe_interval,
                preset=rendition.preset,
                stills=rendition.stills,
            )
            times, cpu = [], []
            for frame, moment in got.frames:
                if not video.wants(moment):
                    continue
                begin, begin_cpu = time.perf_counter(), time.process_time()
                video.encode(frame, moment)  # type: ignore[arg-type]
                times.append(time.perf_counter() - begin)
                cpu.append(time.process_time() - begin_cpu)
            video.close()
            timed, used = times[1:] or times, cpu[1:] or cpu  # the first frame opens the codec
            if timed:
                # the lesser of real time and this process's CPU time: other programs busy
                # on the machine (the room's own service) slow the clock, not the encoder
                spent = min(statistics.fmean(timed), statistics.fmean(used))
                shares[video.name] = spent * rendition.fps
    return shares


async def check_encoders(settings: RoomSettings, captured: dict[str, Captured]) -> Step:
    """The encoders of every rendition must keep up with real time, with headroom."""
    machine, own = _cpu_ticks(), _own_ticks()
    shares = await asyncio.to_thread(encoder_shares, settings, captured)
    busy = None
    after = _cpu_ticks()
    if machine is not None and after is not None and after[1] > machine[1]:
        others = (after[0] - machine[0]) - (_own_ticks() - own)  # what the drill did not do
        share = others / (after[1] - machine[1])
        busy = share if share > BUSY_MACHINE else None
    if not shares:
        return Step(
            "encoder",
            "fail",
            "Bộ mã hoá: không có hình/tiếng nào để thử",
            "Encoders: no frames to encode (see the device checks)",
        )
    total = sum(shares.values())
    status: Status = "fail" if total > ENCODE_FAIL else "warn" if total > ENCODE_WARN else "pass"
    parts = ", ".join(f"{name} {share * 100:.0f} %" for name, share in shares.items())
    limit = f"{ENCODE_FAIL * 100:.0f} %"
    vi = f"Bộ mã hoá: dùng {total * 100:.0f} % thời gian thực (tối đa {limit}; {parts})"
    en = f"Encoders: use {total * 100:.0f} % of real time (at most {limit}; {parts})"
    if busy is not None:
        vi += f"; máy đang bận {busy * 100:.0f} % vì việc khác (dịch vụ của phòng đang chạy?)"
        en += f"; the machine is {busy * 100:.0f} % busy with other work (the room's service?)"
    return Step(
        "encoder",
        status,
        vi,
        en,
        {
            "share": round(total, 3),
            "renditions": {k: round(v, 3) for k, v in shares.items()},
            "machine_busy": None if busy is None else round(busy, 3),
        },
    )


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _own_ticks() -> int:
    times = os.times()
    return round((times.user + times.system) * os.sysconf("SC_CLK_TCK"))


# ------------------------------------------------------------------ library


async def check_library(library: LibrarySettings, data_dir: Path) -> Step:
    """Write, read back, compare and delete a probe file at the library target."""
    target = library_target(library, data_dir)
    if target is None:
        return Step(
            "library",
            "warn",
            "Kho học liệu: chưa cấu hình, bài ghi chỉ nằm trên máy này",
            "Library: none configured; recordings stay on this mini-PC only",
            {"target": None},
        )
    where = target.describe()
    started = time.monotonic()
    try:
        await asyncio.wait_for(target.probe(), LIBRARY_TIMEOUT)
    except UploadError as exc:
        return Step(
            "library",
            "fail",
            f"Kho học liệu: không ghi được vào {where}: {exc}",
            f"Library: cannot write to {where}: {exc}",
            {"target": where, "error": str(exc)},
        )
    except TimeoutError:
        return Step(
            "library",
            "fail",
            f"Kho học liệu: {where} không trả lời trong {LIBRARY_TIMEOUT:.0f} giây",
            f"Library: {where} did not answer within {LIBRARY_TIMEOUT:.0f} s",
            {"target": where, "error": "timeout"},
        )
    took = time.monotonic() - started
    return Step(
        "library",
        "pass",
        f"Kho học liệu: ghi, đọc lại, so sánh và xoá tệp thử tại {where} ({_f(took, 2)} giây)",
        f"Library: wrote, read back, compared and deleted a probe at {where} ({_f(took, 2)} s)",
        {"target": where, "seconds": round(took, 3)},
    )


# ------------------------------------------------------------------ disk


def recorded_bytes_per_second(settings: RoomSettings) -> float:
    """At the configured bitrates: the camera's top rendition, the mic, the first board
    rendition that is not stills (what `recorded_tracks` puts into the files)."""
    bits = 0
    if settings.camera is not None:
        bits += settings.camera_renditions[0].bitrate_kbps
    if settings.mic is not None:
        bits += settings.audio.bitrate_kbps
    if settings.board is not None:
        boards = [r for r in settings.board_renditions if not r.stills] or settings.board_renditions
        bits += boards[0].bitrate_kbps
    return bits * 1000 / 8


def check_disk(config: Config, room: str, measured_bytes_per_second: float | None) -> Step:
    """Free space of the data dir against the recording thresholds, and hours that fit."""
    site = config.site
    data_dir = site.data_dir
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    usage = shutil.disk_usage(existing)  # the data dir may not exist yet
    free = usage.free
    stop_below = site.recordings.stop_below_mb * 1_000_000
    min_free = site.recordings.min_free_mb * 1_000_000
    recording = site.recordings.enabled and config.rooms[room].record
    rate = measured_bytes_per_second or recorded_bytes_per_second(config.rooms[room])
    hours = max(free - stop_below, 0) / (rate * 3600) if recording and rate > 0 else None
    lesson_hours = site.schedule.max_period_minutes / 60
    value: dict[str, Any] = {
        "free_mb": round(free / 1e6),
        "total_mb": round(usage.total / 1e6),
        "min_free_mb": site.recordings.min_free_mb,
        "stop_below_mb": site.recordings.stop_below_mb,
        "hours": round(hours, 1) if hours is not None else None,
        "bytes_per_second": round(rate),
        "rate_measured": measured_bytes_per_second is not None,
        "path": str(data_dir),
    }
    free_text = f"{free / 1e9:.1f} GB"
    if hours is None:
        fits_vi, fits_en = "phòng này không ghi hình", "this room does not record"
    else:
        how = "đo được" if measured_bytes_per_second else "theo cấu hình"
        how_en = "as measured" if measured_bytes_per_second else "at the configured bitrates"
        fits_vi = f"đủ ghi khoảng {hours:.0f} giờ ({how} {rate * 3.6 / 1e6:.2f} GB/giờ)"
        fits_en = f"about {hours:.0f} h of recording ({how_en}, {rate * 3.6 / 1e6:.2f} GB/h)"
    status: Status = "pass"
    note_vi = note_en = ""
    if free < stop_below or (hours is not None and hours < lesson_hours):
        status = "fail"
        note_vi = f"; dưới {site.recordings.stop_below_mb} MB việc ghi hình sẽ dừng"
        note_en = f"; recording pauses below {site.recordings.stop_below_mb} MB"
    elif free < min_free:
        status = "warn"
        note_vi = f"; dưới {site.recordings.min_free_mb} MB bài đã lưu trữ bị xoá dần"
        note_en = f"; below {site.recordings.min_free_mb} MB archived lessons are deleted"
    return Step(
        "disk",
        status,
        f"Ổ đĩa ({data_dir}): còn trống {free_text}, {fits_vi}{note_vi}",
        f"Disk ({data_dir}): {free_text} free, {fits_en}{note_en}",
        value,
    )


# ------------------------------------------------------------------ clock


def check_clock(zone: dt.tzinfo) -> Step:
    """NTP synchronization as systemd sees it; "unknown" (a container) only warns."""
    now = dt.datetime.now(zone)
    shown = f"{now:%H:%M:%S %d/%m/%Y}"
    answer, why = "unknown", ""
    try:
        result = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
            answer = result.stdout.strip()
        else:
            lines = (result.stderr or result.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit {result.returncode}"
    except FileNotFoundError:
        why = "timedatectl not installed"
    except (OSError, subprocess.SubprocessError) as exc:
        why = str(exc)
    value = {"ntp_synchronized": answer, "local_time": now.isoformat()}
    if answer == "yes":
        return Step(
            "clock",
            "pass",
            f"Đồng hồ: đã đồng bộ NTP (giờ máy {shown})",
            f"Clock: NTP synchronized (local time {shown})",
            value,
        )
    if answer == "no":
        return Step(
            "clock",
            "fail",
            f"Đồng hồ: CHƯA đồng bộ NTP (giờ máy {shown}); tiết học sẽ lệch giờ chuông: "
            "`timedatectl set-ntp true` và kiểm tra máy chủ NTP",
            f"Clock: NOT NTP synchronized (local time {shown}); lessons would miss the bell: "
            "`timedatectl set-ntp true` and check the NTP server",
            value,
        )
    return Step(
        "clock",
        "warn",
        f"Đồng hồ: không rõ đã đồng bộ chưa ({why}); giờ máy {shown}, hãy so với đồng hồ chuẩn",
        f"Clock: sync unknown ({why}); local time {shown}, compare with a reference clock",
        {**value, "why": why},
    )


# ------------------------------------------------------------------ STUN / TURN


async def _stun_exchange(
    request: stun.Message, host: str, port: int, transport: str, within: float
) -> stun.Message:
    """Send `request` and return the answer with its transaction id."""
    data = bytes(request)
    loop = asyncio.get_running_loop()
    if transport == "udp":
        answered: asyncio.Future[bytes] = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, datagram: bytes, addr: tuple[str | Any, int]) -> None:
                if datagram[8:20] == request.transaction_id and not answered.done():
                    answered.set_result(datagram)

            def error_received(self, exc: Exception) -> None:
                if not answered.done():
                    answered.set_exception(exc)

        udp, _ = await loop.create_datagram_endpoint(Receiver, remote_addr=(host, port))
        try:
            async with asyncio.timeout(within):
                wait = 0.25
                while True:  # retransmit, as STUN over UDP does
                    udp.sendto(data)
                    done, _ = await asyncio.wait({answered}, timeout=wait)
                    if done:
                        return stun.parse_message(answered.result())
                    wait *= 2
        finally:
            udp.close()
    context = ssl.create_default_context() if transport == "tls" else None
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        try:
            writer.write(data)
            await writer.drain()
            header = await reader.readexactly(20)
            body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
            return stun.parse_message(header + body)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def check_ice_url(url: str, within: float = STUN_TIMEOUT) -> Step:
    """A STUN Binding request (STUN), or an Allocate without credentials that must get
    a 401 (TURN): either proves the server answers."""
    key = f"ice.{url}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return Step(key, "fail", f"{url}: địa chỉ sai ({exc})", f"{url}: malformed ({exc})")
    scheme, host, port = parsed["scheme"], parsed["host"], int(parsed["port"])
    turn = scheme.startswith("turn")
    transport = "tls" if scheme in ("stuns", "turns") else parsed.get("transport") or "udp"
    kind = "TURN" if turn else "STUN"
    request = stun.Message(
        message_method=stun.Method.ALLOCATE if turn else stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
    )
    if turn:
        request.attributes["REQUESTED-TRANSPORT"] = 0x11000000  # UDP (RFC 8656)
    value: dict[str, Any] = {"url": url, "host": host, "port": port, "transport": transport}
    started = time.monotonic()
    try:
        answer = await _stun_exchange(request, host, port, transport, within)
    except TimeoutError:
        return Step(
            key,
            "fail",
            f"{kind} {url}: không trả lời trong {within:g} giây",
            f"{kind} {url}: no answer within {within:g} s ({transport.upper()})",
            {**value, "error": "timeout"},
        )
    except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as exc:
        error = str(exc) or type(exc).__name__
        return Step(
            key,
            "fail",
            f"{kind} {url}: lỗi {error}",
            f"{kind} {url}: {error}",
            {**value, "error": error},
        )
    rtt = (time.monotonic() - started) * 1000
    value["rtt_ms"] = round(rtt, 1)
    code = answer.error_code
    value["answer"] = answer.message_class.name.lower()
    if not turn and answer.message_class == stun.Class.RESPONSE:
        mapped = answer.attributes.get("XOR-MAPPED-ADDRESS") or answer.attributes.get(
            "MAPPED-ADDRESS"
        )
        seen = f"{mapped[0]}:{mapped[1]}" if mapped else "?"
        value["mapped"] = seen
        return Step(
            key,
            "pass",
            f"STUN {url}: trả lời sau {rtt:.0f} ms (thấy máy này là {seen})",
            f"STUN {url}: answered in {rtt:.0f} ms (sees us as {seen})",
            value,
        )
    if turn and code == 401:
        return Step(
            key,
            "pass",
            f"TURN {url}: trả lời sau {rtt:.0f} ms (đòi mật khẩu, đúng như phải thế)",
            f"TURN {url}: answered in {rtt:.0f} ms (401: asks for credentials, as it should)",
            value,
        )
    if turn and answer.message_class == stun.Class.RESPONSE:
        return Step(
            key,
            "warn",
            f"TURN {url}: cấp relay mà không cần mật khẩu (máy chủ mở cho mọi người)",
            f"TURN {url}: allocated without credentials (an open relay)",
            value,
        )
    value["error_code"] = code
    return Step(
        key,
        "warn",
        f"{kind} {url}: trả lời với lỗi {code}",
        f"{kind} {url}: answered with error {code}",
        value,
    )


async def check_ice_servers(servers: Sequence[IceServerSettings]) -> list[Step]:
    urls = [url for server in servers for url in server.urls]
    if not urls:
        return [
            Step(
                "ice",
                "pass",
                "STUN/TURN: không cấu hình (mạng nội bộ trường)",
                "STUN/TURN: none configured (school LAN)",
                {"urls": []},
            )
        ]
    return list(await asyncio.gather(*(check_ice_url(url) for url in urls)))


async def check_turn_credentials(config: Config) -> list[Step]:
    """With [webrtc.turn]: each URL answers an Allocate with credentials minted from the
    shared secret, as a pupil's browser would (a wrong secret fails here, not in class)."""
    settings = config.site.webrtc.turn
    if settings is None:
        return []
    try:
        minted = turn_rest(config)
    except OSError as exc:
        return [
            Step(
                "turn.secret",
                "fail",
                f"TURN: không đọc được tệp khóa bí mật {settings.secret_file} ({exc})",
                f"TURN: cannot read the secret file {settings.secret_file} ({exc})",
            )
        ]
    assert minted is not None
    server = minted.mint("drill")
    return list(
        await asyncio.gather(
            *(check_turn_allocation(url, server.username, server.credential) for url in server.urls)
        )
    )


async def check_turn_allocation(
    url: str, username: str | None, password: str | None, within: float = 5.0
) -> Step:
    key = f"turn.{url}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return Step(key, "fail", f"{url}: địa chỉ sai ({exc})", f"{url}: malformed ({exc})")
    transport = "tcp" if parsed["scheme"] == "turns" else parsed.get("transport") or "udp"
    value: dict[str, Any] = {"url": url, "transport": transport}
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            relay, _ = await aioice.turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                (str(parsed["host"]), int(parsed["port"])),
                username,
                password,
                ssl=parsed["scheme"] == "turns",
                transport=transport,
            )
    except (TimeoutError, OSError, ssl.SSLError, ValueError, aioice.stun.TransactionError) as exc:
        error = str(exc) or type(exc).__name__
        hint = " (sai khóa bí mật?)" if "401" in error else ""
        return Step(
            key,
            "fail",
            f"TURN {url}: không cấp được địa chỉ chuyển tiếp với mật khẩu tạm thời{hint}: {error}",
            f"TURN {url}: no relay allocated with minted credentials"
            f"{' (wrong secret?)' if hint else ''}: {error}",
            {**value, "error": error},
        )
    address = relay.get_extra_info("sockname")
    relay.close()
    value.update(relay=str(address), ms=round((time.monotonic() - started) * 1000, 1))
    return Step(
        key,
        "pass",
        f"TURN {url}: cấp địa chỉ chuyển tiếp {address} với mật khẩu tạm thời "
        f"({value['ms']:.0f} ms)",
        f"TURN {url}: relay {address} allocated with minted credentials ({value['ms']:.0f} ms)",
        value,
    )


# ------------------------------------------------------------------ loopback viewer


def _http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request that never goes through a proxy (it is to ourselves)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@dataclass
class TrackSummary:
    """What the viewer decoded of one video track during the lesson's window."""

    decoded: int  # frames decoded in all
    frames: int  # frames decoded within the window
    seconds: float  # the window
    latencies_ms: list[float]  # glass-to-glass, from the burned-in clock
    misreads: int
    size: tuple[int, int]


@dataclass
class TrackCounts:
    arrivals: list[float] = field(default_factory=list)  # monotonic, each decoded frame
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival, ms)
    misreads: int = 0
    size: tuple[int, int] = (0, 0)

    def summary(self, begin: float, end: float) -> TrackSummary:
        return TrackSummary(
            decoded=len(self.arrivals),
            frames=sum(1 for t in self.arrivals if begin <= t <= end),
            seconds=end - begin,
            latencies_ms=[ms for t, ms in self.latencies if begin <= t <= end],
            misreads=self.misreads,
            size=self.size,
        )

    def recent_fps(self, span: float) -> float:
        since = time.monotonic() - span
        return sum(1 for t in self.arrivals if t >= since) / span


@dataclass
class ViewerResult:
    tracks: dict[str, TrackSummary]
    audio_packets: int
    seconds: float


def _top_luma(frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
    """The top rows of the luma plane, where the burned-in clock is."""
    rows = min(frame.height, 64)
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12"):
        plane = frame.planes[0]
        data = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
        return np.asarray(data[:rows, : frame.width], np.uint8)
    return np.asarray(frame.to_ndarray(format="gray"), np.uint8)[:rows]


class LoopbackViewer:
    """One aiortc WHEP viewer that decodes the camera and board and counts the sound;
    `start()` posts the offer, `stop()` ends the session."""

    def __init__(self, whep_url: str, token: str, *, clocks: dict[str, bool]) -> None:
        self.whep_url = whep_url
        self.token = token
        self.clocks = clocks  # track -> whether its source burns the capture time
        self.counts = {name: TrackCounts() for name in ("camera", "board", "audio")}
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._transceivers: dict[str, RTCRtpTransceiver] = {}
        self._squares: dict[int, float] = {}  # picture width -> size of the clock's squares

    async def start(self) -> None:
        for name in ("camera", "board"):
            transceiver = self.pc.addTransceiver("video", direction="recvonly")
            capabilities = RTCRtpReceiver.getCapabilities("video")
            assert capabilities is not None
            h264 = ("video/h264", "video/rtx")
            transceiver.setCodecPreferences(
                [c for c in capabilities.codecs if c.mimeType.lower() in h264]
            )
            self._transceivers[name] = transceiver
        self._transceivers["audio"] = self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, headers, body = await asyncio.to_thread(
            _http,
            "POST",
            self.whep_url,
            self.pc.localDescription.sdp.encode(),
            {"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
        )
        if status != 201:
            raise DrillError(f"WHEP POST {self.whep_url}: {status} {body[:200]!r}")
        location = {k.lower(): v for k, v in headers.items()}.get("location", "")
        self.location = urllib.parse.urljoin(self.whep_url, location)
        await self.pc.setRemoteDescription(RTCSessionDescription(body.decode(), "answer"))
        for name, transceiver in self._transceivers.items():
            track = transceiver.receiver.track
            self._tasks.append(asyncio.create_task(self._consume(name, track)))

    async def _consume(self, name: str, track: MediaStreamTrack) -> None:
        counts = self.counts[name]
        every = 1
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                wall, arrived = time.time(), time.monotonic()
                counts.arrivals.append(arrived)
                if not isinstance(frame, av.VideoFrame):
                    continue
                counts.size = (frame.width, frame.height)
                if len(counts.arrivals) == 30:  # about six clock reads a second
                    span = counts.arrivals[-1] - counts.arrivals[0]
                    every = max(1, round(29 / max(span, 1e-3) / 6))
                if self.clocks.get(name) and len(counts.arrivals) % every == 0:
                    luma = _top_luma(frame)
                    square = self._squares.get(frame.width)
                    latency = wall * 1000 - read_timestamp(luma, square)
                    if abs(latency) >= 10_000:  # a new size or a misread: find the squares
                        square = self._squares[frame.width] = estimate_square(luma)
                        latency = wall * 1000 - read_timestamp(luma, square)
                    elif square is None:
                        self._squares[frame.width] = estimate_square(luma)
                    if abs(latency) < 10_000:
                        counts.latencies.append((arrived, latency))
                    else:
                        counts.misreads += 1

    async def audio_packets(self) -> int:
        """RTP packets the audio receiver has received so far."""
        report = await self._transceivers["audio"].receiver.getStats()
        return sum(
            int(getattr(s, "packetsReceived", 0) or 0)
            for s in report.values()
            if getattr(s, "type", "") == "inbound-rtp"
        )

    async def stop(self) -> None:
        if self.location:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_http, "DELETE", self.location, None, None, 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


# ------------------------------------------------------------------ mini-lesson


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drill_config(config: Config, room: str, data_dir: Path) -> Config:
    """The room alone, on a throwaway data dir: no timetable (the drill starts its own
    lesson), no roster, no library (nothing reaches the archive), recording on."""
    site = config.site.model_copy(
        update={
            "data_dir": data_dir,
            "roster": None,
            "library": LibrarySettings.model_validate({}),
            "recordings": config.site.recordings.model_copy(update={"compose": False}),
        }
    )
    settings = config.rooms[room].model_copy(update={"always_live": False, "timetable": None})
    return Config(
        site=site,
        rooms={room: settings},
        path=None,
        demo=config.demo,
        timetables={room: []},
    )


@dataclass
class LessonResult:
    steps: list[Step]
    bytes_per_second: float | None = None


class MiniLesson:
    """An `EdgeService` of the one room on 127.0.0.1 (a free port), its own lesson and
    data dir; `start()` serves and starts the lesson, `stop()` ends all."""

    def __init__(self, config: Config, room: str, data_dir: Path) -> None:
        self.room = room
        self.config = drill_config(config, room, data_dir)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.service = EdgeService(self.config, host="127.0.0.1", port=self.port)
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.service),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                http=EdgeProtocol,  # as `classroom-edge run` serves
                timeout_graceful_shutdown=3,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self.lesson_id: str | None = None

    async def start(self, minutes: float) -> None:
        self._task = asyncio.create_task(self.server.serve(), name="drill-server")
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise DrillError(f"the drill's own service did not start on {self.base_url}")
            await asyncio.sleep(0.05)
        lesson = await self.service.scheduler.start_adhoc(
            self.room, minutes, subject="Kiểm tra phòng", teacher="Tổ CNTT"
        )
        self.lesson_id = lesson.id

    def token(self) -> str:
        links = room_links(
            self.config, self.service.signer, self.service.roster, self.room, self.base_url
        )
        return links[0].token

    async def end_lesson(self) -> None:
        await self.service.scheduler.end_now(self.room)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def video_step(name: str, track: TrackSummary, expected: float, clock: bool) -> Step:
    """Frames per second the viewer decoded, and the glass-to-glass latency."""
    vi_name, en_name = SOURCE_NAMES[name]
    fps = track.frames / track.seconds if track.seconds > 0 else 0.0
    value: dict[str, Any] = {
        "fps": round(fps, 2),
        "expected_fps": expected,
        "size": list(track.size),
        "latency_median_ms": None,
        "latency_p95_ms": None,
    }
    if not track.decoded:
        return Step(
            f"lesson.{name}",
            "fail",
            f"Tiết thử, {vi_name}: người xem không nhận được hình nào",
            f"Mini-lesson, {en_name}: the viewer decoded no picture",
            value,
        )
    share = fps / expected if expected else 0.0
    status: Status = "pass" if share >= RATE_SHARE else "warn" if share >= 0.6 else "fail"
    size = f"{track.size[0]}×{track.size[1]}"
    vi = f"Tiết thử, {vi_name}: {_f(fps)} hình/giây (cần {expected:g}), {size}"
    en = f"Mini-lesson, {en_name}: {_f(fps)} fps received (expected {expected:g}), {size}"
    latencies = track.latencies_ms
    if not clock:
        vi += ", độ trễ: không đo được (camera thật)"
        en += ", latency n/a (no burned-in clock)"
    elif not latencies:
        status = worst(status, "warn")
        vi += ", độ trễ: không đọc được đồng hồ trong hình"
        en += ", latency: could not read the burned-in clock"
    else:
        median, p95 = statistics.median(latencies), _percentile(latencies, 0.95)
        value["latency_median_ms"] = round(median, 1)
        value["latency_p95_ms"] = round(p95, 1)
        value["latency_samples"] = len(latencies)
        frame_ms = 1000 / expected if expected else 0.0
        if median > 1000:
            status = "fail"
        elif median > 150 + frame_ms or p95 > 400 + frame_ms:
            status = worst(status, "warn")
        vi += f", độ trễ trung vị {median:.0f} ms, p95 {p95:.0f} ms"
        en += f", latency median {median:.0f} ms, p95 {p95:.0f} ms"
    return Step(f"lesson.{name}", status, vi, en, value)


def audio_step(packets: int, seconds: float) -> Step:
    rate = packets / seconds if seconds > 0 else 0.0
    share = rate / AUDIO_PACKETS_PER_SECOND
    status: Status = "pass" if share >= RATE_SHARE else "warn" if share >= 0.6 else "fail"
    expected = f"{AUDIO_PACKETS_PER_SECOND:.0f}"
    return Step(
        "lesson.audio",
        status,
        f"Tiết thử, tiếng: nhận {packets} gói ({_f(rate)} gói/giây, cần {expected})",
        f"Mini-lesson, audio: {packets} packets received ({_f(rate)}/s, expected {expected})",
        {"packets": packets, "per_second": round(rate, 2), "expected_per_second": 50},
    )


def decode_file(path: Path) -> dict[str, Any]:
    """Decode every packet of `path`: frames, decode errors, duration (longest stream)."""
    frames = errors = 0
    spans: dict[int, tuple[float, float]] = {}
    with av.open(str(path)) as container:
        for stream in container.streams.video:
            stream.thread_type = "AUTO"
        for packet in container.demux():
            if packet.pts is not None and packet.time_base is not None:
                start = float(packet.pts * packet.time_base)
                stop = start + float((packet.duration or 0) * packet.time_base)
                first, last = spans.get(packet.stream.index, (start, stop))
                spans[packet.stream.index] = (min(first, start), max(last, stop))
            try:
                frames += len(packet.decode())
            except av.FFmpegError:
                errors += 1
    duration = max((last - first for first, last in spans.values()), default=0.0)
    return {"frames": frames, "errors": errors, "duration": round(duration, 3)}


def recording_step(mini: MiniLesson) -> tuple[Step, float | None]:
    """The lesson's files decode and last as long as the lesson (within 10 %)."""
    config, room = mini.config, mini.room
    if not config.site.recordings.enabled or not config.rooms[room].record:
        return (
            Step(
                "lesson.recording",
                "pass",
                "Tiết thử, ghi hình: phòng này không ghi hình (theo cấu hình)",
                "Mini-lesson, recording: this room does not record (as configured)",
                {"recorded": False},
            ),
            None,
        )
    record = mini.service.recordings.read(mini.lesson_id or "")
    parts = record.parts if record is not None else []
    files = [(part, media) for part in parts for media in part.files]
    if record is None or not files:
        return (
            Step(
                "lesson.recording",
                "fail",
                "Tiết thử, ghi hình: không có tệp ghi hình nào",
                "Mini-lesson, recording: no recording was made",
                {"recorded": False},
            ),
            None,
        )
    folder = mini.service.recordings.folder(record.lesson)
    lesson_seconds = sum(
        (part.end - part.start).total_seconds() for part in parts if part.end is not None
    )
    status: Status = "pass"
    described, checked = [], []
    for _, media in files:
        try:
            result = decode_file(folder / media.name)
        except (OSError, av.FFmpegError) as exc:
            result = {"frames": 0, "errors": 1, "duration": 0.0, "error": str(exc)}
        result.update(name=media.name, size=media.size)
        checked.append(result)
        near = abs(result["duration"] - lesson_seconds) <= 0.1 * lesson_seconds
        if result["errors"] or not result["frames"] or not near:
            status = "fail"
        described.append(f"{media.name} {result['duration']:.1f} s")
    size = sum(media.size for _, media in files)
    rate = size / lesson_seconds if lesson_seconds > 0 else None
    errors = sum(r["errors"] for r in checked)
    good_vi = "giải mã tốt" if errors == 0 else f"{errors} lỗi giải mã"
    good_en = "decode cleanly" if errors == 0 else f"{errors} decode errors"
    listed = ", ".join(described)
    rate_text = f", {rate * 3.6 / 1e6:.2f} GB/h" if rate else ""
    return (
        Step(
            "lesson.recording",
            status,
            f"Tiết thử, ghi hình: {listed}, {good_vi} (tiết thử {lesson_seconds:.1f} giây, "
            f"cho phép lệch 10 %){rate_text}",
            f"Mini-lesson, recording: {listed}, {good_en} (lesson {lesson_seconds:.1f} s, "
            f"within 10 % expected){rate_text}",
            {"lesson_seconds": round(lesson_seconds, 3), "files": checked, "bytes": size},
        ),
        rate,
    )


async def watch(
    whep_url: str,
    token: str,
    *,
    clocks: dict[str, bool],
    video: Sequence[str],
    seconds: int,
    progress: Progress,
) -> ViewerResult:
    """Join as a viewer, wait for the pictures, then measure for `seconds`."""
    viewer = LoopbackViewer(whep_url, token, clocks=clocks)
    try:
        await viewer.start()
        wanted = [viewer.counts[name] for name in video]
        deadline = time.monotonic() + FIRST_PICTURE_SECONDS
        while time.monotonic() < deadline and not all(c.arrivals for c in wanted):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(LESSON_WARMUP)
        begin = time.monotonic()
        audio_before = await viewer.audio_packets()
        while (left := begin + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(REPORT_EVERY, left))
            if left > REPORT_EVERY:
                elapsed = time.monotonic() - begin
                rates = ", ".join(
                    f"{name} {_f(viewer.counts[name].recent_fps(REPORT_EVERY))} fps"
                    for name in video
                )
                progress(f"  tiết thử · mini-lesson {elapsed:.0f}/{seconds} s: {rates}")
        end = time.monotonic()
        audio = await viewer.audio_packets() - audio_before
        return ViewerResult(
            {name: viewer.counts[name].summary(begin, end) for name in video}, audio, end - begin
        )
    finally:
        await viewer.stop()


def _viewer_process(conn: Connection) -> None:
    """The viewer's own process (like a pupil's device): its decoding does not slow the
    service, and the service's work does not delay its clock reads. It says "ready" once
    its imports are done, then watches the lesson it is sent."""
    gather_only(["127.0.0.1"])
    conn.send(("ready", None))
    try:
        whep_url, token, clocks, video, seconds = conn.recv()
        result = asyncio.run(
            watch(
                whep_url,
                token,
                clocks=clocks,
                video=video,
                seconds=seconds,
                progress=lambda line: conn.send(("progress", line)),
            )
        )
        conn.send(("result", result))
    except EOFError:
        pass  # the drill gave up before the lesson
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class ViewerProcess:
    """`watch` in a child process; `start()` spawns it (and waits for it to be ready),
    `watch()` runs it against a lesson, `stop()` ends it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_viewer_process, args=(child,), name="drill-viewer", daemon=True
        )
        self._child = child

    async def _receive(self, deadline: float) -> tuple[str, Any]:
        while not await asyncio.to_thread(self._conn.poll, 0.5):
            if not self._process.is_alive():
                raise DrillError(f"the viewer ended (exit {self._process.exitcode})")
            if time.monotonic() > deadline:
                raise DrillError("the viewer gave no answer in time")
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            raise DrillError(f"the viewer ended (exit {self._process.exitcode})") from None
        return str(kind), payload

    async def start(self) -> None:
        self._process.start()
        self._child.close()
        kind, payload = await self._receive(time.monotonic() + 60)
        if kind != "ready":
            raise DrillError(f"the viewer: {payload}")

    async def watch(
        self,
        whep_url: str,
        token: str,
        *,
        clocks: dict[str, bool],
        video: list[str],
        seconds: int,
        progress: Progress,
    ) -> ViewerResult:
        self._conn.send((whep_url, token, clocks, video, seconds))
        deadline = time.monotonic() + seconds + FIRST_PICTURE_SECONDS + 60
        while True:
            kind, payload = await self._receive(deadline)
            if kind == "progress":
                progress(str(payload))
            elif kind == "result" and isinstance(payload, ViewerResult):
                return payload
            else:
                raise DrillError(f"the viewer: {payload}")

    async def stop(self) -> None:
        self._conn.close()  # a viewer still waiting for its lesson ends
        if self._process.pid is None:
            return
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join)


async def run_mini_lesson(
    config: Config, room: str, seconds: int, workdir: Path, progress: Progress
) -> LessonResult:
    """The room's real sources and encoders, one loopback viewer, a recording."""
    settings = config.rooms[room]
    mini = MiniLesson(config, room, workdir)
    clocks = {
        "camera": isinstance(settings.camera, TestVideoSource),
        "board": isinstance(settings.board, TestVideoSource),
    }
    expected = {
        name: _renditions(settings, name)[0].fps
        for name, source in (("camera", settings.camera), ("board", settings.board))
        if source is not None
    }
    steps: list[Step] = []
    viewer = ViewerProcess()
    try:
        await viewer.start()  # its imports done before the lesson: they take a core for ~2 s
        await mini.start(minutes=max(5.0, seconds / 60 + 5))
        result = await viewer.watch(
            f"{mini.base_url}/whep/{room}",
            mini.token(),
            clocks=clocks,
            video=list(expected),
            seconds=seconds,
            progress=progress,
        )
        steps += [
            video_step(name, result.tracks[name], fps, clocks[name])
            for name, fps in expected.items()
        ]
        if settings.mic is not None:
            steps.append(audio_step(result.audio_packets, result.seconds))
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await mini.end_lesson()
        except TimeoutError:
            raise DrillError(f"the lesson did not close within {CLOSE_SECONDS:.0f} s") from None
    except Exception as exc:  # whatever it was, the report says so
        error = str(exc) if isinstance(exc, DrillError) else f"{type(exc).__name__}: {exc}"
        steps.append(
            Step(
                "lesson",
                "fail",
                f"Tiết thử không chạy được: {error}",
                f"The mini-lesson could not run: {error}",
                {"error": error},
            )
        )
    finally:
        await viewer.stop()
        await mini.stop()
    rate = None
    if mini.lesson_id is not None and not any(s.key == "lesson" for s in steps):
        step, rate = await asyncio.to_thread(recording_step, mini)
        steps.append(step)
    return LessonResult(steps, rate)


# ------------------------------------------------------------------ the drill


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


def report_paths(report: DrillReport, data_dir: Path, output: Path | None) -> tuple[Path, Path]:
    """The text and JSON files: `--output` (a file, or a folder), else `<data dir>/drills/`."""
    name = f"{report.room}-{report.started.astimezone(report.zone):%Y-%m-%d-%H%M}"
    if output is None:
        base = data_dir / "drills" / name
    elif output.is_dir():
        base = output / name
    else:
        base = output.with_suffix("") if output.suffix in (".txt", ".json") else output
    return base.with_name(base.name + ".txt"), base.with_name(base.name + ".json")


def save_report(report: DrillReport, data_dir: Path, output: Path | None) -> tuple[Path, Path]:
    text_path, json_path = report_paths(report, data_dir, output)
    write_atomically(text_path, report.text())
    write_atomically(json_path, json.dumps(report.as_json(), ensure_ascii=False, indent=2) + "\n")
    return text_path, json_path


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
