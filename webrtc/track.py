"""An aiortc track that returns already-encoded packets from a bus subscription."""

from __future__ import annotations

from aiortc import MediaStreamTrack

from capture import Packet

from .bus import Subscription


class PacketTrack(MediaStreamTrack):
    """`recv()` returns `Packet`s, so aiortc packetizes them (`encoder.pack`)
    instead of encoding per viewer."""

    def __init__(self, subscription: Subscription) -> None:
        super().__init__()
        self.kind = subscription.bus.kind
        self.subscription = subscription

    async def recv(self) -> Packet:
        return await self.subscription.get()

    def stop(self) -> None:
        super().stop()
        self.subscription.close()
