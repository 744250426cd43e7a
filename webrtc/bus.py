"""The packet bus: one per rendition, fanning shared encoded packets out to viewers.

Every subscriber has a bounded queue. A video subscriber starts at an IDR; when it
falls behind, its queue is dropped and it resumes at the next IDR (and one is
requested). An audio subscriber that falls behind loses its oldest packets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

from aiortc.mediastreams import MediaStreamError

from capture import MediaKind, Packet, VideoCodec, temporal_layer

from .packer import SharedPacker

RATE_WINDOW = 25.0  # seconds; holds two or three board stills (one each 10 s)
RTP_PAYLOAD = 1200  # bytes of media per RTP packet, about (aiortc packs up to 1300)
RTP_OVERHEAD = 70  # bytes per RTP packet: RTP + extensions + SRTP tag + UDP + IPv4 + link
BITRATE_REUSE = 0.1  # seconds a rendition's wire bitrate is reused while no packet came


class Subscription:
    """One viewer's bounded queue on a bus."""

    def __init__(self, bus: PacketBus, maxsize: int, ready: asyncio.Event | None = None) -> None:
        self._bus = bus
        self._queue: collections.deque[Packet] = collections.deque()
        self._maxsize = maxsize
        self._ready = ready or asyncio.Event()  # shared when one reader waits on several
        self._closed = False
        self.waiting_for_keyframe = bus.kind == "video"
        self.delivered = 0
        self.dropped = 0
        self.resyncs = 0

    @property
    def bus(self) -> PacketBus:
        return self._bus

    def __len__(self) -> int:
        return len(self._queue)

    def _offer(self, packet: Packet) -> None:
        if self.waiting_for_keyframe:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self.waiting_for_keyframe = False
        if len(self._queue) >= self._maxsize:
            if self._bus.kind == "video":
                # Too far behind: skip to the next IDR instead of queueing latency.
                self.dropped += len(self._queue) + 1
                self._queue.clear()
                self.resyncs += 1
                self.waiting_for_keyframe = True
                if not self._bus.self_contained:
                    self._bus.request_keyframe()
                return
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._ready.set()

    def pop(self) -> Packet | None:
        """The next packet if one is queued."""
        if not self._queue:
            return None
        self.delivered += 1
        return self._queue.popleft()

    async def get(self) -> Packet:
        """The next packet; raises `MediaStreamError` once closed."""
        while not self._queue:
            if self._closed:
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._queue.popleft()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._ready.set()
            self._bus._unsubscribe(self)


