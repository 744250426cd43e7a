"""The room's devices before the mini-lesson: no other process holds them, each source
delivers its configured rate for a few seconds, and the encoders of every rendition keep
up with real time on the frames the sources gave."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from capture import AudioEncoder, Frame, Source
from edge.config.settings import (
    Config,
    RoomSettings,
    ScreenSource,
    TestVideoSource,
    V4L2Source,
    VideoRendition,
)
from edge.live.media import audio_source, video_encoder, video_source

from .report import SOURCE_NAMES, Status, Step, fixed

DEVICE_SECONDS = 3.0  # how long each source is measured
DEVICE_OPEN_SECONDS = 8.0  # how long a device may take to deliver its first frame
RATE_SHARE = 0.9  # a source must deliver this share of its configured rate
ENCODE_FAIL, ENCODE_WARN = 0.8, 0.7  # share of real time the encoders may use
BUSY_MACHINE = 0.25  # other programs' share of the machine worth saying in the report
KEPT_FRAMES = 60  # frames of each video source kept to time the encoders on
AUDIO_RATE = 48000
SERVICE_UNIT = "classroom-edge"


# ------------------------------------------------------------------ devices busy


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
            vi = f"{vi_name}: {fixed(rate / 1000)} kHz (cần {fixed(expected / 1000, 0)} kHz)"
            en = f"{en_name}: {fixed(rate / 1000)} kHz (expected {fixed(expected / 1000, 0)} kHz)"
        else:
            size = f"{got.size[0]}×{got.size[1]}"
            vi = f"{vi_name}: {fixed(rate)} hình/giây (cần {expected:g}), {size}"
            en = f"{en_name}: {fixed(rate)} fps (expected {expected:g}), {size}"
        steps.append(Step(f"device.{name}", status, vi, en, value))
    return steps, captured


# ------------------------------------------------------------------ encoders


def renditions(settings: RoomSettings, name: str) -> list[VideoRendition]:
    """The renditions of video source `name` ("camera" or "board"), the top one first."""
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
        for rendition in renditions(settings, name):
            video = video_encoder(name, rendition, origin)
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
