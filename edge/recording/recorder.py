"""The recorder: each live lesson's packets, taken from the buses the viewers use (no
second encode), muxed into fragmented MP4 files as they come.

One recorder per room. A part begins when a lesson goes live (or resumes after a
restart) and ends when it closes; a writer thread owns the files, the event loop only
hands it packets. A failing disk never stops the lesson: the part ends as `failed`, the
viewers go on, and a new part is tried a little later.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from capture import Packet
from capture.mux import (
    Mp4Writer,
    TrackSpec,
    WrittenFile,
    file_sha256,
    h264_parameter_sets,
    opus_head,
    probe,
)
from edge.recording.recordings import (
    PRESENTATION,
    PRESENTER,
    LessonRecord,
    MediaFile,
    Part,
    PartEnd,
    RecordingStore,
    part_file,
)
from edge.school.clock import Clock
from edge.school.lessons import Lesson
from webrtc import PacketBus, Subscription

logger = logging.getLogger(__name__)

QUEUE_PACKETS = 3000  # packets waiting for the disk: ~40 s of a lesson
SUBSCRIPTION_PACKETS = 600  # on each bus: the event loop may lag, the recording must not
EARLY_AUDIO_SECONDS = 3.0  # sound kept while the first picture is awaited
RETRY_SECONDS = 15.0  # after a failed part, the next one is tried this much later
DISK_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class Tracks:
    """Which buses go into which file, and what they carry."""

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


@dataclass
class _OpenFile:
    kind: str
    writer: Mp4Writer
    offset: float


@dataclass
class _PartWriter:
    """The thread that owns one part's files."""

    folder: Path
    part: int
    tracks: Tracks
    zero: float  # the part's start, in the buses' time (seconds since the room's origin)
    metadata: dict[str, str]
    on_open: collections.abc.Callable[[MediaFile], object]
    packets: queue.Queue[tuple[str, Packet] | None] = field(
        default_factory=lambda: queue.Queue(QUEUE_PACKETS)
    )
    files: dict[str, _OpenFile] = field(default_factory=dict)
    written: list[tuple[str, WrittenFile, float]] = field(default_factory=list)
    error: str | None = None
    failed_at: float | None = None
    bytes: int = 0
    _early: dict[str, collections.deque[Packet]] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            while (item := self.packets.get()) is not None:
                if self.error is None:
                    self._write(*item)
        finally:
            self._close_all()

    def _kind_of(self, bus: str) -> str:
        return PRESENTATION if bus == self.tracks.board else PRESENTER

    def _write(self, bus: str, packet: Packet) -> None:
        kind = self._kind_of(bus)
        try:
            opened = self.files.get(kind)
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
            self.error = f"{type(exc).__name__}: {exc}"
            self.failed_at = time.monotonic()
            logger.error("recording %s part %d failed: %s", self.folder.name, self.part, exc)
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
        name = part_file(kind, self.part)
        writer = Mp4Writer(self.folder / name, specs, zero=zero, metadata=self.metadata)
        opened = self.files[kind] = _OpenFile(kind, writer, float(zero) - self.zero)
        self.on_open(MediaFile(name=name, kind=kind, tracks=buses, offset=round(opened.offset, 3)))
        return opened

    def _close_all(self) -> None:
        for opened in list(self.files.values()):
            try:
                result = opened.writer.close()
                self.written.append((opened.kind, result, opened.offset))
            except (OSError, ValueError, RuntimeError) as exc:
                logger.error("closing %s: %s", opened.writer.path, exc)
        self.files.clear()


def _seconds(packet: Packet) -> float:
    return float((packet.pts or 0) * (packet.time_base or Fraction(1)))


@dataclass
class _ActivePart:
    lesson: Lesson
    record: LessonRecord
    subscriptions: dict[str, Subscription]
    ready: asyncio.Event
    part: Part = field(init=False)
    writer: _PartWriter = field(init=False)
    task: asyncio.Task[None] | None = None
    resync: set[str] = field(default_factory=set)
    dropped: int = 0


