"""The lean send loop (webrtc/sendloop.py): the bytes it puts on the wire are aiortc's own
sender's, byte for byte; NACKs are answered by aiortc's RTX from it; aiortc's sender
reports and stats count what it sent; and it stops like aiortc's loop. Also guards each
private aiortc 1.16 / aioice 0.13 / pylibsrtp 1.0 hook it uses."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpSender,
    clock,
    rtcrtpsender,
)
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    HeaderExtensionsMap,
    RtcpRtpfbPacket,
    RtpPacket,
    is_rtcp,
    unwrap_rtx,
)
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

from capture import MediaKind, Packet
from webrtc import PacketBus, packer, sendloop
from webrtc.pacer import WIRE_OVERHEAD, Pacer
from webrtc.resync import RESYNC_GAP, Resequencer
from webrtc.sendloop import SendLoop, abs_send_time, ntp_time
from webrtc.track import PacketTrack

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
H264_PT, RTX_PT = 102, 103
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=H264_PT)
RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=RTX_PT, parameters={"apt": H264_PT}
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
KEY = os.urandom(30)  # AES_CM_128_HMAC_SHA1_80: 16 bytes key, 14 salt
FIXED_NTP = 0xE8A1_2345_6789_ABCD


def srtp(direction: int) -> Session:
    policy = Policy(key=KEY, ssrc_type=direction)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def source(name: str) -> str:
    return inspect.getsource(getattr(RTCRtpSender, name))


# ------------------------------------------------------------ the private hooks


def test_aiortc_starts_the_rtp_loop_we_replace_and_waits_for_it() -> None:
    assert "self._run_rtp(parameters.codecs[0])" in source("send")
    stop = source("stop")
    assert "self.__rtp_started.wait()" in stop and "self.__rtp_exited.wait()" in stop
    assert "self.__rtp_task.cancel()" in stop


def test_aiortc_writes_only_mid_and_abs_send_time_for_packed_frames() -> None:
    """The header template comes from aiortc's serializer with these two extensions set:
    its loop sets nothing else for pre-encoded packets (audio level only for decoded
    audio frames it encodes; never transport-cc); and the marker on a frame's last."""
    run = source("_run_rtp")
    assert "packet.extensions.abs_send_time = (" in run
    assert "clock.current_ntp_time() >> 14" in run
    assert "packet.extensions.mid = self.__mid" in run
    assert "transport_sequence_number" not in run
    assert "if enc_frame.audio_level is not None:" in run
    assert "packet.marker = (i == len(enc_frame.payloads) - 1) and 1 or 0" in run
    assert "audio_level = rtp.compute_audio_level_dbov(data)" in source("_next_encoded_frame")
    assert "random_sequence_number()" in run and "timestamp_origin = random32()" in run


def test_aiortc_retransmits_from_the_history_we_fill() -> None:
    retransmit = source("_retransmit")
    assert "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)" in retransmit
    assert "packet.sequence_number == sequence_number" in retransmit
    assert "await self.transport._send_rtp(packet_bytes)" in retransmit
    # nothing else reads or writes it but the loop we replace
    for name, member in inspect.getmembers(RTCRtpSender, inspect.isfunction):
        if name not in ("__init__", "_run_rtp", "_retransmit"):
            assert "__rtp_history" not in inspect.getsource(member), name


def test_aiortc_reports_the_counters_we_update() -> None:
    rtcp, stats = source("_run_rtcp"), source("getStats")
    for counter in ("__ntp_timestamp", "__rtp_timestamp", "__packet_count", "__octet_count"):
        assert f"self.{counter}" in rtcp, counter
    assert "packetsSent=self.__packet_count" in stats and "bytesSent=self.__octet_count" in stats
    run = source("_run_rtp")
    assert "self.__octet_count += len(payload)" in run and "self.__packet_count += 1" in run
    assert "self.__rtp_timestamp = packet.timestamp" in run
    dtls = inspect.getsource(RTCDtlsTransport)
    assert "self.__tx_bytes += len(data)" in dtls and "self.__tx_packets += 1" in dtls