class PacketBus:
    """Fans out one rendition's packets. `publish` runs on the event loop;
    `publish_threadsafe` may be called from a capture thread once the bus knows its
    loop (given here, or by `bind` from the loop before capture starts)."""

    def __init__(
        self,
        name: str,
        kind: MediaKind,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        request_keyframe: Callable[[], None] = lambda: None,
        queue_size: int = 30,
        nominal_bitrate: int = 0,
        self_contained: bool = False,
        codec: VideoCodec = "h264",
    ) -> None:
        self.name = name
        self.codec = codec  # of a video bus: what its packets are
        # every frame decodes on its own (stills): a lost one needs no repair, so only
        # new subscribers ask for a keyframe, never a viewer's loss
        self.self_contained = self_contained
        self.kind = kind
        self.queue_size = queue_size
        self.nominal_bitrate = nominal_bitrate
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._first_packet_at: float | None = None
        self._loop = loop
        self._request_keyframe = request_keyframe
        self._subscribers: list[Subscription] = []
        self.packer = SharedPacker(kind, codec=codec)
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.last_packet_at: float | None = None
        self._gone_dropped = 0  # of subscriptions that ended
        self._gone_resyncs = 0
        self._views: list[LayerView] = []
        # called with each packet in the thread that publishes it, before the loop sees
        # it: the viewer workers' feed (webrtc.workers), which no loop may hold up
        self.taps: list[Callable[[Packet], None]] = []
        # subscribers, dropped and resyncs of this bus's mirrors in each viewer worker
        self.elsewhere: dict[int, tuple[int, int, int]] = {}
        self._bitrate: tuple[float, int, float] | None = None  # (when, packets, wire_bitrate)

    def add_tap(self, tap: Callable[[Packet], None]) -> None:
        """Call `tap` with each packet in the publishing thread (the list is replaced, not
        changed: a publisher going through it meanwhile skips no one)."""
        self.taps = [*self.taps, tap]

    def remove_tap(self, tap: Callable[[Packet], None]) -> None:
        self.taps = [t for t in self.taps if t is not tap]

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop `publish_threadsafe` hands packets to."""
        self._loop = loop

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    @property
    def subscribers(self) -> int:
        """Viewers of this rendition, here and in the viewer workers."""
        return len(self._subscribers) + sum(c[0] for c in self.elsewhere.values())

    def subscribe(
        self, ready: asyncio.Event | None = None, queue_size: int | None = None
    ) -> Subscription:
        """A new subscriber (`ready` is set whenever it gets a packet; its queue holds
        `queue_size` packets, the bus's own size by default); video ones get a fresh IDR
        requested for them."""
        subscription = Subscription(self, queue_size or self.queue_size, ready)
        self._subscribers.append(subscription)
        self.request_keyframe()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
            self._gone_dropped += subscription.dropped
            self._gone_resyncs += subscription.resyncs

    @property
    def dropped(self) -> int:
        """Packets not delivered to subscribers so far (behind, or before their IDR)."""
        here = self._gone_dropped + sum(s.dropped for s in self._subscribers)
        return here + sum(c[1] for c in self.elsewhere.values())

    @property
    def resyncs(self) -> int:
        """Times a subscriber fell so far behind that it skipped to the next IDR."""
        here = self._gone_resyncs + sum(s.resyncs for s in self._subscribers)
        return here + sum(c[2] for c in self.elsewhere.values())

    def lost_on_the_way(self) -> None:
        """Packets meant for this bus were dropped before it saw them (a mirror in a
        viewer worker): every video subscriber waits for the next keyframe."""
        if self.kind != "video":
            return
        for subscription in self._subscribers:
            if not subscription.waiting_for_keyframe:
                subscription.waiting_for_keyframe = True
                subscription.resyncs += 1
        if self._subscribers and not self.self_contained:
            self.request_keyframe()

    def packet_rate(self) -> float:
        """Packets a second over the last `RATE_WINDOW` seconds (video: frames a second)."""
        now = self._now()
        self._forget_before(now - RATE_WINDOW)
        if self._first_packet_at is None:
            return 0.0
        return len(self._recent) / max(min(RATE_WINDOW, now - self._first_packet_at), 1.0)

    def request_keyframe(self) -> None:
        """Ask the rendition's encoder for an IDR (the encoder rate-limits)."""
        if self.kind == "video":
            self.keyframe_requests += 1
            self._request_keyframe()

    @property
    def rendition(self) -> str:
        """The rendition's own name, the last part of the bus name."""
        return self.name.rsplit("/", 1)[-1]

    def wire_bitrate(self) -> float:
        """Bits/s this rendition costs a viewer on the wire (RTP, SRTP, UDP, IP headers
        included) over the last `RATE_WINDOW` seconds; while the rendition is younger
        than that, the nominal bitrate stands in for the time before its first packet.
        A whole window, not first to last packet: two stills a second apart (one brought
        forward for a joiner) are not a still per second. Every viewer's adaptation asks
        each of its renditions in turn: the sum is made once while no packet came and
        less than `BITRATE_REUSE` seconds passed."""
        now = self._now()
        reuse = self._bitrate
        if reuse is not None and reuse[1] == self.packets and 0 <= now - reuse[0] < BITRATE_REUSE:
            return reuse[2]
        self._forget_before(now - RATE_WINDOW)
        bits = sum(size for _, size in self._recent) * 8
        before = 0.0 if self._first_packet_at is None else now - self._first_packet_at
        unseen = max(RATE_WINDOW - before, 0.0)
        bitrate = (bits + self.nominal_bitrate * unseen) / RATE_WINDOW
        self._bitrate = (now, self.packets, bitrate)
        return bitrate

    def _forget_before(self, moment: float) -> None:
        recent = self._recent
        while recent and recent[0][0] < moment:
            recent.popleft()

    def publish(self, packet: Packet) -> None:
        now = self._now()
        self.packets += 1
        self.bytes += packet.size
        self.last_packet_at = now
        if self._first_packet_at is None:
            self._first_packet_at = now
        rtp_packets = -(-packet.size // RTP_PAYLOAD)
        self._recent.append((now, packet.size + rtp_packets * RTP_OVERHEAD))
        # trimmed here too: a bus whose rate nobody asks for (its viewers are in worker
        # processes) kept every packet's entry, 0.6 MB a minute in the service
        self._forget_before(now - RATE_WINDOW)
        if packet.is_keyframe:
            self.keyframes += 1
        for subscription in self._subscribers:
            subscription._offer(packet)
        if self._views and (packet.is_keyframe or temporal_layer(packet) == 0):  # base layer
            for view in self._views:
                view.publish(packet)

    def publish_threadsafe(self, packet: Packet) -> None:
        for tap in self.taps:
            tap(packet)
        # RuntimeError: the loop is closing, the packet has no one left to reach
        # (no loop yet: nothing can be subscribed, the packet would reach no one)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.publish, packet)


class LayerView(PacketBus):
    """The base temporal layer of a layered VP8 bus (`VideoEncoder(temporal_layers=2)`):
    every other frame, a rendition of its own for the rate choice (its own subscribers
    and measured bitrate), with no encode of its own: same packets, same packer (so the
    same picture IDs), keyframe requests go to the full bus's encoder."""

    def __init__(self, name: str, base: PacketBus, *, nominal_bitrate: int) -> None:
        super().__init__(
            name,
            "video",
            loop=base._loop,
            request_keyframe=base._request_keyframe,
            queue_size=base.queue_size,
            nominal_bitrate=nominal_bitrate,
            codec=base.codec,
        )
        self.base = base
        self.packer = base.packer
        base._views.append(self)
