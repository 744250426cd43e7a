"""A WHEP viewer on aiortc, as a pupil's device is one: it posts a receive-only offer
(H.264 camera and board, Opus sound), decodes what comes, notes when each frame was
decoded, and reads the burned-in capture clock of test sources (`capture.timecode`) to
measure glass-to-glass latency.

The drill's loopback viewer (`edge/ops/drill/loopback.py`) and the tests' viewer
(`tests/whep_client.py`) are this one. It takes plain arguments (a URL, a token, which
tracks to read the clock of), never settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Collection
from dataclasses import dataclass, field

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

from capture.timecode import estimate_square, read_timestamp

VIDEO_TRACKS = ("camera", "board")
MISREAD_MS = 10_000.0  # a clock this far from now was misread (or the squares' size changed)
CLOCK_READS_PER_SECOND = 6  # with `clock_every=None`, once 30 frames have come
CLOCK_RATE_FRAMES = 30


def prefer_h264(transceiver: RTCRtpTransceiver, codec: str = "h264") -> None:
    """Offer H.264 (or `codec`: "vp8") and its retransmissions alone on a video
    transceiver: the service sends H.264, and VP8 to viewers without H.264."""
    capabilities = RTCRtpReceiver.getCapabilities("video")
    assert capabilities is not None
    wanted = ("video/" + codec.lower(), "video/rtx")
    transceiver.setCodecPreferences(
        [c for c in capabilities.codecs if c.mimeType.lower() in wanted]
    )


def top_luma(frame: av.VideoFrame, rows: int = 64) -> npt.NDArray[np.uint8]:
    """The top rows of the luma plane, where the burned-in clock is (no conversion of the
    whole picture for the usual YUV formats)."""
    rows = min(frame.height, rows)
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12"):
        plane = frame.planes[0]
        data = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
        return np.asarray(data[:rows, : frame.width], np.uint8)
    return np.asarray(frame.to_ndarray(format="gray"), np.uint8)[:rows]


@dataclass
class TrackStats:
    """What the viewer decoded of one track."""

    frames: int = 0
    width: int = 0
    height: int = 0
    first_frame_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    """Glass-to-glass, one per clock read (`clock_at`), misreads included."""
    clock_ms: list[int] = field(default_factory=list)
    clock_at: list[float] = field(default_factory=list)
    """`time.monotonic()` when the frame of each clock read was decoded."""
    arrivals: list[float] = field(default_factory=list)
    """`time.monotonic()` when each frame was decoded."""

    def gaps(self, since: float, until: float) -> list[float]:
        """Seconds between the frames decoded from `since` to `until` (monotonic)."""
        times = [at for at in self.arrivals if since <= at <= until]
        return [b - a for a, b in itertools.pairwise(times)]


@dataclass
class WhepViewer:
    """One WHEP session: `await viewer.connect()`, then `await viewer.close()`."""

    whep_url: str
    token: str
    video_lines: int = 2
    """The video tracks to receive: 1 the camera, 2 the camera and the board."""
    video_codec: str = "h264"
    """The one video codec offered: "h264" (what the service sends first) or "vp8"."""
    audio: bool = True
    clocks: Collection[str] = VIDEO_TRACKS
    """The video tracks whose burned-in clock is read (the sources that burn one)."""
    clock_every: int | None = 10
    """Read the clock of every `clock_every`-th decoded video frame; None: of every frame
    until 30 have come, then about six a second."""
    clock_square: float | None = None
    """Size of the clock's squares in px; None finds it from the picture (slower, ~8 ms)."""
    cache_clock_square: bool = False
    """With `clock_square` None: find the size once per picture width (and again after a
    misread), not on every read."""
    pc: RTCPeerConnection = field(init=False)
    location: str | None = None
    response: httpx.Response | None = None
    stats: dict[str, TrackStats] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    posted_at: float | None = None
    """`time.monotonic()` when the WHEP POST was sent, and when its answer came back."""
    answered_at: float | None = None
    _squares: dict[int, float] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _transceivers: list[tuple[str, RTCRtpTransceiver]] = field(default_factory=list)

    async def offer(self) -> None:
        """Create the peer connection and its local offer (`connect()` does it when not yet
        done; calling it first lets a caller time the POST alone)."""
        if self._transceivers:
            return
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        names = list(VIDEO_TRACKS[: self.video_lines])
        transceivers = [(n, self.pc.addTransceiver("video", direction="recvonly")) for n in names]
        if self.audio:
            transceivers.append(("audio", self.pc.addTransceiver("audio", direction="recvonly")))
        self._transceivers = transceivers
        self.before_offer()
        for name, transceiver in transceivers:
            if name != "audio":
                prefer_h264(transceiver, self.video_codec)
            self.stats[name] = TrackStats()
        await self.pc.setLocalDescription(await self.pc.createOffer())

    def before_offer(self) -> None:
        """Called once the transceivers are added, before the offer is made (a subclass
        opens its data channels here)."""

    def receiver(self, name: str) -> RTCRtpReceiver:
        """The receiver of track `name` ("camera", "board" or "audio"), after `offer()`."""
        return next(t.receiver for n, t in self._transceivers if n == name)

    async def connect(self, client: httpx.AsyncClient | None = None) -> httpx.Response:
        """POST the offer; on 201 the answer is applied and the tracks are decoded.
        Any other answer is returned as it came (nothing is decoded)."""
        await self.offer()
        own = client or httpx.AsyncClient(timeout=20)
        try:
            self.posted_at = time.monotonic()
            self.response = await own.post(
                self.whep_url,
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
            for name, transceiver in self._transceivers:
                track = transceiver.receiver.track
                self._tasks.append(asyncio.create_task(self._consume(name, track)))
        return self.response

    async def packets_received(self, name: str) -> int:
        """RTP packets the receiver of track `name` has received so far."""
        report = await self.receiver(name).getStats()
        return sum(
            int(getattr(s, "packetsReceived", 0) or 0)
            for s in report.values()
            if getattr(s, "type", "") == "inbound-rtp"
        )

    def reads_clock(self, name: str) -> bool:
        """Whether the burned-in clock of track `name` is read."""
        return name in self.clocks

    async def _consume(self, name: str, track: MediaStreamTrack | None) -> None:
        if track is None:  # closed before this task ran
            return
        stats = self.stats[name]
        every = self.clock_every or 1
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.time()
                stats.arrivals.append(time.monotonic())
                if stats.first_frame_at is None:
                    stats.first_frame_at = stats.arrivals[-1]
                stats.frames += 1
                if name == "audio" or not isinstance(frame, av.VideoFrame):
                    continue
                stats.width, stats.height = frame.width, frame.height
                if self.clock_every is None and stats.frames == CLOCK_RATE_FRAMES:
                    span = stats.arrivals[-1] - stats.arrivals[0]
                    per_second = (CLOCK_RATE_FRAMES - 1) / max(span, 1e-3)
                    every = max(1, round(per_second / CLOCK_READS_PER_SECOND))
                if self.reads_clock(name) and stats.frames % every == 1 % every:
                    clock = self._read_clock(top_luma(frame), now)
                    stats.clock_ms.append(clock)
                    stats.latencies_ms.append(now * 1000 - clock)
                    stats.clock_at.append(stats.arrivals[-1])

    def _read_clock(self, luma: npt.NDArray[np.uint8], now: float) -> int:
        if self.clock_square is not None or not self.cache_clock_square:
            return read_timestamp(luma, self.clock_square)
        width = luma.shape[1]
        square = self._squares.get(width)
        if square is not None:
            clock = read_timestamp(luma, square)
            if abs(now * 1000 - clock) < MISREAD_MS:
                return clock
        self._squares[width] = estimate_square(luma)  # new size, or a misread: look again
        return read_timestamp(luma, self._squares[width])

    async def close(self, client: httpx.AsyncClient | None = None) -> None:
        """DELETE the session (if it was made), stop decoding, close the peer connection."""
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
        if self._transceivers:  # (no peer connection before `offer()`)
            await self.pc.close()
