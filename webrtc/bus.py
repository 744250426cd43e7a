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

from capture import MediaKind, Packet

from .packer import SharedPacker


class Subscription:
    """One viewer's bounded queue on a bus."""

    def __init__(self, bus: PacketBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: collections.deque[Packet] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
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
                self._bus.request_keyframe()
                return
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(packet)
        self._ready.set()

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
    `publish_threadsafe` may be called from a capture thread."""

    def __init__(
        self,
        name: str,
        kind: MediaKind,
        *,
        loop: asyncio.AbstractEventLoop,
        request_keyframe: Callable[[], None] = lambda: None,
        queue_size: int = 30,
    ) -> None:
        self.name = name
        self.kind = kind
        self.queue_size = queue_size
        self._loop = loop
        self._request_keyframe = request_keyframe
        self._subscribers: list[Subscription] = []
        self.packer = SharedPacker(kind)
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self.last_packet_at: float | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        """A new subscriber; video ones get a fresh IDR requested for them."""
        subscription = Subscription(self, self.queue_size)
        self._subscribers.append(subscription)
        self.request_keyframe()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def request_keyframe(self) -> None:
        """Ask the rendition's encoder for an IDR (the encoder rate-limits)."""
        if self.kind == "video":
            self.keyframe_requests += 1
            self._request_keyframe()

    def publish(self, packet: Packet) -> None:
        self.packets += 1
        self.bytes += packet.size
        self.last_packet_at = self._loop.time()
        if packet.is_keyframe:
            self.keyframes += 1
        for subscription in self._subscribers:
            subscription._offer(packet)

    def publish_threadsafe(self, packet: Packet) -> None:
        # RuntimeError: the loop is closing, the packet has no one left to reach
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.publish, packet)