def test_the_transport_protects_with_the_session_and_sends_on_the_nominated_pair() -> None:
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "self._state != State.CONNECTED" in send_rtp
    assert "data = self._tx_srtp.protect(data)" in send_rtp
    assert "await self.transport._send(data)" in send_rtp
    assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport.__init__)
    sendto = inspect.getsource(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)


def test_protecting_in_place_gives_pylibsrtps_bytes() -> None:
    """pylibsrtp's cffi binding and its session's `_srtp`, as the loop uses them."""
    packet = bytes([0x80, 102, 0, 7]) + bytes(8) + os.urandom(1200)
    expected = srtp(Policy.SSRC_ANY_OUTBOUND).protect(packet)
    session = srtp(Policy.SSRC_ANY_OUTBOUND)
    buffer = ffi.new("char[]", sendloop.BUFFER_SIZE)
    view = memoryview(ffi.buffer(buffer))
    length = ffi.new("int *")
    view[: len(packet)] = packet
    length[0] = len(packet)
    assert lib.srtp_protect(session._srtp[0], buffer, length) == 0
    assert bytes(view[: length[0]]) == expected


def test_ntp_time_is_aiortcs() -> None:
    ours, theirs = ntp_time(time.time()), clock.current_ntp_time()
    assert abs(ours - theirs) < (1 << 32) // 100  # 10 ms
    assert abs_send_time(FIXED_NTP) == (FIXED_NTP >> 14) & 0xFFFFFF


# ------------------------------------------------------------ a sender on a fake link


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append(data)


@dataclass
class Link:
    """A DTLS transport made to look connected: SRTP keyed with `KEY`, the ICE
    connection's nominated pair a real loopback socket to `collector`."""

    dtls: RTCDtlsTransport
    collector: Collector
    plain: list[bytes] = field(default_factory=list)  # what aiortc's _send_rtp was given
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def received(self) -> list[bytes]:
        """Every SRTP datagram that arrived, unprotected, RTCP left out."""
        session = srtp(Policy.SSRC_ANY_INBOUND)
        return [session.unprotect(d) for d in self.collector.datagrams if not is_rtcp(d)]


@pytest.fixture
async def make_link() -> AsyncIterator[Callable[[], Any]]:
    links: list[Link] = []
    loop = asyncio.get_running_loop()

    async def make() -> Link:
        certificate = RTCCertificate.generateCertificate()
        ice = RTCIceTransport(RTCIceGatherer())
        dtls = RTCDtlsTransport(ice, [certificate])
        dtls._state = State.CONNECTED
        dtls._tx_srtp = srtp(Policy.SSRC_ANY_OUTBOUND)
        connection = ice._connection
        receive, collector = await loop.create_datagram_endpoint(
            Collector, local_addr=("127.0.0.1", 0)
        )
        send, protocol = await loop.create_datagram_endpoint(
            lambda: aioice.ice.StunProtocol(connection), local_addr=("127.0.0.1", 0)
        )
        host, port = receive.get_extra_info("sockname")
        remote = aioice.Candidate("1", 1, "udp", 1, host, port, "host")
        connection._nominated[1] = aioice.ice.CandidatePair(protocol, remote)
        link = Link(dtls, collector, closers=[receive.close, send.close])
        links.append(link)
        return link

    yield make
    for link in links:
        for close in link.closers:
            close()


def parameters(kind: MediaKind, extensions: list[tuple[int, str]]) -> RTCRtpSendParameters:
    return RTCRtpSendParameters(
        codecs=[H264, RTX] if kind == "video" else [OPUS],
        headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions],
        muxId="1" if kind == "video" else "camera-and-sound",
        rtcp=RTCRtcpParameters(cname="teacher", ssrc=1),
    )


def frame(kind: MediaKind, number: int, size: int, keyframe: bool = False) -> Packet:
    if kind == "video":
        nal = b"\x65" if keyframe else b"\x41"
        packet = av.Packet(b"\x00\x00\x00\x01" + nal + bytes([number % 256]) * size)
        packet.pts, packet.time_base = number * 3000, Fraction(1, 90000)
    else:
        packet = av.Packet(bytes([number % 256]) * size)
        packet.pts, packet.time_base = number * 960, Fraction(1, 48000)
    packet.is_keyframe = keyframe or kind == "audio"
    return packet


