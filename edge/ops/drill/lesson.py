"""The mini-lesson: the room alone in a throwaway `EdgeService` on 127.0.0.1 (its real
sources and encoders, its own data dir), one lesson started there, the loopback viewer
watching it, and the recording decoded afterwards; each part becomes a `Step`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import uvicorn

from edge.access.connections import EdgeProtocol
from edge.access.links import room_links
from edge.config.settings import Config, LibrarySettings, TestVideoSource
from edge.live.service import EdgeService
from edge.web.app import create_app

from .devices import RATE_SHARE, renditions
from .loopback import TrackSummary, ViewerProcess
from .report import SOURCE_NAMES, DrillError, Progress, Status, Step, fixed, worst

CLOSE_SECONDS = 30.0  # ending the lesson (its recording closes) may take this long
AUDIO_PACKETS_PER_SECOND = 50.0  # 20 ms Opus packets


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
    vi = f"Tiết thử, {vi_name}: {fixed(fps)} hình/giây (cần {expected:g}), {size}"
    en = f"Mini-lesson, {en_name}: {fixed(fps)} fps received (expected {expected:g}), {size}"
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
        f"Tiết thử, tiếng: nhận {packets} gói ({fixed(rate)} gói/giây, cần {expected})",
        f"Mini-lesson, audio: {packets} packets received ({fixed(rate)}/s, expected {expected})",
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
        name: renditions(settings, name)[0].fps
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
