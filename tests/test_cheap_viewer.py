"""bench/cheap_viewer.py: cheap load viewers count RTP from the clear header and send
receiver reports the server reads; and guards of the aiortc 1.16 / aioice 0.13 private
parts they rely on (an upgrade that moves them fails here, loudly)."""

from __future__ import annotations

import asyncio
import inspect
import os
import struct
import time

import aioice
import httpx
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcdtlstransport import SRTP_PROFILES, State
from aiortc.rtp import RtcpPacket, RtcpRrPacket
from OpenSSL import SSL

from bench.cheap_viewer import TAG_BYTES, CheapViewer, Layout, Stream
from tests.conftest import Service
from tests.whep_client import eventually

# ------------------------------------------------------------ the private hooks


def make_dtls() -> RTCDtlsTransport:
    certificate = RTCCertificate.generateCertificate()
    return RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])


async def test_ice_protocols_take_an_instance_datagram_hook() -> None:
    """`RTCIceTransport._connection` is aioice's `Connection`, whose `_protocols` are
    `StunProtocol`s; asyncio calls `datagram_received` on the instance, so one set on it
    sees every datagram, and the class's own still hands non-STUN to the connection."""
    dtls = make_dtls()
    connection = dtls.transport._connection
    assert isinstance(connection, aioice.Connection)
    assert connection._protocols == []
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(connection), local_addr=("127.0.0.1", 0)
    )
    try:
        address = transport.get_extra_info("sockname")
        protocol.local_candidate = aioice.Candidate(
            "1", 1, "udp", 1, address[0], address[1], "host"
        )
        seen: list[bytes | str] = []

        def hook(data: bytes | str, addr: tuple[object, ...]) -> None:
            seen.append(data)

        original = protocol.datagram_received
        protocol.datagram_received = hook  # type: ignore[method-assign]
        transport.sendto(b"\x80\x60" + bytes(20), address)
        assert await eventually(lambda: len(seen) == 1, 5)
        original(b"\x80\x60" + bytes(20), address)  # not STUN: queued for aiortc's DTLS
        assert connection._queue.get_nowait() == (b"\x80\x60" + bytes(20), 1)
    finally:
        transport.close()


async def test_dtls_transport_srtp_contexts_and_send_rtp() -> None:
    """`_rx_srtp`, `_tx_srtp` and `_ssl` exist (None before the handshake), and
    `_send_rtp` protects RTCP with `_tx_srtp` and hands it to the ICE transport."""
    dtls = make_dtls()
    assert dtls._rx_srtp is None and dtls._tx_srtp is None and dtls._ssl is None
    assert inspect.iscoroutinefunction(dtls._send_rtp)
    assert hasattr(SSL.Connection, "get_selected_srtp_profile")
    assert {p.openssl_profile for p in SRTP_PROFILES} <= TAG_BYTES.keys()
    key = os.urandom(30)
    out = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    inbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    dtls._tx_srtp = pylibsrtp.Session(out)
    dtls._state = State.CONNECTED
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    dtls.transport._send = send
    report = bytes(RtcpRrPacket(ssrc=7))
    await dtls._send_rtp(report)
    assert len(sent) == 1 and sent[0] != report
    assert pylibsrtp.Session(inbound).unprotect_rtcp(sent[0]) == report


# ------------------------------------------------------------ counting


def rtp(seq: int, timestamp: int, ssrc: int = 5, marker: bool = False, size: int = 100) -> bytes:
    return struct.pack("!BBHII", 0x80, 96 | (0x80 if marker else 0), seq, timestamp, ssrc) + bytes(
        size + 10  # payload + the SRTP auth tag
    )