async def until(condition: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def sender_on(
    link: Link, kind: MediaKind, bus: PacketBus, ssrc: int = 0x1122_3344
) -> tuple[RTCRtpSender, PacketTrack, packer.SenderCodec]:
    sender = RTCRtpSender(kind, link.dtls)
    sender._ssrc = ssrc
    track = PacketTrack(kind, bus)
    return sender, track, packer.attach(sender, track)


@pytest.mark.parametrize(
    ("kind", "extensions"),
    [
        ("video", [(1, MID), (3, ABS_SEND_TIME)]),  # aiortc's own ids
        ("video", [(4, MID), (2, ABS_SEND_TIME), (3, TWCC)]),  # Chrome's offer
        ("video", [(15, MID), (3, ABS_SEND_TIME)]),  # a two-byte header
        ("video", []),
        ("audio", [(1, MID), (2, AUDIO_LEVEL)]),
    ],
)
async def test_the_loop_sends_what_aiortc_would_byte_for_byte(
    make_link: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
    kind: MediaKind,
    extensions: list[tuple[int, str]],
) -> None:
    bus = PacketBus("room/camera/high", kind, loop=asyncio.get_running_loop())
    theirs, ours = await make_link(), await make_link()

    async def capture(data: bytes) -> None:
        if not is_rtcp(data):
            theirs.plain.append(data)

    theirs.dtls._send_rtp = capture
    aiortc_sender, _, _ = sender_on(theirs, kind, bus)
    our_sender, track, codec = sender_on(ours, kind, bus)
    loop = sendloop.install(our_sender, track, codec)
    # one random start and one clock for both
    monkeypatch.setattr(rtcrtpsender, "random_sequence_number", lambda: 65530)
    monkeypatch.setattr(rtcrtpsender, "random32", lambda: 0xFFFF_FF00)
    monkeypatch.setattr(clock, "current_ntp_time", lambda: FIXED_NTP)
    monkeypatch.setattr(sendloop, "ntp_time", lambda now: FIXED_NTP)
    loop._sequence, loop._timestamp_origin = 65530, 0xFFFF_FF00
    await aiortc_sender.send(parameters(kind, extensions))
    await our_sender.send(parameters(kind, extensions))
    try:
        sizes = [3000, 20, 1299, 2600, 5] if kind == "video" else [80, 120, 3]
        for number, size in enumerate(sizes):
            bus.publish(frame(kind, number, size, keyframe=number == 0))
        await until(lambda: len(theirs.plain) >= (8 if kind == "video" else 3))
        await until(lambda: len(ours.received()) >= len(theirs.plain))
        assert ours.received() == theirs.plain
    finally:
        await aiortc_sender.stop()
        await our_sender.stop()
    stats = [s for s in (await our_sender.getStats()).values() if s.type == "outbound-rtp"]
    assert stats[0].packetsSent == len(theirs.plain)
    assert stats[0].bytesSent == sum(len(RtpPacket.parse(p).payload) for p in theirs.plain)
    last = RtpPacket.parse(theirs.plain[-1])
    assert vars(our_sender)["_RTCRtpSender__rtp_timestamp"] == last.timestamp
    assert vars(our_sender)["_RTCRtpSender__ntp_timestamp"] == FIXED_NTP
    transport_stats = [s for s in ours.dtls._get_stats().values() if s.type == "transport"]
    assert transport_stats[0].packetsSent >= len(theirs.plain)
    srtp_sizes = [len(d) for d in ours.collector.datagrams if not is_rtcp(d)]
    assert transport_stats[0].bytesSent >= sum(srtp_sizes)  # and RTCP, if any


async def test_a_nack_is_answered_by_aiortcs_rtx_with_the_resynced_number(
    make_link: Callable[[], Any],
) -> None:
    """With the viewer's resequencer and pacer: the loop numbers and counts what it
    sends; after a NACK the next keyframe starts after the gap; aiortc resends a packet
    from our history as RTX naming its wire number."""
    bus = PacketBus("room/camera/high", "video", loop=asyncio.get_running_loop())
    link = await make_link()
    sender, track, codec = sender_on(link, "video", bus)
    pacer, resequencer = Pacer(rate=1e9), Resequencer()
    pacer.priorities[sender._ssrc] = 0
    pacer.retransmission_ssrcs.add(sender._rtx_ssrc)
    codec.shift = shift = resequencer.watch(sender)
    loop = sendloop.install(sender, track, codec, pacer, resequencer)
    pacer.wrap(link.dtls)
    resequencer.wrap(link.dtls)
    await pacer.start()
    await sender.send(parameters("video", [(1, MID), (3, ABS_SEND_TIME)]))
    extensions = HeaderExtensionsMap()
    extensions.configure(parameters("video", [(1, MID), (3, ABS_SEND_TIME)]))
    try:
        bus.publish(frame("video", 0, 3000, keyframe=True))
        bus.publish(frame("video", 1, 100))
        await until(lambda: len(link.received()) == 4)
        sent = [RtpPacket.parse(p, extensions) for p in link.received()]
        assert [p.extensions.mid for p in sent] == ["1"] * 4
        assert [p.marker for p in sent] == [0, 0, 1, 1]
        first = sent[0].sequence_number
        assert [p.sequence_number for p in sent] == [(first + i) % 0x10000 for i in range(4)]
        assert shift.sent_packets == 4
        on_wire = sum(len(p) + WIRE_OVERHEAD for p in link.received())
        assert pacer.sent_by_ssrc[sender._ssrc] == on_wire

        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc)
        nack.lost = [sent[1].sequence_number]
        await sender._handle_rtcp_packet(nack)
        await until(lambda: len(link.received()) == 5)
        rtx = RtpPacket.parse(link.received()[4], extensions)
        assert rtx.ssrc == sender._rtx_ssrc and rtx.payload_type == RTX_PT
        resent = unwrap_rtx(rtx, payload_type=H264_PT, ssrc=sender._ssrc)
        assert resent.sequence_number == sent[1].sequence_number
        assert resent.payload == sent[1].payload and resent.timestamp == sent[1].timestamp
        assert resent.extensions.mid == "1"

        bus.publish(frame("video", 2, 100, keyframe=True))  # resync: after the gap
        await until(lambda: len(link.received()) == 6)
        after = RtpPacket.parse(link.received()[5])
        assert after.sequence_number == (first + 4 + RESYNC_GAP) % 0x10000
        assert shift.resyncs == 1
        nack.lost = [after.sequence_number]
        await sender._handle_rtcp_packet(nack)
        await until(lambda: len(link.received()) == 7)
        rtx = RtpPacket.parse(link.received()[6])
        assert rtx.payload[:2] == after.sequence_number.to_bytes(2, "big")
        assert loop.protect_errors == 0
    finally:
        await sender.stop()
        await pacer.stop()


