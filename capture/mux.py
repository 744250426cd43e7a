"""Fragmented MP4 files muxed from packets that are already encoded (no second encode).

A file is written as the packets come: a fragment (moof + mdat) at least every second,
pushed to the disk with fsync at least every second, so a kill -9 or a power cut leaves
a playable file missing at most the last couple of seconds. The output is never
seeked: its SHA-256 and size are known the moment it is closed.

Blocking: one thread owns a writer (the recorder's).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .encoder import AUDIO_RATE, AUDIO_TIME_BASE, VIDEO_TIME_BASE, Packet

OPUS_PRE_SKIP = 312  # samples libopus holds back at 48 kHz (its lookahead)
H264_SPS, H264_PPS = 7, 8
FRAGMENT_SECONDS = 1.0
SYNC_SECONDS = 1.0


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, without their start codes."""
    units: list[bytes] = []
    start = -1
    index = 0
    while (found := data.find(b"\x00\x00\x01", index)) != -1:
        if start >= 0:
            units.append(data[start:found].rstrip(b"\x00"))
        start = index = found + 3
    if start >= 0:
        units.append(data[start:])
    return [unit for unit in units if unit]


def h264_parameter_sets(keyframe: bytes) -> bytes | None:
    """SPS and PPS of an Annex-B IDR (x264 repeats them before every IDR) as Annex-B
    extradata, which the MP4 muxer turns into its avcC box; None if either is missing."""
    units = annexb_units(keyframe)
    sps = next((u for u in units if u[0] & 0x1F == H264_SPS), None)
    pps = next((u for u in units if u[0] & 0x1F == H264_PPS), None)
    if sps is None or pps is None:
        return None
    return b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps


def opus_head(channels: int) -> bytes:
    """The OpusHead identification header (RFC 7845) the MP4 muxer needs for its dOps."""
    return (
        b"OpusHead"
        + bytes([1, channels])
        + OPUS_PRE_SKIP.to_bytes(2, "little")
        + AUDIO_RATE.to_bytes(4, "little")
        + b"\x00\x00\x00"  # output gain 0, mapping family 0
    )


class _HashingFile:
    """What the muxer writes to: a file that hashes as it goes and cannot seek."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("xb")  # never overwrite a part already on disk
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        written = self._file.write(data)
        self.sha256.update(data)
        self.size += written
        return written

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


@dataclass(frozen=True)
class TrackSpec:
    """One track of a file: a video rendition (H.264) or the microphone (Opus)."""

    name: str
    kind: str  # "video" | "audio"
    width: int = 0
    height: int = 0
    channels: int = 1
    extradata: bytes = b""


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size: int
    sha256: str
    duration: float  # seconds, first to last packet
    packets: int


class Mp4Writer:
    """One fragmented MP4 file. `write()` takes shared packets (it copies them) whose
    `pts` count from any origin; `zero` (seconds, in that origin's time) becomes the
    file's time zero, and earlier packets are left out. Gaps stay gaps."""

    def __init__(
        self,
        path: Path,
        tracks: list[TrackSpec],
        *,
        zero: Fraction,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.zero = zero
        self._out = _HashingFile(path)
        options = {
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": str(int(FRAGMENT_SECONDS * 1e6)),
            "flush_packets": "1",
            "max_interleave_delta": "1000000",  # a stalled camera holds audio back ≤ 1 s
        }
        self._container: Any = av.open(self._out, "w", format="mp4", options=options)
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value
        self._streams: dict[str, Any] = {}
        self._time_bases: dict[str, Fraction] = {}
        self._last_pts: dict[str, int] = {}
        for track in tracks:
            stream: Any
            if track.kind == "video":
                stream = self._container.add_stream("h264")
                stream.width, stream.height = track.width, track.height
                stream.time_base = VIDEO_TIME_BASE
                self._time_bases[track.name] = VIDEO_TIME_BASE
            else:
                stream = self._container.add_stream("opus", rate=AUDIO_RATE)
                stream.codec_context.layout = "mono" if track.channels == 1 else "stereo"
                stream.time_base = AUDIO_TIME_BASE
                self._time_bases[track.name] = AUDIO_TIME_BASE
            stream.codec_context.extradata = track.extradata
            self._streams[track.name] = stream
        self._synced_at = time.monotonic()
        self._first: float | None = None
        self._last = 0.0
        self.packets = 0

    def write(self, track: str, packet: Packet) -> bool:
        """Mux a copy of `packet`; False when it falls before the file's zero or does not
        move its track's time forward (it is left out)."""
        if packet.pts is None or packet.time_base is None:
            return False
        base = self._time_bases[track]
        pts = round((packet.pts * packet.time_base - self.zero) / base)
        if pts < 0 or pts <= self._last_pts.get(track, -1):
            return False
        copy = av.Packet(bytes(packet))
        copy.pts = copy.dts = pts
        copy.time_base = base
        copy.is_keyframe = packet.is_keyframe
        copy.stream = self._streams[track]
        self._container.mux(copy)
        self._last_pts[track] = pts
        seconds = float(pts * base)
        self._first = seconds if self._first is None else min(self._first, seconds)
        self._last = max(self._last, seconds)
        self.packets += 1
        if time.monotonic() - self._synced_at >= SYNC_SECONDS:
            self.sync()
        return True

    def sync(self) -> None:
        """Push what the muxer has handed over to the disk."""
        self._out.sync()
        self._synced_at = time.monotonic()

    def close(self) -> WrittenFile:
        """Write the last fragment and close; safe to call twice."""
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
                self._out.close()
        duration = self._last - (self._first or 0.0)
        return WrittenFile(
            self.path, self._out.size, self._out.sha256.hexdigest(), duration, self.packets
        )


def probe(path: Path) -> tuple[float, int]:
    """Duration (seconds) and packet count of a file already on disk, read to its end
    (an MP4 cut short by a crash has no index to say)."""
    first: float | None = None
    last = 0.0
    packets = 0
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            moment = float(packet.pts * packet.time_base)
            first = moment if first is None else min(first, moment)
            last = max(last, moment)
            packets += 1
    return last - (first or 0.0), packets


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()
