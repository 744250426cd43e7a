"""The loopback viewer: one `webrtc.viewer.WhepViewer` in its own process (like a pupil's
device), joined to the mini-lesson on 127.0.0.1; it decodes the camera and the board,
counts the sound's packets, reads the burned-in clock of test sources, and sends back
what it measured over the lesson's window."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

from webrtc import gather_only
from webrtc.viewer import MISREAD_MS, TrackStats, WhepViewer

from .report import DrillError, Progress, fixed

FIRST_PICTURE_SECONDS = 15.0
LESSON_WARMUP = 1.0  # seconds after the first picture left out of the lesson's rates
REPORT_EVERY = 10.0


@dataclass
class TrackSummary:
    """What the viewer decoded of one video track during the lesson's window."""

    decoded: int  # frames decoded in all
    frames: int  # frames decoded within the window
    seconds: float  # the window
    latencies_ms: list[float]  # glass-to-glass, from the burned-in clock
    misreads: int
    size: tuple[int, int]

    @classmethod
    def of(cls, stats: TrackStats, begin: float, end: float) -> TrackSummary:
        """The window from `begin` to `end` (monotonic) of what the viewer counted."""
        reads = zip(stats.clock_at, stats.latencies_ms, strict=True)
        return cls(
            decoded=len(stats.arrivals),
            frames=sum(1 for t in stats.arrivals if begin <= t <= end),
            seconds=end - begin,
            latencies_ms=[ms for t, ms in reads if begin <= t <= end and abs(ms) < MISREAD_MS],
            misreads=sum(1 for ms in stats.latencies_ms if abs(ms) >= MISREAD_MS),
            size=(stats.width, stats.height),
        )


@dataclass
class ViewerResult:
    tracks: dict[str, TrackSummary]
    audio_packets: int
    seconds: float


def recent_fps(stats: TrackStats, span: float) -> float:
    """Frames per second decoded over the last `span` seconds."""
    since = time.monotonic() - span
    return sum(1 for t in stats.arrivals if t >= since) / span


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
    viewer = WhepViewer(
        whep_url,
        token,
        clocks=[name for name, burned in clocks.items() if burned],
        clock_every=None,  # about six clock reads a second
        cache_clock_square=True,
    )
    # to ourselves: never through a proxy
    async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
        try:
            answer = await viewer.connect(client)
            if answer.status_code != 201:
                raise DrillError(
                    f"WHEP POST {whep_url}: {answer.status_code} {answer.content[:200]!r}"
                )
            wanted = [viewer.stats[name] for name in video]
            deadline = time.monotonic() + FIRST_PICTURE_SECONDS
            while time.monotonic() < deadline and not all(s.arrivals for s in wanted):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(LESSON_WARMUP)
            begin = time.monotonic()
            audio_before = await viewer.packets_received("audio")
            while (left := begin + seconds - time.monotonic()) > 0:
                await asyncio.sleep(min(REPORT_EVERY, left))
                if left > REPORT_EVERY:
                    elapsed = time.monotonic() - begin
                    rates = ", ".join(
                        f"{name} {fixed(recent_fps(viewer.stats[name], REPORT_EVERY))} fps"
                        for name in video
                    )
                    progress(f"  tiết thử · mini-lesson {elapsed:.0f}/{seconds} s: {rates}")
            end = time.monotonic()
            audio = await viewer.packets_received("audio") - audio_before
            tracks = {name: TrackSummary.of(viewer.stats[name], begin, end) for name in video}
            return ViewerResult(tracks, audio, end - begin)
        finally:
            await viewer.close(client)


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
