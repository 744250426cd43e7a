"""A real aiortc WHEP viewer for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
import numpy.typing as npt
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from capture import read_timestamp
from capture.timecode import estimate_square
from tests.classroom_client import ClassroomChannel, classroom_url


async def eventually(condition: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `within` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def eventually_sync(condition: Callable[[], bool], within: float, step: float = 0.2) -> bool:
    """`eventually` for tests that are not coroutines."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@dataclass
class TrackStats:
    frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    clock_ms: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """`time.monotonic()` when each frame was decoded."""

    def gaps(self, since: float, until: float) -> list[float]:
        """Seconds between the frames decoded from `since` to `until` (monotonic)."""
        times = [at for at in self.arrivals if since <= at <= until]
        return [b - a for a, b in itertools.pairwise(times)]


@dataclass
class Viewer:
    """One WHEP session: `await viewer.connect()`, then `await viewer.close()`."""

    whep_url: str
    token: str
    video_lines: int = 2
    audio: bool = True
    decode_clock: bool = True
    clock_every: int = 10
    """Read the burned-in clock of every `clock_every`-th decoded video frame."""
    clock_square: float | None = None
    """Size of the clock's squares in px; None finds it from the picture (slower, ~8 ms)."""
    cache_clock_square: bool = False
    """With `clock_square` None: find the size once per picture width, not on every read."""
    channel: bool = False
    """Open a classroom channel first and name it in the WHEP POST, as the pupil's page
    does (tests/classroom_client.py)."""
    classroom: ClassroomChannel | None = None
    _squares: dict[int, float] = field(default_factory=dict)
    pc: RTCPeerConnection = field(init=False)
    location: str | None = None
    response: httpx.Response | None = None
    stats: dict[str, TrackStats] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _transceivers: list[tuple[str, RTCRtpTransceiver]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    posted_at: float | None = None
    """`time.monotonic()` when the WHEP POST was sent, and when its answer came back."""
    answered_at: float | None = None

    async def offer(self) -> None:
        """Create the peer connection and its local offer (`connect()` does it when not yet
        done; calling it first lets a caller time the POST alone)."""
        if self._transceivers:
            return
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        names = ["camera", "board"][: self.video_lines]
        transceivers = [(n, self.pc.addTransceiver("video", direction="recvonly")) for n in names]
        if self.audio:
            transceivers.append(("audio", self.pc.addTransceiver("audio", direction="recvonly")))
        self._transceivers = transceivers
        for name, transceiver in transceivers:
            if name != "audio":
                capabilities = RTCRtpReceiver.getCapabilities("video")
                assert capabilities is not None
                h264 = [
                    c
                    for c in capabilities.codecs
                    if c.mimeType.lower() in ("video/h264", "video/rtx")
                ]
                transceiver.setCodecPreferences(h264)
            self.stats[name] = TrackStats()
        await self.pc.setLocalDescription(await self.pc.createOffer())

    def receiver(self, name: str) -> RTCRtpReceiver:
        """The receiver of track `name` ("camera", "board" or "audio"), after `offer()`."""
        return next(t.receiver for n, t in self._transceivers if n == name)

    async def connect(self, client: httpx.AsyncClient | None = None) -> httpx.Response:
        await self.offer()
        transceivers = self._transceivers
        whep_url = self.whep_url
        if self.channel and self.classroom is None:
            self.classroom = ClassroomChannel(
                classroom_url(self.whep_url), self.token, client=client
            )
            if (await self.classroom.open()).status_code == 201:
                url = httpx.URL(self.whep_url)
                whep_url = str(url.copy_merge_params({"channel": self.classroom.id or ""}))
        own = client or httpx.AsyncClient(timeout=20)
        try:
            self.posted_at = time.monotonic()
            self.response = await own.post(
                whep_url,
                content=self.pc.localDescription.sdp,
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {self.token}",
                },
            )
            self.answered_at = time.monotonic()
        finally:
            if client is None:
                await own.aclose()
        if self.response.status_code == 201:
            self.location = str(httpx.URL(self.whep_url).join(self.response.headers["location"]))
            await self.pc.setRemoteDescription(RTCSessionDescription(self.response.text, "answer"))
            for name, transceiver in transceivers:
                track = transceiver.receiver.track
                self._tasks.append(asyncio.create_task(self._consume(name, track)))
        return self.response

    @property
    def received(self) -> list[dict[str, Any]]:
        """The messages that came on the classroom channel (`channel=True`)."""
        return self.classroom.received if self.classroom is not None else []

    def send(self, message: dict[str, Any]) -> None:
        """A message on the classroom channel (open it with `channel=True`)."""
        assert self.classroom is not None
        self.classroom.send(message)

    async def _consume(self, name: str, track: MediaStreamTrack | None) -> None:
        if track is None:  # closed before this task ran
            return
        stats = self.stats[name]
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.time()
                stats.arrivals.append(time.monotonic())
                if stats.first_frame_at is None:
                    stats.first_frame_at = stats.arrivals[-1]
                stats.frames += 1
                if name == "audio":
                    continue
                assert isinstance(frame, av.VideoFrame)
                stats.width, stats.height = frame.width, frame.height
                if self.decode_clock and stats.frames % self.clock_every == 1 % self.clock_every:
                    luma = np.asarray(frame.to_ndarray(format="gray"), np.uint8)
                    clock = self._read_clock(luma, now)
                    stats.clock_ms.append(clock)
                    stats.latencies_ms.append(now * 1000 - clock)

    def _read_clock(self, luma: npt.NDArray[np.uint8], now: float) -> int:
        if self.clock_square is not None or not self.cache_clock_square:
            return read_timestamp(luma, self.clock_square)
        width = luma.shape[1]
        square = self._squares.get(width)
        if square is not None:
            clock = read_timestamp(luma, square)
            if abs(clock / 1000 - now) < 10:
                return clock
        self._squares[width] = estimate_square(luma)  # new size, or a misread: look again
        return read_timestamp(luma, self._squares[width])

    async def close(self, client: httpx.AsyncClient | None = None) -> None:
        if self.location:
            own = client or httpx.AsyncClient(timeout=10)
            try:
                await own.delete(self.location)
            except httpx.HTTPError:
                pass
            finally:
                if client is None:
                    await own.aclose()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
        if self.classroom is not None:
            await self.classroom.close()