def test_stream_counts_wraps_and_reports_loss() -> None:
    stream = Stream(5, "camera", True, 10, rtp(65534, 0))
    stream.add(rtp(65535, 0, marker=True))
    stream.add(rtp(1, 3000, marker=True))  # the sequence wrapped, 0 is lost
    assert (stream.packets, stream.bytes, stream.frames) == (3, 300, 2)
    assert (stream.highest, stream.expected) == (65536 + 1, 4)
    block = stream.report(lsr=0x1234, dlsr=65536)
    assert (block.highest_sequence, block.packets_lost, block.fraction_lost) == (65537, 1, 64)
    assert (block.lsr, block.dlsr) == (0x1234, 65536)
    for seq in (3, 5, 7, 9, 11):  # 2, 4, … 10 lost: 5 of the next 10
        stream.add(rtp(seq, 6000))
    stream.add(rtp(65535, 0))  # late: counted, no news of the highest number
    block = stream.report(lsr=0, dlsr=0)
    assert (block.highest_sequence, block.packets_lost) == (65536 + 11, 14 - 9)
    assert block.fraction_lost == (4 << 8) // 10  # the late one offsets one loss
    stream.pretend_loss(0.5)
    for seq in range(12, 22):
        stream.add(rtp(seq, 9000))
    block = stream.report(lsr=0, dlsr=0)
    assert (block.packets_lost, block.fraction_lost) == (5 + 5, 128)
    packet = RtcpPacket.parse(bytes(RtcpRrPacket(ssrc=1, reports=[block])))[0]
    assert isinstance(packet, RtcpRrPacket) and packet.reports == [block]


def test_layout_tells_streams_by_ssrc_mid_or_payload_type() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "a=mid:0",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=ssrc:111 cname:x",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "a=mid:1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:2",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        ]
    )
    layout = Layout.parse(sdp)
    assert layout.mid_extension == 4 and [s.mid for s in layout.sections] == ["0", "1", "2", ""]
    plain = rtp(1, 0, ssrc=222)
    assert layout.section(111, plain) is layout.sections[0]
    assert layout.section(222, plain) is None  # PT 96 is in two sections
    tagged = bytearray(plain)
    tagged[0] |= 0x10  # one-byte header extension: id 4, "1"
    tagged[12:12] = b"\xbe\xde\x00\x01" + b"\x40" + b"1" + b"\x00\x00"
    assert layout.section(222, bytes(tagged)) is layout.sections[1]
    audio = bytearray(plain)
    audio[1] = 111
    assert layout.section(333, bytes(audio)) is layout.sections[2]


# ------------------------------------------------------------ against the demo service


async def test_cheap_viewers_count_three_streams_and_the_server_reads_their_reports(
    demo_service: Service,
) -> None:
    token = demo_service.token()
    viewers = [CheapViewer(demo_service.whep(), token) for _ in range(3)]
    async with httpx.AsyncClient(timeout=20) as client:
        try:
            for viewer in viewers:
                assert (await viewer.connect(client)).status_code == 201
            assert await eventually(lambda: all(v.flowing() for v in viewers), 10)
            before = [v.path.counts() for v in viewers if v.path]
            started = time.monotonic()
            await asyncio.sleep(3)
            after = [v.path.counts() for v in viewers if v.path]
            seconds = time.monotonic() - started
            for viewer, old, new in zip(viewers, before, after, strict=True):
                assert viewer.path is not None
                assert sorted(s.name for s in viewer.path.streams.values()) == [
                    "audio",
                    "board",
                    "camera",
                ]

                rate = {
                    f"{name} {key}": (new[name][key] - old[name][key]) / seconds
                    for name in new
                    for key in new[name]
                }
                assert 20 <= rate["camera frames"] <= 40, rate  # 30 fps
                assert rate["camera packets"] >= rate["camera frames"], rate
                assert rate["camera bytes"] > 20_000, rate
                assert 2 <= rate["board frames"] <= 8, rate  # 5 fps
                assert 40 <= rate["audio packets"] <= 60, rate  # 20 ms Opus
                assert viewer.path.sender_reports > 0 and viewer.path.rtcp_errors == 0
                assert viewer.path.receiver_reports > 0 and viewer.path.lost() < 10
                for name in ("camera", "board", "audio"):  # aiortc's receivers saw nothing
                    assert await viewer.packets_received(name) <= 5

            # the server reads the reports: a claimed 30 % loss reaches its rate controller
            viewers[0].path.pretend_loss(0.3)  # type: ignore[union-attr]

            async def loss(viewer: CheapViewer) -> float:
                assert viewer.location is not None
                state = (await client.get(viewer.location)).json()
                return float(state["loss"])

            for _ in range(30):  # the server adapts every second or so: 9 s at most
                if await loss(viewers[0]) >= 0.2:
                    break
                await asyncio.sleep(0.3)
            assert 0.2 <= await loss(viewers[0]) <= 0.5
            assert max([await loss(v) for v in viewers[1:]]) < 0.1  # the honest ones
        finally:
            await asyncio.gather(*(v.close(client) for v in viewers))
