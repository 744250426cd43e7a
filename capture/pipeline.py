"""A source and its renditions: capture once, encode once per rendition."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import av

from .encoder import Encoder, Packet
from .source import Frame, Source

logger = logging.getLogger(__name__)

PacketSink = Callable[[str, Packet], None]
"""Called in the capture thread with a rendition name and one of its packets."""


class SourcePipeline:
    """Feeds each frame of `source` to every encoder that wants it and hands the
    packets to `on_packet` (in the capture thread: hand them over, don't block)."""

    def __init__(self, source: Source, encoders: Sequence[Encoder], on_packet: PacketSink) -> None:
        self.source = source
        self.encoders = {encoder.name: encoder for encoder in encoders}
        self._on_packet = on_packet
        self.encode_errors = 0
        self.cover: av.VideoFrame | None = None  # sent instead of the picture (privacy)

    def start(self) -> None:
        self.source.start(self._on_frame)

    def stop(self) -> None:
        self.source.stop()
        for encoder in self.encoders.values():
            encoder.close()

    def request_keyframe(self, rendition: str) -> None:
        self.encoders[rendition].request_keyframe()

    def _on_frame(self, frame: Frame, captured_at: float) -> None:
        cover = self.cover
        if cover is not None and isinstance(frame, av.VideoFrame):
            frame = cover  # same timing, another picture: the camera is paused
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
