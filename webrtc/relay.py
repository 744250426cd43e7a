"""Relay to Janus: its Admin API (viewer tokens, streaming-plugin requests) and the RTP
forwarder that pushes the buses' already-encoded packets to a streaming mountpoint.

Packets are packetized once, by the bus's shared packer (the same cache the WHEP viewers
use: FU-A / STAP-A, SPS and PPS in-band before every IDR), stamped 90 kHz (H.264) or
48 kHz (Opus) from their pts, and sent as plain RTP over UDP to the mountpoint's ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

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


SIMULCAST_MAX = 3  # substreams of one Janus video stream
PORTS_PER_MEDIA = {"video": 4, "audio": 1}  # RTP (three substreams), RTCP; RTP


@dataclass(frozen=True)
class RelayMedia:
    """One stream of a mountpoint: its mid, payload type and buses. A video stream with
    more than one bus is simulcast: Janus's substreams 0, 1, 2 are the buses, cheapest
    first, and each viewer gets the substream it asks for. Video streams have an RTCP
    port, so Janus's keyframe requests (PLI) reach the encoders."""

    mid: str
    buses: tuple[PacketBus, ...]
    payload_type: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.buses) <= SIMULCAST_MAX or (
            len(self.buses) > 1 and self.kind != "video"
        ):
            raise ValueError(f"{self.mid}: {len(self.buses)} buses (video: 1 to 3, audio: 1)")

    @property
    def kind(self) -> Literal["video", "audio"]:
        return self.buses[0].kind

    @property
    def simulcast(self) -> bool:
        return len(self.buses) > 1

    def create_entry(self, ports: Sequence[int]) -> dict[str, Any]:
        """The `media` entry of the streaming plugin's `create` request (Janus 1.x);
        `ports`: PORTS_PER_MEDIA[kind] ports, 0 where Janus may pick."""
        entry: dict[str, Any] = {
            "type": self.kind,
            "mid": self.mid,
            "label": self.mid,
            "port": ports[0],
            "pt": self.payload_type,
        }
        if self.kind == "video":
            entry.update(codec="h264", fmtp=H264_FMTP, rtcpport=ports[3])
            if self.simulcast:  # (Janus keeps no keyframe of a simulcast stream)
                entry.update(simulcast=True, port2=ports[1], port3=ports[2])
            else:
                entry.update(bufferkf=True)
        else:
            entry.update(codec="opus", fmtp=OPUS_FMTP)
        return entry


@dataclass
class Mountpoint:
    id: int
    secret: str
    ports: dict[str, list[int]]  # mid → UDP ports Janus listens on: substreams 0..2
    rtcp_ports: dict[str, int]  # mid → Janus's RTCP port of a video stream


async def create_mountpoint(
    admin: JanusAdmin,
    mountpoint_id: int,
    secret: str,
    media: Sequence[RelayMedia],
    *,
    description: str,
    ports: Sequence[int] | None = None,
) -> Mountpoint:
    """A private RTP mountpoint with one stream per `media` (`ports`: PORTS_PER_MEDIA
    of each in turn; None: Janus picks); one left by an earlier run under the same id is
    destroyed first."""
    with contextlib.suppress(JanusError):
        await admin.streaming({"request": "destroy", "id": mountpoint_id, "secret": secret})
    counts = [PORTS_PER_MEDIA[m.kind] for m in media]
    wanted = list(ports) if ports is not None else [0] * sum(counts)
    if len(wanted) != sum(counts):
        raise ValueError(f"{len(wanted)} ports for {sum(counts)}")
    starts = [sum(counts[:i]) for i in range(len(media))]
    response = await admin.streaming(
        {
            "request": "create",
            "type": "rtp",
            "id": mountpoint_id,
            "description": description,
            "is_private": True,
            "secret": secret,
            "permanent": False,
            "media": [
                m.create_entry(wanted[start : start + count])
                for m, start, count in zip(media, starts, counts, strict=True)
            ],
        }
    )
    bound = {str(p["mid"]): p for p in response.get("stream", {}).get("ports", [])}
    ports_of: dict[str, list[int]] = {}
    rtcp_ports: dict[str, int] = {}
    for m in media:
        found = bound.get(m.mid, {})
        keys = ["port", "port_2", "port_3"][: len(m.buses)]
        if not all(isinstance(found.get(key), int) for key in keys):
            raise JanusError(f"streaming create: no ports for {m.mid}: {response}")
        ports_of[m.mid] = [int(found[key]) for key in keys]
        if m.kind == "video" and isinstance(found.get("rtcp_port"), int):
            rtcp_ports[m.mid] = int(found["rtcp_port"])
    return Mountpoint(mountpoint_id, secret, ports_of, rtcp_ports)


async def destroy_mountpoint(admin: JanusAdmin, mountpoint: Mountpoint) -> None:
    await admin.streaming({"request": "destroy", "id": mountpoint.id, "secret": mountpoint.secret})


