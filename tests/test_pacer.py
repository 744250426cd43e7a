"""The pacer: video leaves at its rate, first priority first; audio never waits.
Also guards the aiortc 1.16 private hook it sits in (`RTCDtlsTransport._send_rtp`)."""

from __future__ import annotations

import asyncio
import inspect
import time

from aiortc import RTCDtlsTransport, RTCRtpSender

from webrtc.pacer import WIRE_OVERHEAD, Pacer
from webrtc.resync import Resequencer


def rtp(ssrc: int, size: int) -> bytes:
    return b"\x80\x60" + bytes(6) + ssrc.to_bytes(4, "big") + bytes(size - 12)


class Wire:
    """Stands in for a DTLS transport: records when each packet left."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append((time.monotonic(), int.from_bytes(data[8:12], "big")))


def test_aiortc_sends_all_rtp_through_the_dtls_transport() -> None:
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)
    for method in (RTCRtpSender._run_rtp, RTCRtpSender._retransmit):
        assert "self.transport._send_rtp(" in inspect.getsource(method)


async def test_video_is_paced_by_priority_and_audio_passes() -> None:
    wire = Wire()
    pacer = Pacer(rate=400_000)  # 50 kB/s: a 1000-byte packet each 20 ms
    pacer.priorities = {1: 0, 2: 1}  # camera first, board second; SSRC 3 is audio
    pacer.wrap(wire)  # type: ignore[arg-type]
    pacer.wrap(wire)  # type: ignore[arg-type]  # idempotent
    await pacer.start()
    try:
        started = time.monotonic()
        board = [asyncio.create_task(wire._send_rtp(rtp(2, 1000))) for _ in range(10)]
        await asyncio.sleep(0.01)
        camera = [asyncio.create_task(wire._send_rtp(rtp(1, 1000))) for _ in range(5)]
        await asyncio.sleep(0.01)
        await wire._send_rtp(rtp(3, 200))
        audio_left = time.monotonic() - started
        await asyncio.gather(*board, *camera)
        took = time.monotonic() - started
    finally:
        await pacer.stop()
    assert audio_left < 0.05, "audio waited behind video"
    assert 0.2 < took < 1.5, took  # 15 kB at 50 kB/s ≈ 0.3 s, not one burst
    order = [ssrc for _, ssrc in wire.sent if ssrc != 3]
    assert order.index(1) < len(order) - 5, "the camera waits behind the whole board still"
    assert pacer.sent_by_ssrc[1] == 5 * (1000 + WIRE_OVERHEAD)
    assert pacer.sent_bytes == 15_200 + 16 * WIRE_OVERHEAD


async def test_layers_on_the_transport_are_put_on_once_each() -> None:
    """Pacer and resequencer both hook the transport; a session with three m-lines on
    one BUNDLE transport wraps it three times, layers alternating."""
    wire = Wire()
    pacer, resequencer = Pacer(rate=1e9), Resequencer()
    for _ in range(3):
        pacer.wrap(wire)  # type: ignore[arg-type]
        resequencer.wrap(wire)  # type: ignore[arg-type]
    await wire._send_rtp(rtp(3, 200))
    assert len(wire.sent) == 1
    assert pacer.sent_bytes == 200 + WIRE_OVERHEAD, "the packet went through the pacer once"
