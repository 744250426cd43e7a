"""An aiortc track that returns already-encoded packets from a bus subscription, and
switches between renditions on a keyframe of the target."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from capture import MediaKind, Packet

from .bus import PacketBus, Subscription

KEYFRAME_REQUEST_INTERVAL = 3.0  # seconds between a viewer's forwarded PLIs


class Doorbell(asyncio.Event):
    """A track's wake-up, rung for each packet queued for it: `answer` (the send loop's,
    when it waits) may take what came at once and say so; only otherwise is the event
    set, which wakes `recv`. A packet then costs its viewer no task switch."""

    def __init__(self) -> None:
        super().__init__()
        self.answer: Callable[[], bool] | None = None

    def set(self) -> None:
        answer = self.answer
        if answer is None or not answer():
            super().set()


class PacketTrack(MediaStreamTrack):
    """`recv()` returns `Packet`s, so aiortc packetizes them (`encoder.pack`)
    instead of encoding per viewer.

    `poll()` is `recv()` without the wait; a send loop that takes packets with it can
    be rung when one comes (`answer_with`) instead of waking a task.

    `switch(bus)` subscribes to the target rendition (which requests a keyframe there)
    and keeps playing the current one until the target's first keyframe is queued;
    then it swaps. `switch(None)` pauses the track: `recv()` waits until a bus is set.
    """

    def __init__(self, kind: MediaKind, bus: PacketBus | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._wake = Doorbell()
        self.current: Subscription | None = None
        self.pending: Subscription | None = None
        self.last_bus: PacketBus | None = None  # the bus of the packet `recv()` returned
        self.switches = 0
        self._last_request = -math.inf
        if bus is not None:
            self.current = bus.subscribe(self._wake)

    @property
    def target(self) -> PacketBus | None:
        """The rendition this track plays, or is switching to."""
        chosen = self.pending if self.pending is not None else self.current
        return chosen.bus if chosen is not None else None

    def switch(self, bus: PacketBus | None) -> None:
        if bus is self.target:
            return
        if self.pending is not None:
            self.pending.close()
            self.pending = None
        if bus is None:
            if self.current is not None:
                self.current.close()
                self.current = None
        elif self.current is None or self.current.bus is not bus:
            self.pending = bus.subscribe(self._wake)
        self._wake.set()

    def request_keyframe(self) -> None:
        """A viewer's PLI/FIR: ask the rendition it is about to see for an IDR, at most
        once per `KEYFRAME_REQUEST_INTERVAL`: a lossy link sends PLI after PLI, and every
        IDR costs all viewers of the rendition and that link most of all. A rendition
        that already plays and whose frames decode on their own (stills) needs none."""
        now = time.monotonic()
        playing = self.current if self.pending is None else None
        if playing is not None and playing.bus.self_contained and not playing.waiting_for_keyframe:
            return
        if self.target is not None and now - self._last_request >= KEYFRAME_REQUEST_INTERVAL:
            self._last_request = now
            self.target.request_keyframe()

    def poll(self) -> Packet | None:
        """The next packet if one is queued (swapping to the target rendition once its
        first keyframe is); MediaStreamError once stopped."""
        if self.readyState != "live":
            raise MediaStreamError
        if self.pending is not None and len(self.pending):
            current, self.current, self.pending = self.current, self.pending, None
            self.switches += 1
            if current is not None:
                current.close()
        if self.current is not None:
            packet = self.current.pop()
            if packet is not None:
                self.last_bus = self.current.bus
                return packet
        return None

    async def wait(self) -> None:
        """Until a packet may have come (or the track stopped, or switched)."""
        self._wake.clear()
        await self._wake.wait()

    def answer_with(self, answer: Callable[[], bool] | None) -> None:
        """Have `answer()` called first whenever a packet comes (see `Doorbell`)."""
        self._wake.answer = answer

    async def recv(self) -> Packet:
        while True:
            packet = self.poll()
            if packet is not None:
                return packet
            await self.wait()

    def stop(self) -> None:
        super().stop()
        for subscription in (self.current, self.pending):
            if subscription is not None:
                subscription.close()
        self._wake.set()