class Recorder:
    """Records one room's lessons; `begin()` at go-live, `finish()` at the close,
    `stop()` at shutdown (the lesson stays open: a restart adds a part)."""

    def __init__(
        self,
        room: str,
        buses: Mapping[str, PacketBus],
        tracks: Tracks,
        store: RecordingStore,
        *,
        origin: float,
        clock: Clock,
        school: str,
        stop_below_bytes: int = 0,
    ) -> None:
        self.stop_below_bytes = stop_below_bytes  # free disk under which recording pauses
        self.room = room
        self.buses = buses
        self.tracks = tracks
        self.store = store
        self.origin = origin  # the buses' time zero, on the monotonic clock
        self.clock = clock
        self.school = school
        self._active: _ActivePart | None = None
        self._lock = asyncio.Lock()
        self.parts_failed = 0
        self.last_error: str | None = None

    @property
    def recording(self) -> str | None:
        """The id of the lesson being recorded, if any."""
        return self._active.lesson.id if self._active is not None else None

    async def begin(self, lesson: Lesson) -> None:
        """Start a new part of `lesson` (its first, or the next after a restart)."""
        async with self._lock:
            await self._begin(lesson)

    async def _begin(self, lesson: Lesson) -> None:
        if self._active is not None:
            await self._end_part("closed")
        record = self.store.read(lesson.id) or LessonRecord.for_lesson(lesson, self.school)
        await self._settle_interrupted(record)
        record.state = "recording"
        ready = asyncio.Event()
        subscriptions = {
            name: self.buses[name].subscribe(ready, SUBSCRIPTION_PACKETS)
            for names in self.tracks.files().values()
            for name in names
        }
        active = _ActivePart(lesson, record, subscriptions, ready)
        self._new_part(active)
        active.task = asyncio.create_task(self._forward(active), name=f"recorder-{self.room}")
        self._active = active

    def _new_part(self, active: _ActivePart) -> None:
        """Add a part to the lesson's record and start the thread that writes it."""
        lesson, record = active.lesson, active.record
        part = Part(number=len(record.parts) + 1, start=self.clock.now())
        record.parts.append(part)
        self.store.write(record)
        metadata = {
            "title": f"{lesson.subject or 'Tiết học'} · {lesson.class_name}",
            "artist": lesson.teacher,
            "album": self.school,
            "date": lesson.start.isoformat(),
            "comment": f"{lesson.id} phần {part.number}",
        }
        loop = asyncio.get_running_loop()
        writer = _PartWriter(
            self.store.folder(lesson.id),
            part.number,
            self.tracks,
            time.monotonic() - self.origin,
            metadata,
            on_open=lambda entry: loop.call_soon_threadsafe(self._file_opened, part, entry),
        )
        writer.start()
        active.part, active.writer = part, writer
        # a new file starts at a picture: ask for one rather than wait for the next IDR
        for name in (self.tracks.camera, self.tracks.board):
            if name is not None:
                self.buses[name].request_keyframe()
        logger.info("room %s: recording %s part %d", self.room, lesson.id, part.number)

    def _file_opened(self, part: Part, entry: MediaFile) -> None:
        active = self._active
        if active is None or active.part is not part:
            return
        part.files.append(entry)
        self.store.write(active.record)  # the file's offset survives a crash

    async def _forward(self, active: _ActivePart) -> None:
        """Hand the buses' packets to the writer thread; retry after a failure; pause
        while the disk is nearly full (streaming goes on; a full disk would also stop
        the lessons' database)."""
        checked = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # 3.11's wait_for can swallow a cancel
                    await active.ready.wait()
            active.ready.clear()
            for name, subscription in active.subscriptions.items():
                while (packet := subscription.pop()) is not None:
                    self._hand_over(active, name, packet)
            now = time.monotonic()
            room_left = True
            if self.stop_below_bytes and now - checked >= DISK_CHECK_SECONDS:
                checked = now
                free = self.store.free_bytes()
                room_left = free >= self.stop_below_bytes
                if not room_left and active.writer.error is None:  # stop writing, close later
                    active.writer.error = f"the disk is nearly full ({free / 1e6:.0f} MB free)"
                    active.writer.failed_at = now
                    logger.error("room %s: recording paused: %s", self.room, active.writer.error)
            failed_at = active.writer.failed_at
            retry = failed_at is not None and now - failed_at > RETRY_SECONDS and room_left
            if retry and self._room_on_disk():
                self._rotate(active)

    def _room_on_disk(self) -> bool:
        return not self.stop_below_bytes or self.store.free_bytes() >= self.stop_below_bytes

    def _hand_over(self, active: _ActivePart, name: str, packet: Packet) -> None:
        if name in active.resync:
            if not packet.is_keyframe:
                return
            active.resync.discard(name)
        try:
            active.writer.packets.put_nowait((name, packet))
        except queue.Full:  # the disk is stalled: skip to the next keyframe
            active.dropped += 1
            if name != self.tracks.mic:
                active.resync.add(name)

    def _rotate(self, active: _ActivePart) -> None:
        """The part failed a while ago (a full or failing disk): close it and try a new
        one. Synchronous (the failed thread only drains), so a cancel cannot split it."""
        logger.warning(
            "room %s: recording %s again after: %s",
            self.room,
            active.lesson.id,
            active.writer.error,
        )
        active.writer.packets.put(None)
        active.writer.join()
        self._close_part(active, "failed")
        self._new_part(active)
        active.resync = {name for name in (self.tracks.camera, self.tracks.board) if name}

    async def _end_part(self, ended: PartEnd) -> _ActivePart | None:
        active, self._active = self._active, None
        if active is None:
            return None
        if active.task is not None:
            active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await active.task
        for subscription in active.subscriptions.values():
            subscription.close()
        active.writer.packets.put(None)
        await asyncio.to_thread(active.writer.join)
        self._close_part(active, ended)
        return active

    def _close_part(self, active: _ActivePart, ended: PartEnd) -> None:
        """Note in `lesson.json` what the part's (closed) writer wrote."""
        part, writer = active.part, active.writer
        part.end = self.clock.now()
        part.ended = "failed" if writer.error else ended
        part.error = writer.error
        if writer.error:
            self.parts_failed += 1
            self.last_error = writer.error
        entries = {entry.kind: entry for entry in part.files}
        for kind, result, offset in writer.written:
            entry = entries.get(kind) or MediaFile(name=result.path.name, kind=kind)
            entry.size, entry.sha256 = result.size, result.sha256
            entry.duration, entry.offset = round(result.duration, 3), round(offset, 3)
            entry.tracks = self.tracks.files()[kind]
            if kind not in entries:
                part.files.append(entry)
        self.store.write(active.record)
        logger.info(
            "room %s: %s part %d %s (%s)",
            self.room,
            active.lesson.id,
            part.number,
            part.ended,
            ", ".join(f"{f.name} {f.size / 1e6:.1f} MB {f.duration:.1f} s" for f in part.files),
        )

    async def _settle_interrupted(self, record: LessonRecord) -> None:
        """Parts a crash cut short: measure their files as they are on disk."""
        folder = self.store.folder(record.lesson)
        for part in record.parts:
            if part.end is not None:
                continue
            part.ended = "interrupted"
            known = {entry.kind: entry for entry in part.files}
            for kind, buses in self.tracks.files().items():
                path = folder / part_file(kind, part.number)
                if not path.is_file():
                    continue
                entry = known.get(kind) or MediaFile(name=path.name, kind=kind)
                entry.tracks = buses
                try:
                    duration, _ = await asyncio.to_thread(probe, path)
                except (OSError, ValueError) as exc:  # unreadable: kept, counted as empty
                    logger.warning("recording %s: %s", path, exc)
                    duration = 0.0
                entry.duration = round(duration, 3)
                entry.size = path.stat().st_size
                entry.sha256 = await asyncio.to_thread(file_sha256, path)
                if kind not in known:
                    part.files.append(entry)
            longest = max((f.duration + f.offset for f in part.files), default=0.0)
            part.end = part.start + dt.timedelta(seconds=longest)

    async def finish(self, lesson: Lesson) -> LessonRecord | None:
        """The lesson has closed: end its part and complete `lesson.json`."""
        async with self._lock:
            if self._active is not None and self._active.lesson.id == lesson.id:
                await self._end_part("closed")
            record = self.store.read(lesson.id)
            if record is None:
                return None
            await self._settle_interrupted(record)
            record.state = "complete"
            record.planned_end = lesson.ends_at or lesson.end
            self.store.write(record)
            return record

    async def stop(self) -> None:
        """Shutdown: end the part; the lesson stays open for the next start."""
        async with self._lock:
            await self._end_part("stopped")

    def health(self) -> dict[str, object]:
        active = self._active
        return {
            "recording": active.lesson.id if active else None,
            "part": active.part.number if active else None,
            "bytes": active.writer.bytes if active else 0,
            "dropped": active.dropped if active else 0,
            "error": (active.writer.error if active else None) or None,
            "parts_failed": self.parts_failed,
        }