async def test_a_paced_keyframe_is_spread_and_the_camera_goes_first(
    make_link: Callable[[], Any],
) -> None:
    loop_ = asyncio.get_running_loop()
    camera = PacketBus("room/camera/high", "video", loop=loop_)
    board = PacketBus("room/board/high", "video", loop=loop_)
    link = await make_link()
    pacer = Pacer(rate=400_000)  # 50 kB/s
    senders = []
    for priority, bus in enumerate((camera, board)):
        sender, track, codec = sender_on(link, "video", bus, ssrc=100 + priority)
        pacer.priorities[sender._ssrc] = priority
        sendloop.install(sender, track, codec, pacer)
        senders.append(sender)
    still, picture = frame("video", 0, 10_000, keyframe=True), frame("video", 0, 5_000, True)
    packets = len(board.packer.pack(still)[0]) + len(camera.packer.pack(picture)[0])
    await pacer.start()
    for sender in senders:
        await sender.send(parameters("video", [(1, MID), (3, ABS_SEND_TIME)]))
    try:
        started = time.monotonic()
        board.publish(still)
        await asyncio.sleep(0.01)
        camera.publish(picture)
        await until(lambda: len(link.received()) == packets, limit=5)
        took = time.monotonic() - started
    finally:
        for sender in senders:
            await sender.stop()
        await pacer.stop()
    assert 0.15 < took < 1.5, took  # 15 kB at 50 kB/s ≈ 0.3 s, not one burst
    order = [RtpPacket.parse(p).ssrc for p in link.received()]
    assert order.index(100) < len(order) - 5, "the camera waited behind the whole board"


