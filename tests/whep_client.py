"""A real aiortc WHEP viewer for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from capture import read_timestamp


async def eventually(condition: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `within` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


@dataclass
class TrackStats:
    frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    clock_ms: list[int] = field(default_factory=list)


@dataclass
class Viewer:
    """One WHEP session: `await viewer.connect()`, then `await viewer.close()`."""

    whep_url: str
    token: str
    video_lines: int = 2
    audio: bool = True
    decode_clock: bool = True
    pc: RTCPeerConnection = field(init=False)
    location: str | None = None
    response: httpx.Response | None = None
    stats: dict[str, TrackStats] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    async def connect(self, client: httpx.AsyncClient | None = None) -> httpx.Response:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        names = ["camera", "board"][: self.video_lines]
        transceivers = [(n, self.pc.addTransceiver("video", direction="recvonly")) for n in names]
        if self.audio:
            transceivers.append(("audio", self.pc.addTransceiver("audio", direction="recvonly")))
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
        own = client or httpx.AsyncClient(timeout=20)
        try:
            self.response = await own.post(
                self.whep_url,
                content=self.pc.localDescription.sdp,
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {self.token}",
                },
            )
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

    async def _consume(self, name: str, track: MediaStreamTrack) -> None:
        stats = self.stats[name]
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.time()
                if stats.first_frame_at is None:
                    stats.first_frame_at = time.monotonic()
                stats.frames += 1
                if name == "audio":
                    continue
                assert isinstance(frame, av.VideoFrame)
                stats.width, stats.height = frame.width, frame.height
                if self.decode_clock and stats.frames % 10 == 1:
                    clock = read_timestamp(np.asarray(frame.to_ndarray(format="gray"), np.uint8))
                    stats.clock_ms.append(clock)
                    stats.latencies_ms.append(now * 1000 - clock)

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
