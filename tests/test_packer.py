"""Guards the two aiortc 1.16 private hooks we rely on (see webrtc/packer.py)."""

from __future__ import annotations

from fractions import Fraction

import av
from aiortc import (
    MediaStreamTrack,
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpSender,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from capture import Packet
from webrtc import PacketBus
from webrtc.packer import SharedPacker, attach

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


def make_sender() -> RTCRtpSender:
    certificate = RTCCertificate.generateCertificate()
    transport = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    return RTCRtpSender("video", transport)


async def test_pli_reaches_the_shared_encoder() -> None:
    sender = make_sender()
    requests: list[int] = []
    attach(sender, SharedPacker("video"), lambda: requests.append(1))
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
    await sender._handle_rtcp_packet(pli)
    assert requests == [1]


async def test_sender_packs_with_the_shared_packer() -> None:
    sender = make_sender()
    packer = SharedPacker("video")
    attach(sender, packer, lambda: None)
    packet = av.Packet(b"\x00\x00\x00\x01\x65" + b"\x11" * 3000)
    packet.pts, packet.time_base = 9000, Fraction(1, 90000)

    class Repeat(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Packet:
            return packet

    sender.replaceTrack(Repeat())
    first = await sender._next_encoded_frame(H264)
    second = await sender._next_encoded_frame(H264)
    assert first is not None and second is not None
    assert first.payloads == second.payloads and len(first.payloads) == 3  # FU-A fragments
    assert first.timestamp == 9000
    assert (packer.misses, packer.hits) == (1, 1)


def test_bus_owns_one_packer() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        bus = PacketBus("x", "video", loop=loop)
        assert isinstance(bus.packer, SharedPacker)
    finally:
        loop.close()
