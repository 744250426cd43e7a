"""Pacing one viewer's video onto the wire.

aiortc has no pacer: a sender writes all RTP packets of a frame at once, so a keyframe
leaves as one burst that a thin link's queue drops. The pacer lets video out at `rate`
bits/s, first line first (the camera before the board still): each sender's send loop
(webrtc/sendloop.py) takes its turn before every packet (`try_take`, else `acquire`).
Audio, RTCP and retransmissions never wait: they pass at once and only count against
the budget; retransmissions are dropped instead while the budget is overdrawn. What
aiortc still sends itself (RTCP, retransmissions) meets the pacer in the viewer's DTLS
transport (aiortc 1.16 private `RTCDtlsTransport._send_rtp`, guarded by
`tests/test_pacer.py`), where `wrap` puts it; so would any RTP sent there.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiortc import RTCDtlsTransport
from aiortc.rtp import is_rtcp

Clock = Callable[[], float]
SendRtp = Callable[[bytes], Awaitable[None]]

WIRE_OVERHEAD = 52  # bytes a packet gains below RTP: SRTP tag, UDP, IPv4, Ethernet
OVERDRAFT = 0.05  # seconds of the rate that unpaced packets may run ahead of it


class Pacer:
    """A token bucket with prioritized waiters; `start()`/`stop()` own its drain task.
    Sizes count what a packet costs on the wire, not just its RTP bytes."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rate = rate
        self._tokens = 0.0
        self._filled_at = clock()
        self._waiting: list[tuple[int, int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.priorities: dict[int, int] = {}  # SSRC -> priority (0 first); others pass
        self.retransmission_ssrcs: set[int] = set()  # pass, or are dropped when overdrawn
        self.dropped_retransmissions = 0
        self.sent_bytes = 0
        self.sent_by_ssrc: Counter[int] = Counter()

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, bits_per_second: float) -> None:
        self._refill()
        self._rate = max(bits_per_second, 8_000.0)

    @property
    def burst(self) -> float:
        """Bytes that may leave back to back: 10 ms at the rate, at least two packets."""
        return max(self._rate / 8 * 0.010, 2600.0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, _, _, future in self._waiting:
            future.cancel()
        self._waiting.clear()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * self._rate / 8)
        self._filled_at = now

    async def acquire(self, size: int, priority: int) -> None:
        """Wait until `size` bytes of priority `priority` may leave."""
        self._refill()
        if not self._waiting and self._tokens > 0:
            self._tokens -= size
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), size, future))
        self._wake.set()
        await future

    def try_take(self, size: int) -> bool:
        """Let `size` bytes leave now if they may, without waiting (else `acquire`); the
        bucket is refilled only when it looks empty, so a packet that may go costs no
        clock read."""
        if self._waiting:
            return False
        if self._tokens <= 0:
            self._refill()
            if self._tokens <= 0:
                return False
        self._tokens -= size
        return True

    def debit(self, size: int) -> None:
        """Count bytes that left without waiting (audio, RTCP)."""
        self._refill()
        self._tokens -= size

    def overdrawn(self) -> bool:
        """More than `OVERDRAFT` seconds of the rate already left ahead of it: a
        retransmission now would only add to the loss it repairs."""
        self._refill()
        return self._tokens < -self._rate / 8 * OVERDRAFT

    async def _drain(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._refill()
            if self._tokens <= 0:
                await asyncio.sleep(max(-self._tokens * 8 / self._rate, 0.001))
                continue
            _, _, size, future = heapq.heappop(self._waiting)
            if not future.done():  # a cancelled sender left its place
                self._tokens -= size
                future.set_result(None)

    def wrap(self, transport: RTCDtlsTransport) -> None:
        """Route `transport`'s outgoing RTP through this pacer (idempotent)."""
        interpose(transport, self, self._send)

    async def _send(self, data: bytes, send: SendRtp) -> None:
        size = len(data) + WIRE_OVERHEAD
        if len(data) >= 12 and not is_rtcp(data):
            ssrc = int.from_bytes(data[8:12], "big")
            priority = self.priorities.get(ssrc)
            if ssrc in self.retransmission_ssrcs and self.overdrawn():
                self.dropped_retransmissions += 1
                return
            if priority is None:
                self.debit(size)
            else:
                await self.acquire(size, priority)
            self.sent_by_ssrc[ssrc] += size
        self.sent_bytes += size
        await send(data)


def interpose(
    transport: RTCDtlsTransport, owner: object, hook: Callable[[bytes, SendRtp], Awaitable[None]]
) -> None:
    """Route `transport`'s outgoing RTP (aiortc 1.16 private `_send_rtp`) through
    `hook(data, send)`, `send` being what was there before; once per `owner`, however
    many other layers were put on top since."""
    send: SendRtp = transport._send_rtp
    layer: object = send
    while layer is not None:
        if getattr(layer, "owner", None) is owner:
            return
        layer = getattr(layer, "inner", None)

    async def layered(data: bytes) -> None:
        await hook(data, send)

    layered.owner = owner  # type: ignore[attr-defined]
    layered.inner = send  # type: ignore[attr-defined]
    transport._send_rtp = layered  # type: ignore[method-assign]
