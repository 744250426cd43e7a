"""A take: one part of a lesson being written, where the encoders run.

Each packet goes from the bus to the take's writer thread in the thread that publishes it
(a bus tap), so no event loop, neither the media process's nor the control process's,
stands between a packet and the disk. `LocalTake` runs next to the encoders (in the media
process, or in the service's own with `media_process = false`); the recorder
(`edge.recording.recorder`) keeps the lesson's record and sees a take only as a `Take`:
its progress, `fail()` (the disk is nearly full), `end()`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from capture import Packet
from capture.mux import Mp4Writer, TrackSpec, h264_parameter_sets, opus_head
from edge.recording.recordings import PRESENTATION, PRESENTER, MediaFile, part_file
from webrtc import PacketBus

logger = logging.getLogger(__name__)

QUEUE_PACKETS = 3000  # packets waiting for the disk: ~40 s of a lesson
EARLY_AUDIO_SECONDS = 3.0  # sound kept while the first picture is awaited


class Tracks(BaseModel):
    """Which buses go into which file, and what they carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: str | None = None  # e.g. "camera/high"
    camera_size: tuple[int, int] = (0, 0)
    board: str | None = None  # e.g. "board/high"
    board_size: tuple[int, int] = (0, 0)
    mic: str | None = None
    channels: int = 1

    def files(self) -> dict[str, list[str]]:
        """File kind → the buses it holds (video first)."""
        found: dict[str, list[str]] = {}
        presenter = [name for name in (self.camera, self.mic) if name]
        if presenter:
            found[PRESENTER] = presenter
        if self.board:
            found[PRESENTATION] = [self.board]
        return found

    def pictures(self) -> list[str]:
        return [name for name in (self.camera, self.board) if name]


class TakePlan(BaseModel):
    """What a take writes, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: str  # the lesson's folder
    part: int
    tracks: Tracks
    zero: float  # the part's start, in the buses' time (seconds since the room's origin)
    metadata: dict[str, str]


class TakeFile(BaseModel):
    """A file a take wrote and closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str
    size: int
    sha256: str
    duration: float
    offset: float  # seconds from the part's start to the file's first picture


