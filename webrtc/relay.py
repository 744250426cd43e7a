"""Relay to Janus: its Admin API (viewer tokens, streaming-plugin requests) and the RTP
forwarder that pushes the buses' already-encoded packets to a streaming mountpoint.

Packets are packetized once, by the bus's shared packer (the same cache the WHEP viewers
use: FU-A / STAP-A, SPS and PPS in-band before every IDR), stamped 90 kHz (H.264) or
48 kHz (Opus) from their pts, and sent as plain RTP over UDP to the mountpoint's ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from .bus import PacketBus, Subscription

logger = logging.getLogger(__name__)

STREAMING = "janus.plugin.streaming"
H264_FMTP = "profile-level-id=42e01f;packetization-mode=1"
OPUS_FMTP = "minptime=10;useinbandfec=1"


class JanusError(RuntimeError):
    """Janus refused a request or could not be reached."""


class JanusAdmin:
    """Janus's Admin API over HTTP: tokens, and synchronous plugin requests
    (`message_plugin`), so the service needs no Janus session of its own."""

    def __init__(self, admin_url: str, admin_secret: str, *, timeout: float = 5.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._secret = admin_secret
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(self, janus: str, **fields: Any) -> dict[str, Any]:
        """One Admin API request; its answer, or `JanusError`."""
        if self._client is None:
            raise JanusError("the Janus admin client is not started")
        body = {
            "janus": janus,
            "transaction": secrets.token_hex(8),
            "admin_secret": self._secret,
            **fields,
        }
        try:
            response = await self._client.post(self.admin_url, json=body)
            answer: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise JanusError(f"{janus}: Janus admin API at {self.admin_url}: {exc}") from exc
        if answer.get("janus") != "success":
            error = answer.get("error", {})
            raise JanusError(f"{janus}: {error.get('reason', answer)} ({error.get('code')})")
        return answer

    async def add_token(self, token: str, plugins: Sequence[str] = (STREAMING,)) -> None:
        await self.call("add_token", token=token, plugins=list(plugins))

    async def remove_token(self, token: str) -> None:
        await self.call("remove_token", token=token)

    async def streaming(self, request: dict[str, Any]) -> dict[str, Any]:
        """A synchronous streaming-plugin request (create, destroy, info, kick_all)."""
        answer = await self.call("message_plugin", plugin=STREAMING, request=request)
        response: dict[str, Any] = answer.get("response", {})
        if "error" in response or "error_code" in response:
            raise JanusError(
                f"streaming {request.get('request')}: {response.get('error')} "
                f"({response.get('error_code')})"
            )
        return response


@dataclass(frozen=True)
class RelayMedia:
    """One stream of a mountpoint: a bus, its mid, payload type and codec."""

    mid: str
    bus: PacketBus
    payload_type: int

    @property
    def kind(self) -> Literal["video", "audio"]:
        return self.bus.kind

    def create_entry(self, port: int) -> dict[str, Any]:
        """The `media` entry of the streaming plugin's `create` request (Janus 1.x)."""
        entry: dict[str, Any] = {
            "type": self.kind,
            "mid": self.mid,
            "label": self.mid,
            "port": port,
            "pt": self.payload_type,
        }
        if self.kind == "video":
            entry.update(codec="h264", fmtp=H264_FMTP, bufferkf=True)
        else:
            entry.update(codec="opus", fmtp=OPUS_FMTP)
        return entry


@dataclass
class Mountpoint:
    id: int
    secret: str
    ports: dict[str, int]  # mid → UDP port Janus listens on


async def create_mountpoint(
    admin: JanusAdmin,
    mountpoint_id: int,
    secret: str,
    media: Sequence[RelayMedia],
    *,
    description: str,
    ports: Sequence[int] | None = None,
) -> Mountpoint:
    """A private RTP mountpoint with one stream per `media` (ports: Janus picks from its
    range when None); one left by an earlier run under the same id is destroyed first."""
    with contextlib.suppress(JanusError):
        await admin.streaming({"request": "destroy", "id": mountpoint_id, "secret": secret})
    wanted = list(ports) if ports is not None else [0] * len(media)
    response = await admin.streaming(
        {
            "request": "create",
            "type": "rtp",
            "id": mountpoint_id,
            "description": description,
            "is_private": True,
            "secret": secret,
            "permanent": False,
            "media": [m.create_entry(port) for m, port in zip(media, wanted, strict=True)],
        }
    )
    bound = {str(p["mid"]): int(p["port"]) for p in response.get("stream", {}).get("ports", [])}
    missing = [m.mid for m in media if m.mid not in bound]
    if missing:
        raise JanusError(f"streaming create: no port for {', '.join(missing)}: {response}")
    return Mountpoint(mountpoint_id, secret, bound)


async def destroy_mountpoint(admin: JanusAdmin, mountpoint: Mountpoint) -> None:
    await admin.streaming({"request": "destroy", "id": mountpoint.id, "secret": mountpoint.secret})


@dataclass
class StreamCounts:
    packets: int = 0  # media packets (access units, Opus frames) forwarded
    rtp_packets: int = 0
    bytes: int = 0  # RTP bytes sent
    keyframes: int = 0
    errors: int = 0  # sendto failures (Janus gone, no route)


class RtpForwarder:
    """Pushes each media's bus as RTP to `host`: one subscription and one task per stream,
    one UDP socket for all; `start()`/`stop()`."""

    def __init__(self, host: str, media: Sequence[RelayMedia], ports: dict[str, int]) -> None:
        self.host = host
        self.media = list(media)
        self.ports = dict(ports)
        self.counts = {m.mid: StreamCounts() for m in self.media}
        self._transport: asyncio.DatagramTransport | None = None
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, family=family)
        self._transport = transport
        for media in self.media:
            # a bigger queue than a viewer's: Janus is on the LAN and must not resync often
            subscription = media.bus.subscribe(queue_size=max(media.bus.queue_size, 120))
            self._subscriptions.append(subscription)
            self._tasks.append(
                asyncio.create_task(self._forward(media, subscription), name=f"relay-{media.mid}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            subscription.close()
        if self._transport is not None:
            self._transport.close()
        self._tasks, self._subscriptions, self._transport = [], [], None

    async def _forward(self, media: RelayMedia, subscription: Subscription) -> None:
        address = (self.host, self.ports[media.mid])
        counts = self.counts[media.mid]
        ssrc = secrets.randbits(32) or 1
        sequence = secrets.randbits(16)
        video = media.kind == "video"
        while True:  # ends with stop() (cancel) or the bus closing the subscription
            try:
                packet = await subscription.get()
            except MediaStreamError:
                return
            payloads, timestamp = media.bus.packer.pack(packet)
            last = len(payloads) - 1
            for index, payload in enumerate(payloads):
                rtp = RtpPacket(
                    payload_type=media.payload_type,
                    marker=int(video and index == last),
                    sequence_number=sequence,
                    timestamp=timestamp & 0xFFFFFFFF,
                    ssrc=ssrc,
                    payload=payload,
                ).serialize()
                sequence = (sequence + 1) & 0xFFFF
                try:
                    assert self._transport is not None
                    self._transport.sendto(rtp, address)
                except OSError:
                    counts.errors += 1
                    continue
                counts.rtp_packets += 1
                counts.bytes += len(rtp)
            counts.packets += 1
            if packet.is_keyframe:
                counts.keyframes += 1