async def test_history_finds_packets_across_the_wrap_and_forgets_old_ones() -> None:
    certificate = RTCCertificate.generateCertificate()
    sender = RTCRtpSender(
        "video", RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    )
    track = PacketTrack("video")
    loop = SendLoop(sender, track, packer.SenderCodec(track))
    history = loop.history
    assert history.get(5) is None
    history.add((65534, 1000, [b"a", b"b", b"c"]))  # 65534, 65535, 0
    history.add((1, 4000, [b"d"]))
    packet = history.get(65535 % RTP_HISTORY_SIZE)
    assert packet is not None and packet.sequence_number == 65535 and packet.payload == b"b"
    assert packet.marker == 0 and packet.timestamp == 1000
    zero = history.get(0)
    assert zero is not None and zero.payload == b"c" and zero.marker == 1
    for number in range(2, 2 + RTP_HISTORY_SIZE):
        history.add((number, 5000 + number, [b"x"]))
    old = history.get(65535 % RTP_HISTORY_SIZE)
    assert old is None or old.sequence_number != 65535  # aiortc checks the number


async def test_stop_ends_the_loop_and_the_track(make_link: Callable[[], Any]) -> None:
    bus = PacketBus("room/camera/high", "video", loop=asyncio.get_running_loop())
    link = await make_link()
    sender, track, codec = sender_on(link, "video", bus)
    sendloop.install(sender, track, codec)
    await sender.send(parameters("video", [(1, MID)]))
    await asyncio.sleep(0)
    await asyncio.wait_for(sender.stop(), 2)
    assert track.readyState == "ended"
    assert bus.subscribers == 0


async def test_a_packet_leaves_within_publish_and_a_switch_swaps_there(
    make_link: Callable[[], Any],
) -> None:
    """While the loop waits, a packet is sent from the bus's `publish` itself (no task
    switch); the rendition switch happens there too, on the target's keyframe."""
    loop_ = asyncio.get_running_loop()
    high = PacketBus("room/camera/high", "video", loop=loop_)
    low = PacketBus("room/camera/low", "video", loop=loop_)
    link = await make_link()
    sender, track, codec = sender_on(link, "video", high)
    pacer = Pacer(rate=1e9)
    pacer.priorities[sender._ssrc] = 0
    sendloop.install(sender, track, codec, pacer)
    await pacer.start()
    await sender.send(parameters("video", [(1, MID)]))
    try:
        await asyncio.sleep(0.01)  # the loop waits for packets
        before = pacer.sent_bytes
        high.publish(frame("video", 0, 100, keyframe=True))
        assert pacer.sent_bytes > before, "sent within publish"
        track.switch(low)
        high.publish(frame("video", 1, 100))  # still high until low has a keyframe
        low.publish(frame("video", 2, 100))  # not a keyframe: dropped by the subscription
        sent = pacer.sent_bytes
        assert track.current is not None and track.current.bus is high
        low.publish(frame("video", 3, 200, keyframe=True))
        assert pacer.sent_bytes > sent and track.switches == 1
        assert track.current is not None and track.current.bus is low and track.pending is None
        assert high.subscribers == 0 and low.subscribers == 1
        await until(lambda: len(link.received()) == 3)
        assert [len(RtpPacket.parse(p).payload) for p in link.received()] == [
            101,
            101,
            201,
        ]  # the NAL units
    finally:
        await sender.stop()
        await pacer.stop()


async def test_a_failure_within_publish_ends_the_loop_not_the_publish(
    make_link: Callable[[], Any],
) -> None:
    bus = PacketBus("room/camera/high", "video", loop=asyncio.get_running_loop())
    link = await make_link()
    sender, track, codec = sender_on(link, "video", bus)
    others = bus.subscribe()
    sendloop.install(sender, track, codec)
    await sender.send(parameters("video", [(1, MID)]))
    try:
        await asyncio.sleep(0.01)
        link.dtls._state = State.CLOSED
        bus.publish(frame("video", 0, 100, keyframe=True))  # raises nothing here
        assert len(others) == 1, "the other subscribers still got it"
        await until(lambda: track.readyState == "ended")
        assert link.received() == []
    finally:
        await asyncio.wait_for(sender.stop(), 2)
