"""Packetizing shared packets once for all viewers, and the keyframe hook.

Both reach into aiortc 1.16 private API (`RTCRtpSender._send_keyframe`, the sender's
name-mangled encoder slot); `tests/test_packer.py` guards them against upgrades.
"""

from __future__ import annotations

import collections
import random
import time
from fractions import Fraction
from typing import TYPE_CHECKING

from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import PACKET_MAX, Vp8Encoder, VpxPayloadDescriptor
from aiortc.mediastreams import convert_timebase

from capture import Packet, VideoCodec, temporal_layer

if TYPE_CHECKING:
    from .resync import SequenceShift
    from .track import PacketTrack

VIDEO_CLOCK_BASE = Fraction(1, 90000)
AUDIO_CLOCK_BASE = Fraction(1, 48000)  # Opus RTP clock, whatever the channel count


class SharedPacker:
    """Stands in for a sender's encoder: `pack()` results are cached per packet,
    so N viewers split and packetize each packet once, not N times. VP8 frames get one
    picture ID sequence per bus, the same for every viewer."""

    def __init__(self, kind: str, cache_size: int = 64, codec: VideoCodec = "h264") -> None:
        self.kind = kind
        self.codec = codec
        self._picture_id = random.randint(0, (1 << 15) - 1)
        self._tl0_index = random.randint(0, 255)
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
            if self.codec == "vp8":
                payloads = self._vp8(packet)
                self._picture_id = (self._picture_id + 1) % (1 << 15)
            else:
                payloads = H264Encoder._packetize(H264Encoder._split_bitstream(bytes(packet)))
            timestamp = convert_timebase(packet.pts or 0, packet.time_base, VIDEO_CLOCK_BASE)
        else:
            payloads = [bytes(packet)]
            timestamp = convert_timebase(packet.pts or 0, packet.time_base, AUDIO_CLOCK_BASE)
        self._cache[key] = (packet, payloads, timestamp)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return payloads, timestamp

    def _vp8(self, packet: Packet) -> list[bytes]:
        layer = temporal_layer(packet)
        if layer is None:
            return Vp8Encoder._packetize(bytes(packet), self._picture_id)
        # temporal layers (RFC 7741): TID and TL0PICIDX, so a receiver given the base
        # layer alone knows the frames it misses were never needed
        if layer == 0:
            self._tl0_index = (self._tl0_index + 1) % 256
        descriptor = VpxPayloadDescriptor(
            partition_start=1,
            partition_id=0,
            picture_id=self._picture_id,
            tl0picidx=self._tl0_index,
            tid=(layer, 0),
        )
        buffer, payloads, position = bytes(packet), [], 0
        while position < len(buffer):
            head = bytes(descriptor)
            size = min(len(buffer) - position, PACKET_MAX - len(head))
            payloads.append(head + buffer[position : position + size])
            descriptor.partition_start = 0
            position += size
        return payloads

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("SharedPacker only packs encoded packets")


class SenderCodec:
    """A sender's stand-in encoder: packs with the shared packer of the bus each packet
    came from, and hands the viewer's REMB (aiortc sets `target_bitrate`) to the
    session instead of an encoder shared with other viewers."""

    def __init__(self, track: PacketTrack) -> None:
        self._track = track
        self.remb: int | None = None
        self.remb_at: float | None = None
        self.shift: SequenceShift | None = None  # set for video: resync at keyframes
        self._switches_seen = 0

    @property
    def target_bitrate(self) -> int | None:
        return self.remb

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self.remb = bitrate
        self.remb_at = time.monotonic()

    def pack(self, packet: Packet) -> tuple[list[bytes], int]:
        track = self._track
        bus = track.last_bus
        assert bus is not None, "pack() before the track returned a packet"
        if self.shift is not None and packet.is_keyframe:
            self.shift.at_keyframe(switched=track.switches != self._switches_seen)
            self._switches_seen = track.switches
        return bus.packer.pack(packet)

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("SenderCodec only packs encoded packets")


def attach(sender: RTCRtpSender, track: PacketTrack) -> SenderCodec:
    """Make `sender` pack `track`'s packets with the shared packers and route its
    PLI/FIR to the track's rendition."""
    codec = SenderCodec(track)
    sender.replaceTrack(track)
    sender._RTCRtpSender__encoder = codec  # type: ignore[attr-defined]
    sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]
    return codec
