"""A source and its renditions: capture once, encode once per rendition."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import av

from .encoder import Encoder, Packet
from .source import Frame, Source

logger = logging.getLogger(__name__)

PacketSink = Callable[[str, Packet], None]
"""Called in the capture thread with a rendition name and one of its packets."""

WATCH_INTERVAL = 0.25
MAX_ABANDONED = 5
"""Threads a pipeline leaves stuck before it stops replacing them (each may hold memory
and the device; past this only the slate goes out, and the state says why)."""


class SourcePipeline:
    """Feeds each frame of `source` to every encoder that wants it and hands the
    packets to `on_packet` (in the capture thread: hand them over, don't block).

    With a `missing` picture (a slate), a video source that delivers nothing for
    `missing_after` seconds (unplugged, not found) is replaced by that picture at
    `missing_fps` until frames come again, so viewers and the recording see why. A
    source without one (a microphone) that has failed for `missing_after` seconds is
    marked missing (`showing_missing`) until frames come again.

    A watchdog thread that shares no lock with them looks four times a second: an
    encode that has not returned within `hang_after` seconds, or a source that says it
    runs (or opens) but has given nothing for `stall_after` seconds, is left behind (a
    thread cannot be killed): the encoders drop their codec contexts, the source carries
    on in a fresh thread, the slate goes out meanwhile, and `source.error` says what hung.
    """

    def __init__(
        self,
        source: Source,
        encoders: Sequence[Encoder],
        on_packet: PacketSink,
        *,
        missing: av.VideoFrame | None = None,
        missing_after: float = 1.0,
        missing_fps: float = 5.0,
        hang_after: float = 1.5,
        stall_after: float = 2.5,
    ) -> None:
        self.source = source
        self.encoders = {encoder.name: encoder for encoder in encoders}
        self._on_packet = on_packet
        self.encode_errors = 0
        self.cover: av.VideoFrame | None = None  # sent instead of the picture (privacy)
        self.missing = missing
        self.missing_after = missing_after
        self.missing_fps = missing_fps
        self.hang_after = hang_after
        self.stall_after = stall_after
        self.showing_missing = False
        """The device gives nothing: its slate went out (a video source), or it has failed
        for `missing_after` seconds (a source without a slate, like a microphone)."""
        self.last_frame: Frame | None = None  # what went out last (a preview)
        self.hangs = 0  # encoder or device calls that never returned, since start
        self.last_hang: tuple[float, str] | None = None  # (monotonic time, what hung)
        self._last_frame_at = time.monotonic()
        # one generation per set of threads: a thread left behind finds it changed and
        # delivers nothing when (if ever) it wakes up
        self._generation = 0
        self._encoding = threading.Lock()  # the source's thread and the filler's
        self._busy_since: float | None = None  # an encode under way since (monotonic)
        self._next_restart = 0.0  # a stalled source is restarted again only after this
        self._restart_pause = stall_after
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        self._last_frame_at = time.monotonic()
        self._stopping.clear()
        self.source.start(self._on_frame)
        self._start_filler()
        self._watchdog = threading.Thread(
            target=self._watch, name=f"watchdog-{self.source.name}", daemon=True
        )
        self._watchdog.start()

    def _start_filler(self) -> None:
        if self.missing is not None:
            self._filler = threading.Thread(
                target=self._fill,
                args=(self._generation,),
                name=f"missing-{self.source.name}",
                daemon=True,
            )
            self._filler.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in (self._watchdog, self._filler):
            if thread is not None:
                thread.join(2.0)  # one left stuck in an encode is not waited for
        self._watchdog = self._filler = None
        self.source.stop()
        self.showing_missing = False
        for encoder in self.encoders.values():
            encoder.close()

    def request_keyframe(self, rendition: str) -> None:
        self.encoders[rendition].request_keyframe()

    def _on_frame(self, frame: Frame, captured_at: float) -> None:
        self._last_frame_at = time.monotonic()
        self._restart_pause = self.stall_after
        if self.showing_missing:
            self.showing_missing = False
            what = "picture" if self.missing is not None else "signal"
            logger.info("source %s: %s back", self.source.name, what)
            for encoder in self.encoders.values():
                encoder.request_keyframe()  # viewers see the picture at once
        self._encode(frame, captured_at)

    def _fill(self, generation: int) -> None:
        assert self.missing is not None
        interval = 1.0 / self.missing_fps
        while not self._stopping.wait(interval) and generation == self._generation:
            now = time.monotonic()
            if now - self._last_frame_at < self.missing_after:
                continue
            first = not self.showing_missing
            if first:
                logger.warning("source %s: no picture; sending the slate", self.source.name)
                for encoder in self.encoders.values():
                    encoder.request_keyframe()
            if self._encode(self.missing, now) and first:
                self.showing_missing = True  # said only once it is really out

    def _encode(self, frame: Frame, captured_at: float) -> bool:
        """Encode `frame` for every rendition that wants it and hand the packets on;
        False when this thread's generation has been left behind."""
        cover = self.cover
        if cover is not None and isinstance(frame, av.VideoFrame):
            frame = cover  # same timing, another picture: the camera is paused
        self.last_frame = frame
        generation, lock = self._generation, self._encoding
        # a lock held longer than this is held by a hung encode: the watchdog replaces it
        if not lock.acquire(timeout=self.hang_after):
            return False
        try:
            if generation != self._generation:
                return False
            for encoder in self.encoders.values():
                if not encoder.wants(captured_at):
                    continue
                self._busy_since = time.monotonic()
                try:
                    packets = encoder.encode(frame, captured_at)  # type: ignore[arg-type]
                except (av.FFmpegError, ValueError) as exc:
                    self.encode_errors += 1
                    logger.warning("encoder %s: %s; reopening", encoder.name, exc)
                    encoder.close()
                    continue
                finally:
                    if generation == self._generation:
                        self._busy_since = None
                if generation != self._generation:
                    return False  # it hung and was replaced: these packets are stale
                for packet in packets:
                    self._on_packet(encoder.name, packet)
        finally:
            lock.release()
        return True

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            now = time.monotonic()
            busy = self._busy_since
            state = self.source.state
            quiet_since = self._last_frame_at
            if state == "opening" and self.source.failing_since is not None:
                # a retry after a device error (a missing microphone, every second) has
                # not hung unless this very attempt takes too long
                quiet_since = max(quiet_since, self.source.opening_since)
            if busy is not None and now - busy > self.hang_after:
                self._replace(f"an encoder has not answered for {now - busy:.1f} s")
            elif (
                state in ("running", "opening")
                and now - quiet_since > self.stall_after
                and now >= self._next_restart
            ):
                self._replace(f"the device has given nothing for {now - quiet_since:.1f} s")
            failing = self.source.failing_since
            if (
                self.missing is None  # no slate to send (a microphone): missing all the same
                and state == "failed"
                and failing is not None
                and now - failing >= self.missing_after
            ):
                self.showing_missing = True  # until a frame comes (`_on_frame`)

    def _replace(self, why: str) -> None:
        """Leave the stuck threads behind and go on with fresh ones."""
        self.hangs += 1
        now = time.monotonic()
        self.last_hang = (now, why)
        self._next_restart = now + self._restart_pause
        self._restart_pause = min(self._restart_pause * 2, 60.0)
        if self.source.abandoned >= MAX_ABANDONED:
            self.source.state = "failed"
            self.source.error = (
                f"{why}; {self.source.abandoned} stuck threads already: "
                "restart the service to free the device"
            )
            logger.error("source %s: %s", self.source.name, self.source.error)
            return
        logger.warning(
            "source %s: %s (hung); going on with a fresh thread and encoder",
            self.source.name,
            why,
        )
        self._generation += 1
        self._encoding = threading.Lock()
        self._busy_since = None
        self._last_frame_at = now
        for encoder in self.encoders.values():
            encoder.close()  # a fresh codec context at its next frame (starts with an IDR)
            encoder.request_keyframe()
        self.source.abandon(f"{why} (hung; reopened)")
        self._start_filler()