class TakeProgress(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bytes: int = 0
    dropped: int = 0  # packets the disk could not take in time
    error: str | None = None  # the take stopped writing (a failing or nearly full disk)
    failed_at: float | None = None  # CLOCK_MONOTONIC: the same clock in every process
    lost: bool = False  # the process that wrote it has gone: its files are as it left them


class TakeEnd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    files: list[TakeFile]
    error: str | None = None


class Take(Protocol):
    """One part being written, wherever the encoders run."""

    def progress(self) -> TakeProgress: ...

    def fail(self, error: str) -> None: ...

    async def end(self) -> TakeEnd: ...


OnOpen = Callable[[MediaFile], None]


class _OpenFile:
    def __init__(self, kind: str, writer: Mp4Writer, offset: float) -> None:
        self.kind, self.writer, self.offset = kind, writer, offset


class LocalTake:
    """A take of `buses` in this process: `start()` (on the event loop that `on_open` is
    called on), `progress()`, `fail()`, `end()`."""

    def __init__(self, buses: Mapping[str, PacketBus], plan: TakePlan, on_open: OnOpen) -> None:
        self.plan = plan
        self.folder = Path(plan.folder)
        self.tracks = plan.tracks
        self._buses = {
            name: buses[name] for names in plan.tracks.files().values() for name in names
        }
        self._on_open = on_open
        self._loop: asyncio.AbstractEventLoop | None = None
        self._packets: queue.Queue[tuple[str, Packet] | None] = queue.Queue(QUEUE_PACKETS)
        self._taps: dict[str, Callable[[Packet], None]] = {}
        self._resync: set[str] = set()  # buses that skip to their next keyframe
        self._files: dict[str, _OpenFile] = {}
        self._written: list[TakeFile] = []
        self._early: dict[str, collections.deque[Packet]] = {}
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.error: str | None = None
        self.failed_at: float | None = None
        self.bytes = 0
        self.dropped = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        for name, bus in self._buses.items():
            tap = self._tap(name)
            self._taps[name] = tap
            bus.add_tap(tap)
        # a new file starts at a picture: ask for one rather than wait for the next IDR
        for name in self.tracks.pictures():
            self._buses[name].request_keyframe()

    def _tap(self, name: str) -> Callable[[Packet], None]:
        video = name != self.tracks.mic

        def tap(packet: Packet) -> None:  # in the thread that publishes on the bus
            if name in self._resync:
                if not packet.is_keyframe:
                    return
                self._resync.discard(name)
            try:
                self._packets.put_nowait((name, packet))
            except queue.Full:  # the disk is stalled: skip to the next keyframe
                self.dropped += 1
                if video:
                    self._resync.add(name)

        return tap

    def progress(self) -> TakeProgress:
        return TakeProgress(
            bytes=self.bytes, dropped=self.dropped, error=self.error, failed_at=self.failed_at
        )

    def fail(self, error: str) -> None:
        """Stop writing (the files are closed at `end()`)."""
        if self.error is None:
            self.error, self.failed_at = error, time.monotonic()

    async def end(self) -> TakeEnd:
        """Close the files; what they are."""
        for name, tap in self._taps.items():
            self._buses[name].remove_tap(tap)
        self._taps = {}
        if self._thread.is_alive():
            await asyncio.to_thread(self._packets.put, None)
            await asyncio.to_thread(self._thread.join)
        return TakeEnd(files=list(self._written), error=self.error)

    def _run(self) -> None:
        try:
            while (item := self._packets.get()) is not None:
                if self.error is None:
                    self._write(*item)
        finally:
            self._close_all()

    def _kind_of(self, bus: str) -> str:
        return PRESENTATION if bus == self.tracks.board else PRESENTER

    def _write(self, bus: str, packet: Packet) -> None:
        kind = self._kind_of(bus)
        try:
            opened = self._files.get(kind)
            if opened is None:
                opened = self._open(kind, bus, packet)
                if opened is None:
                    return
                self._write_one(opened, bus, packet)
                if kind == PRESENTER and self.tracks.mic:  # the sound that waited for it
                    for waiting in self._early.pop(self.tracks.mic, ()):
                        self._write_one(opened, self.tracks.mic, waiting)
                return
            self._write_one(opened, bus, packet)
        except (OSError, ValueError, RuntimeError) as exc:  # av.FFmpegError is an OSError
            self.fail(f"{type(exc).__name__}: {exc}")
            logger.error("recording %s part %d failed: %s", self.folder.name, self.plan.part, exc)
            self._close_all()

    def _write_one(self, opened: _OpenFile, bus: str, packet: Packet) -> None:
        if opened.writer.write(bus, packet):
            self.bytes += packet.size

    def _open(self, kind: str, bus: str, packet: Packet) -> _OpenFile | None:
        """Open the file at its first picture (or first sound, for a room without a
        camera); sound that comes before the picture is kept for it."""
        buses = self.tracks.files()[kind]
        video = buses[0] if buses[0] != self.tracks.mic else None
        if video is not None and (bus != video or not packet.is_keyframe):
            if bus == self.tracks.mic:
                early = self._early.setdefault(bus, collections.deque())
                early.append(packet)
                while early and _seconds(packet) - _seconds(early[0]) > EARLY_AUDIO_SECONDS:
                    early.popleft()
            return None
        specs: list[TrackSpec] = []
        for name in buses:
            if name == self.tracks.mic:
                head = opus_head(self.tracks.channels)
                specs.append(
                    TrackSpec(name, "audio", channels=self.tracks.channels, extradata=head)
                )
                continue
            extradata = h264_parameter_sets(bytes(packet))
            if extradata is None:
                return None  # an IDR without SPS/PPS: wait for the next
            camera = name == self.tracks.camera
            width, height = self.tracks.camera_size if camera else self.tracks.board_size
            specs.append(TrackSpec(name, "video", width, height, extradata=extradata))
        zero = Fraction(packet.pts or 0) * (packet.time_base or Fraction(1))
        name = part_file(kind, self.plan.part)
        writer = Mp4Writer(self.folder / name, specs, zero=zero, metadata=self.plan.metadata)
        opened = self._files[kind] = _OpenFile(kind, writer, float(zero) - self.plan.zero)
        entry = MediaFile(name=name, kind=kind, tracks=buses, offset=round(opened.offset, 3))
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_open, entry)
        return opened

    def _close_all(self) -> None:
        for opened in list(self._files.values()):
            try:
                result = opened.writer.close()
            except (OSError, ValueError, RuntimeError) as exc:
                logger.error("closing %s: %s", opened.writer.path, exc)
                continue
            self._written.append(
                TakeFile(
                    kind=opened.kind,
                    name=result.path.name,
                    size=result.size,
                    sha256=result.sha256,
                    duration=round(result.duration, 3),
                    offset=round(opened.offset, 3),
                )
            )
        self._files.clear()


def _seconds(packet: Packet) -> float:
    return float((packet.pts or 0) * (packet.time_base or Fraction(1)))
