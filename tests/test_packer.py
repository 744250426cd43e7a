"""Guards the aiortc 1.16 private hooks we rely on (see webrtc/packer.py)."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpSender,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from capture import MediaKind
from webrtc import PacketBus
from webrtc.packer import SharedPacker, attach
from webrtc.track import PacketTrack

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


def make_sender() -> RTCRtpSender:
    certificate = RTCCertificate.generateCertificate()
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    return RTCRtpSender("video", transport)


def make_bus(kind: MediaKind = "video") -> PacketBus:
    return PacketBus("room/camera/high", kind, loop=asyncio.get_running_loop())


async def test_pli_reaches_the_shared_encoder() -> None:
    sender = make_sender()
    requests: list[int] = []
    bus = PacketBus(
        "room/camera/high",
        "video",
        loop=asyncio.get_running_loop(),
        request_keyframe=lambda: requests.append(1),
    )
    attach(sender, PacketTrack("video", bus))
    requests.clear()  # subscribing asked for one already
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
    await sender._handle_rtcp_packet(pli)
    assert requests == [1]


async def test_remb_reaches_the_viewer_not_the_shared_encoder() -> None:
    sender = make_sender()
    codec = attach(sender, PacketTrack("video", make_bus()))
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(345_000, [sender._ssrc])
    )
    await sender._handle_rtcp_packet(remb)
    assert codec.remb == 345_000 and codec.remb_at is not None


async def test_sender_packs_with_the_shared_packer() -> None:
    sender = make_sender()
    bus = make_bus()
    track = PacketTrack("video", bus)
    attach(sender, track)
    packet = av.Packet(b"\x00\x00\x00\x01\x65" + b"\x11" * 3000)
    packet.pts, packet.time_base = 9000, Fraction(1, 90000)
    packet.is_keyframe = True
    bus.publish(packet)
    bus.publish(packet)
    first = await sender._next_encoded_frame(H264)
    second = await sender._next_encoded_frame(H264)
    assert first is not None and second is not None
    assert first.payloads == second.payloads and len(first.payloads) == 3  # FU-A fragments
    assert first.timestamp == 9000
    assert (bus.packer.misses, bus.packer.hits) == (1, 1)


def test_bus_owns_one_packer() -> None:
    loop = asyncio.new_event_loop()
    try:
        bus = PacketBus("x", "video", loop=loop)
        assert isinstance(bus.packer, SharedPacker)
    finally:
        loop.close()
