"""A device read or an encode that never returns (as an FFmpeg scaler once hung) is
detected by the pipeline's watchdog, which shares no lock with them: the slate goes out,
the source says what hung, and fresh threads and codec contexts carry on, no restart.

The camera is the synthetic one; the hang is injected where a device read and an
encode happen: a camera whose next frame never comes, an encoder whose next call never
returns. Everything above (pipeline, real libx264, decoding) is real."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest

from capture import SourcePipeline, TestCamera, VideoEncoder, read_timestamp, slate
from capture.encoder import Packet
from edge.access.links import room_links
from edge.school.clock import SystemClock
from tests.conftest import MEDIA_HERE, SMALL_ROOM, serve_in_process, write_site
from tests.whep_client import Viewer, eventually

FPS = 15.0
RELEASE = threading.Event()  # set at the end of each test: stuck threads may go


@pytest.fixture(autouse=True)
def release_stuck_threads() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()


class StuckCamera(TestCamera):
    """Its `hang_at`-th frame never comes (the first thread only: a camera whose read
    blocked once)."""

    def __init__(self, hang_at: int, **options: Any) -> None:
        super().__init__(**options)
        self.hang_at = hang_at
        self.hung_at: float | None = None

    def _emit(self, frame: av.VideoFrame | av.AudioFrame, captured_at: float) -> None:
        if self.abandoned == 0 and self.frames + 1 == self.hang_at:
            self.hung_at = time.monotonic()
            RELEASE.wait(60)
        super()._emit(frame, captured_at)


class StuckEncoder(VideoEncoder):
    """Its `hang_at`-th encode never returns (once)."""

    def __init__(self, hang_at: int, **options: Any) -> None:
        super().__init__(**options)
        self.hang_at = hang_at
        self.calls = 0
        self.hung_at: float | None = None

    def encode(self, frame: av.VideoFrame, captured_at: float) -> list[Packet]:
        self.calls += 1
        if self.calls == self.hang_at:
            self.hung_at = time.monotonic()
            RELEASE.wait(60)
        return super().encode(frame, captured_at)


@dataclass
class Received:
    """What viewers get: each packet's arrival, decoded; the burned-in clock per frame."""

    decoder: Any = field(default_factory=lambda: av.CodecContext.create("h264", "r"))
    arrivals: list[float] = field(default_factory=list)
    clocks: list[tuple[float, int | None]] = field(default_factory=list)  # (arrival, ms)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, rendition: str, packet: Packet) -> None:
        now = time.monotonic()
        with self.lock:
            self.arrivals.append(now)
            for frame in self.decoder.decode(packet):
                luma = frame.to_ndarray(format="gray")
                stamp = read_timestamp(luma)
                plausible = abs(stamp / 1000 - time.time()) < 30
                self.clocks.append((now, stamp if plausible else None))

    def longest_gap(self, after: float) -> float:
        times = [t for t in self.arrivals if t >= after]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def picture_after(self, moment: float) -> bool:
        return any(at > moment and stamp is not None for at, stamp in self.clocks)

    def slate_after(self, moment: float) -> bool:
        return any(at > moment and stamp is None for at, stamp in self.clocks)


def encoder(cls: type[VideoEncoder] = VideoEncoder, **extra: Any) -> VideoEncoder:
    return cls(
        name="high",
        width=320,
        height=180,
        fps=FPS,
        bitrate=300_000,
        origin=time.monotonic(),
        threads=1,
        **extra,
    )


