"""Encoded packets to other processes: every packet of a set of buses written once to
each attached media socket (a viewer worker's, the control process's), straight from the
thread that encoded it, through a bounded queue and a writer thread per socket. Neither an
event loop nor a slow reader holds up an encoder: a reader that falls behind loses
packets and resyncs at the next keyframe (`wire.gap_frame`). Keyframe requests come back
on the same socket (`wire.KEYFRAME_REQUEST`) and go straight to the encoders.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence

from capture import Packet

from . import wire
from .bus import LayerView, PacketBus

logger = logging.getLogger(__name__)

FEED_BYTES = 32 << 20  # bytes queued for one reader before it is deemed behind


class MediaFeed:
    """Frames for one reader, written to its media socket by a thread of its own."""

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        on_keyframe_request: Callable[[int], None],
        max_bytes: int = FEED_BYTES,
    ) -> None:
        self._sock = sock
        self._on_keyframe_request = on_keyframe_request
        self._max_bytes = max_bytes
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._gap = False
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._requests = threading.Thread(target=self._listen, name=f"{name}-pli", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._requests.start()

    def _listen(self) -> None:
        """The reader's keyframe requests, straight to the encoders (thread-safe)."""
        size = wire.KEYFRAME_REQUEST.size
        pending = b""
        while True:
            try:
                data = self._sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            pending += data
            whole = len(pending) - len(pending) % size
            for (index,) in wire.KEYFRAME_REQUEST.iter_unpack(pending[:whole]):
                try:
                    self._on_keyframe_request(index)
                except Exception:  # a bad index must not end the listener
                    logger.exception("keyframe request for bus %d", index)
            pending = pending[whole:]

    def put(self, frame: bytes) -> None:
        with self._ready:
            if self._closed:
                return
            if self._bytes + len(frame) > self._max_bytes:
                self._frames.clear()
                self._bytes = 0
                self._gap = True
            self._frames.append(frame)
            self._bytes += len(frame)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._frames and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                batch = list(self._frames)
                self._frames.clear()
                self._bytes = 0
                gap, self._gap = self._gap, False
            try:
                self._sock.sendall((wire.gap_frame() if gap else b"") + b"".join(batch))
            except OSError:  # the reader has gone (its owner replaces it)
                return

    def stop(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._requests.join(timeout=5)
        self._sock.close()


class FeedHub:
    """Every packet of `buses` (in wire order: a frame names its bus by index) to each
    attached `MediaFeed`; a `LayerView`'s packets come with its base's."""

    def __init__(self, buses: Sequence[PacketBus | None]) -> None:
        self.buses = list(buses)
        self._feeds: dict[int, MediaFeed] = {}  # replaced whole: the taps read it unlocked
        self._taps: list[tuple[PacketBus, Callable[[Packet], None]]] = []

    def start(self) -> None:
        for index, bus in enumerate(self.buses):
            if bus is not None and not isinstance(bus, LayerView):
                tap = self._tap(index)
                bus.add_tap(tap)
                self._taps.append((bus, tap))

    def _tap(self, index: int) -> Callable[[Packet], None]:
        def tap(packet: Packet) -> None:
            frame = wire.pack_frame(index, packet)
            for feed in self._feeds.values():
                feed.put(frame)

        return tap

    async def attach(self, key: int, sock: socket.socket) -> None:
        """Feed `sock` from now on, under `key` (in place of the feed it had)."""
        feed = MediaFeed(sock, f"feed-{key}", self._keyframe_request)
        feed.start()
        old = self._feeds.get(key)
        self._feeds = {**self._feeds, key: feed}
        if old is not None:
            await asyncio.to_thread(old.stop)

    async def detach(self, key: int) -> None:
        feeds = dict(self._feeds)
        old = feeds.pop(key, None)
        self._feeds = feeds
        if old is not None:
            await asyncio.to_thread(old.stop)

    def _keyframe_request(self, index: int) -> None:
        # in a feed's listening thread: request_keyframe is thread-safe
        bus = self.buses[index] if 0 <= index < len(self.buses) else None
        if bus is not None:
            bus.request_keyframe()

    def stop(self) -> None:
        """Remove the taps and stop every feed (blocking: call in a thread)."""
        for bus, tap in self._taps:
            bus.remove_tap(tap)
        self._taps = []
        feeds, self._feeds = self._feeds, {}
        for feed in feeds.values():
            feed.stop()


class FeedReceiver(asyncio.Protocol):
    """The reading end of a media socket: each frame published to its bus (by index) in
    this loop; a gap tells every bus that packets were lost on the way."""

    def __init__(self, buses: Sequence[PacketBus | None]) -> None:
        self.buses = buses
        self.transport: asyncio.WriteTransport | None = None
        self.seen: set[int] = set()  # the buses it has brought packets of
        self._reader = wire.FrameReader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buses = self.buses
        for index, packet in self._reader.feed(data):
            if packet is None:
                for bus in buses:
                    if bus is not None:
                        bus.lost_on_the_way()
            elif 0 <= index < len(buses):
                bus = buses[index]
                if bus is not None:
                    bus.publish(packet)
                    self.seen.add(index)

    def request_keyframe(self, index: int) -> bool:
        """Ask the feeding side's encoder of bus `index` for a keyframe (False: no socket)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(wire.KEYFRAME_REQUEST.pack(index))
        return True
