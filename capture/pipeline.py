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


class SourcePipeline:
    """Feeds each frame of `source` to every encoder that wants it and hands the
    packets to `on_packet` (in the capture thread: hand them over, don't block).

    With a `missing` picture (a slate), a video source that delivers nothing for
    `missing_after` seconds (unplugged, not found) is replaced by that picture at
    `missing_fps` until frames come again, so viewers and the recording see why.
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
    ) -> None:
        self.source = source
        self.encoders = {encoder.name: encoder for encoder in encoders}
        self._on_packet = on_packet
        self.encode_errors = 0
        self.cover: av.VideoFrame | None = None  # sent instead of the picture (privacy)
        self.missing = missing
        self.missing_after = missing_after
        self.missing_fps = missing_fps
        self.showing_missing = False  # the slate is out: the device gives no picture
        self.last_frame: Frame | None = None  # what went out last (a preview)
        self._last_frame_at = time.monotonic()
        self._encoding = threading.Lock()  # the source's thread and the filler's
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None

    def start(self) -> None:
        self._last_frame_at = time.monotonic()
        self._stopping.clear()
        self.source.start(self._on_frame)
        if self.missing is not None:
            self._filler = threading.Thread(
                target=self._fill, name=f"missing-{self.source.name}", daemon=True
            )
            self._filler.start()

    def stop(self) -> None:
        self._stopping.set()
        filler, self._filler = self._filler, None
        if filler is not None:
            filler.join(5.0)
        self.source.stop()
        self.showing_missing = False
        for encoder in self.encoders.values():
            encoder.close()

    def request_keyframe(self, rendition: str) -> None:
        self.encoders[rendition].request_keyframe()

    def _on_frame(self, frame: Frame, captured_at: float) -> None:
        self._last_frame_at = time.monotonic()
        if self.showing_missing:
            self.showing_missing = False
            logger.info("source %s: picture back", self.source.name)
            for encoder in self.encoders.values():
                encoder.request_keyframe()  # viewers see the picture at once
        self._encode(frame, captured_at)

    def _fill(self) -> None:
        assert self.missing is not None
        interval = 1.0 / self.missing_fps
        while not self._stopping.wait(interval):
            now = time.monotonic()
            if now - self._last_frame_at < self.missing_after:
                continue
            if not self.showing_missing:
                self.showing_missing = True
                logger.warning("source %s: no picture; sending the slate", self.source.name)
                for encoder in self.encoders.values():
                    encoder.request_keyframe()
            self._encode(self.missing, now)

    def _encode(self, frame: Frame, captured_at: float) -> None:
        cover = self.cover
        if cover is not None and isinstance(frame, av.VideoFrame):
            frame = cover  # same timing, another picture: the camera is paused
        self.last_frame = frame
        with self._encoding:
            for encoder in self.encoders.values():
                if not encoder.wants(captured_at):
                    continue
                try:
                    packets = encoder.encode(frame, captured_at)  # type: ignore[arg-type]
                except (av.FFmpegError, ValueError) as exc:
                    self.encode_errors += 1
                    logger.warning("encoder %s: %s; reopening", encoder.name, exc)
                    encoder.close()
                    continue
                for packet in packets:
                    self._on_packet(encoder.name, packet)