def wait_for(condition: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_camera_whose_read_never_returns_gets_the_slate_then_a_fresh_thread() -> None:
    camera = StuckCamera(hang_at=15, width=320, height=180, fps=FPS)
    received = Received()
    pipeline = SourcePipeline(
        camera, [encoder()], received, missing=slate(320, 180, "Mất hình", "Đang kết nối lại")
    )
    pipeline.start()
    try:
        assert wait_for(lambda: camera.hung_at is not None, 10)
        hung_at = camera.hung_at
        assert hung_at is not None
        # within 3 s: the slate is out, and the source says so
        assert wait_for(lambda: received.slate_after(hung_at), 3), received.clocks[-5:]
        assert pipeline.showing_missing
        assert wait_for(lambda: pipeline.hangs == 1, 3)
        assert pipeline.last_hang is not None and "given nothing" in pipeline.last_hang[1]
        # then the camera's own picture again, from a fresh thread, no restart
        assert wait_for(lambda: received.picture_after(hung_at + 2.5), 5)
        assert camera.abandoned == 1 and camera.state == "running" and camera.error is None
        assert wait_for(lambda: not pipeline.showing_missing, 2)
        # pupils never saw a frozen picture longer than the slate's wait (1 s) and a bit
        assert received.longest_gap(after=hung_at - 1) < 1.6, received.longest_gap(hung_at - 1)
    finally:
        pipeline.stop()


def test_an_encode_that_never_returns_is_replaced_by_a_fresh_encoder() -> None:
    camera = TestCamera(width=320, height=180, fps=FPS)
    stuck = encoder(StuckEncoder, hang_at=20)
    assert isinstance(stuck, StuckEncoder)
    received = Received()
    pipeline = SourcePipeline(
        camera, [stuck], received, missing=slate(320, 180, "Mất hình", "Đang kết nối lại")
    )
    pipeline.start()
    try:
        assert wait_for(lambda: stuck.hung_at is not None, 10)
        hung_at = stuck.hung_at
        assert hung_at is not None
        assert wait_for(lambda: pipeline.hangs == 1, 3)
        assert pipeline.last_hang is not None
        assert "encoder has not answered" in pipeline.last_hang[1]
        assert pipeline.last_hang[0] - hung_at < 2.0  # seen within 1.5 s and a look
        # within 3 s of the hang, pictures flow again, starting with a decodable IDR
        assert wait_for(lambda: received.picture_after(hung_at + 1), 3), received.clocks[-3:]
        assert received.longest_gap(after=hung_at - 1) < 3.0
        assert camera.abandoned == 1
        assert wait_for(lambda: camera.state == "running" and camera.error is None, 3)
        before = len(received.arrivals)
        time.sleep(1)
        assert len(received.arrivals) - before >= FPS / 2  # and keeps flowing
        assert pipeline.hangs == 1  # once: the fresh encoder is not taken for a hang
    finally:
        pipeline.stop()


def test_a_quiet_source_is_not_taken_for_a_hung_one() -> None:
    """A camera that fails and retries on its own (unplugged) is left to do so."""
    camera = TestCamera(width=320, height=180, fps=FPS)
    camera.unplugged.set()
    received = Received()
    pipeline = SourcePipeline(
        camera, [encoder()], received, missing=slate(320, 180, "Mất hình", "Đang kết nối lại")
    )
    pipeline.start()
    try:
        time.sleep(4)
        assert camera.state == "failed" and "unplugged" in (camera.error or "")
        assert pipeline.hangs == 0 and camera.abandoned == 0
        assert received.slate_after(0)
    finally:
        pipeline.stop()


async def test_the_service_keeps_pupils_watching_and_tells_the_console(tmp_path: Path) -> None:
    """In the running service: the room camera's encoder hangs once; a pupil's picture
    goes on within 3 s and the console's warnings say what happened (capture in the
    service's process: the test makes its encoder hang)."""
    config = write_site(tmp_path, {"r1": SMALL_ROOM}, MEDIA_HERE)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        pipeline = next(p for p in service.rooms["r1"].pipelines if p.source.name == "camera")
        assert await eventually(lambda: pipeline.source.state == "running", 10)
        stuck = next(iter(pipeline.encoders.values()))
        real_encode = stuck.encode
        hung_at: list[float] = []

        def encode_once_stuck(frame: Any, captured_at: float) -> list[Packet]:
            if not hung_at:
                hung_at.append(time.monotonic())
                RELEASE.wait(60)  # in the capture thread, as an FFmpeg call would
            return real_encode(frame, captured_at)

        token = room_links(service.config, service.signer, service.roster, "r1", base)[0].token
        viewer = Viewer(f"{base}/whep/r1", token, video_lines=1, clock_every=1)
        try:
            assert (await viewer.connect()).status_code == 201
            camera = viewer.stats["camera"]
            assert await eventually(lambda: camera.frames >= 10, 15)
            stuck.encode = encode_once_stuck  # type: ignore[method-assign]
            assert await eventually(lambda: bool(hung_at), 5)
            frames = camera.frames
            assert await eventually(lambda: camera.frames > frames + 5, 3 + 1.5)
            assert time.monotonic() - hung_at[0] < 4.5
            said = [w for w in service.warnings() if "Camera bị treo" in w]
            assert said and "đã tự mở lại" in said[0], service.warnings()
            health = service.rooms["r1"].health(asyncio.get_running_loop().time())
            sources: dict[str, Any] = health["sources"]  # type: ignore[assignment]
            assert sources["camera"]["hangs"] == 1
            assert "encoder has not answered" in sources["camera"]["last_hang"]
        finally:
            await viewer.close()
