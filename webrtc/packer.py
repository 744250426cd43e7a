"""Packetizing shared packets once for all viewers, and the keyframe hook.

Both reach into aiortc 1.16 private API (`RTCRtpSender._send_keyframe`, the sender's
name-mangled encoder slot); `tests/test_packer.py` guards them against upgrades.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from fractions import Fraction

from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import convert_timebase

from capture import Packet

VIDEO_CLOCK_BASE = Fraction(1, 90000)
AUDIO_CLOCK_BASE = Fraction(1, 48000)  # Opus RTP clock, whatever the channel count


class SharedPacker:
    """Stands in for a sender's encoder: `pack()` results are cached per packet,
    so N viewers split and packetize each packet once, not N times."""

    def __init__(self, kind: str, cache_size: int = 64) -> None:
        self.kind = kind
        self._cache: collections.OrderedDict[int, tuple[Packet, list[bytes], int]] = (
            collections.OrderedDict()
        )
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        key = id(packet)
        cached = self._cache.get(key)
        if cached is not None:  # the cache keeps its packets alive, so ids are not reused
            self.hits += 1
            return cached[1], cached[2]
        self.misses += 1
        if self.kind == "video":
            payloads = H264Encoder._packetize(H264Encoder._split_bitstream(bytes(packet)))
            timestamp = convert_timebase(packet.pts or 0, packet.time_base, VIDEO_CLOCK_BASE)
        else:
            payloads = [bytes(packet)]
            timestamp = convert_timebase(packet.pts or 0, packet.time_base, AUDIO_CLOCK_BASE)
        self._cache[key] = (packet, payloads, timestamp)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return payloads, timestamp

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("SharedPacker only packs encoded packets")


def attach(
    sender: RTCRtpSender, packer: SharedPacker, on_keyframe_request: Callable[[], None]
) -> None:
    """Make `sender` use the shared `packer` and route its PLI/FIR to `on_keyframe_request`."""
    sender._RTCRtpSender__encoder = packer  # type: ignore[attr-defined]
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