@dataclass
class StreamCounts:
    packets: int = 0  # media packets (access units, Opus frames) forwarded
    rtp_packets: int = 0
    bytes: int = 0  # RTP bytes sent
    keyframes: int = 0
    errors: int = 0  # sendto failures (Janus gone, no route)
    keyframe_requests: int = 0  # PLI and FIR from Janus


LATCH_EVERY = 5.0  # s: an RTCP packet to Janus's RTCP port, so it knows where PLIs go
RTCP_PSFB = 206  # payload-specific feedback: PLI (FMT 1), FIR (FMT 4)


def keyframe_requested(data: bytes) -> bool:
    """Whether a (compound) RTCP packet holds a PLI or a FIR."""
    offset = 0
    while offset + 4 <= len(data):
        first, packet_type = data[offset], data[offset + 1]
        if first >> 6 != 2:
            return False
        if packet_type == RTCP_PSFB and first & 0x1F in (1, 4):
            return True
        offset += 4 * (int.from_bytes(data[offset + 2 : offset + 4], "big") + 1)
    return False


class _StreamSocket(asyncio.DatagramProtocol):
    """A stream's UDP socket: RTP goes out of it, and (video) Janus's keyframe requests
    come back to it."""

    def __init__(self, media: RelayMedia, janus_host: str, counts: StreamCounts) -> None:
        self.media = media
        try:  # PLIs only from Janus's address (a host name: from anywhere)
            self.janus_ip: str | None = str(ipaddress.ip_address(janus_host))
        except ValueError:
            self.janus_ip = None
        self.counts = counts
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if (self.janus_ip is not None and addr[0] != self.janus_ip) or not keyframe_requested(data):
            return
        self.counts.keyframe_requests += 1
        for bus in self.media.buses:  # (a PLI names no substream)
            bus.request_keyframe()


class RtpForwarder:
    """Pushes each media's buses as RTP to `host`: one UDP socket per stream, one
    subscription and one task per bus; Janus's PLIs on a video stream's RTCP port ask its
    encoders for an IDR. `start()`/`stop()`."""

    def __init__(
        self,
        host: str,
        media: Sequence[RelayMedia],
        ports: dict[str, list[int]],
        rtcp_ports: dict[str, int] | None = None,
    ) -> None:
        self.host = host
        self.media = list(media)
        self.ports = dict(ports)
        self.rtcp_ports = dict(rtcp_ports or {})
        self.counts = {m.mid: StreamCounts() for m in self.media}
        self._sockets: dict[str, _StreamSocket] = {}
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for media in self.media:
            counts = self.counts[media.mid]
            _, stream_socket = await loop.create_datagram_endpoint(
                functools.partial(_StreamSocket, media, self.host, counts), family=family
            )
            self._sockets[media.mid] = stream_socket
            for substream, bus in enumerate(media.buses):
                # a bigger queue than a viewer's: Janus is on the LAN and must not resync often
                subscription = bus.subscribe(queue_size=max(bus.queue_size, 120))
                self._subscriptions.append(subscription)
                self._tasks.append(
                    asyncio.create_task(
                        self._forward(media, substream, subscription),
                        name=f"relay-{media.mid}-{substream}",
                    )
                )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            subscription.close()
        for stream_socket in self._sockets.values():
            if stream_socket.transport is not None:
                stream_socket.transport.close()
        self._tasks, self._subscriptions, self._sockets = [], [], {}

    def _send(self, mid: str, data: bytes, port: int) -> bool:
        transport = self._sockets[mid].transport
        try:
            assert transport is not None
            transport.sendto(data, (self.host, port))
        except OSError:
            self.counts[mid].errors += 1
            return False
        return True

    async def _forward(self, media: RelayMedia, substream: int, subscription: Subscription) -> None:
        bus = media.buses[substream]
        port = self.ports[media.mid][substream]
        rtcp_port = self.rtcp_ports.get(media.mid) if substream == 0 else None
        counts = self.counts[media.mid]
        ssrc = secrets.randbits(32) or 1
        latch = bytes([0x80, 201, 0, 1]) + ssrc.to_bytes(4, "big")  # an empty receiver report
        latched_at = -LATCH_EVERY
        sequence = secrets.randbits(16)
        video = media.kind == "video"
        loop = asyncio.get_running_loop()
        while True:  # ends with stop() (cancel) or the bus closing the subscription
            try:
                packet = await subscription.get()
            except MediaStreamError:
                return
            if rtcp_port is not None and loop.time() - latched_at >= LATCH_EVERY:
                latched_at = loop.time()
                self._send(media.mid, latch, rtcp_port)
            payloads, timestamp = bus.packer.pack(packet)
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
                if not self._send(media.mid, rtp, port):
                    continue
                counts.rtp_packets += 1
                counts.bytes += len(rtp)
            counts.packets += 1
            if packet.is_keyframe:
                counts.keyframes += 1
