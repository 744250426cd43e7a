"""ICE configuration: host addresses and ports to gather, ICE servers (TURN credentials
minted from a shared secret), WHEP Link headers."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice
import aioice.ice
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

from .sdp import OfferError

logger = logging.getLogger(__name__)
_original_host_addresses = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server as handed to peers (`urls` like `stun:host:3478`)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def link_header(self) -> list[str]:
        """RFC 9725 `Link: <url>; rel="ice-server"` values, one per URL."""
        values = []
        for url in self.urls:
            value = f'<{url}>; rel="ice-server"'
            if self.username is not None and self.credential is not None:
                value += (
                    f'; username="{_quote(self.username)}"; '
                    f'credential="{_quote(self.credential)}"; credential-type="password"'
                )
            values.append(value)
        return values

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            data["username"] = self.username
            data["credential"] = self.credential
        return data


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def gather_only(addresses: Sequence[str] | None) -> None:
    """Restrict the host candidates every peer connection in this process gathers.

    aioice leaves 127.0.0.1 out and offers every interface; a service bound to one
    address (or to loopback, for tests on one machine) must offer just that.
    `None` restores aioice's own choice.
    """
    if addresses is None:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    chosen = [str(ipaddress.ip_address(a)) for a in addresses]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """The peer-connection configuration; an empty list means no STUN/TURN at all
    (aiortc would otherwise contact a public STUN server)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


# ---------------------------------------------------------------- TURN REST credentials


def turn_rest_password(secret: bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): the TURN password coturn's `use-auth-secret`
    expects (draft-uberti-behave-turn-rest)."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnRest:
    """TURN servers sharing a secret with us: `mint()` gives time-limited credentials."""

    urls: tuple[str, ...]
    secret: bytes = field(repr=False)
    ttl_seconds: int = 12 * 3600

    def mint(self, label: str, now: float | None = None) -> IceServer:
        """Credentials valid `ttl_seconds` from `now`; `label` names who they are for in
        the TURN server's log (never personal data)."""
        expiry = int(now if now is not None else time.time()) + self.ttl_seconds
        username = f"{expiry}:{label}"
        return IceServer(self.urls, username, turn_rest_password(self.secret, username))


# ---------------------------------------------------------------- host candidates


@dataclass(frozen=True)
class UdpPorts:
    """An inclusive range of UDP ports for host candidates, e.g. 40000-40199."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1024 <= self.first <= self.last <= 65535:
            raise ValueError(f"not a port range: {self.first}-{self.last}")

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    @classmethod
    def parse(cls, text: str) -> UdpPorts:
        """`"40000-40199"` (or one port, `"40000"`)."""
        first, _, last = text.partition("-")
        try:
            return cls(int(first), int(last or first))
        except ValueError:
            raise ValueError(f"not a port range: {text!r} (expected e.g. 40000-40199)") from None


class PortsExhausted(OfferError):
    """Every port of the range is taken: the viewer is told to come back (503)."""

    def __init__(self, ports: UdpPorts) -> None:
        super().__init__(
            503,
            "No free media port",
            f"all {len(ports)} UDP ports {ports.first}-{ports.last} are in use; try again soon",
        )


@dataclass(frozen=True)
class GatherPolicy:
    """How host candidates are bound and advertised (see `gather_in`)."""

    ports: UdpPorts | None = None
    public_address: str | None = None


_original_component_candidates = aioice.ice.Connection.get_component_candidates
_original_relayed_candidate = aioice.ice.relayed_candidate
_policy: GatherPolicy | None = None
_next_port = 0  # where the next search of the range starts (ports rotate, freed ones rest)


def gather_in(policy: GatherPolicy | None) -> None:
    """Process-wide: host candidates bind a port of `policy.ports` (one port number for
    all of a connection's addresses, so a school's port forward reaches exactly one
    viewer), `policy.public_address` is offered as a server-reflexive candidate on that
    same port, and TURN failures are logged (aioice drops them silently).
    `None` restores aioice's own gathering."""
    global _policy
    if policy is None:
        _policy = None
        connection = aioice.ice.Connection
        connection.get_component_candidates = _original_component_candidates  # type: ignore[method-assign]
        aioice.ice.relayed_candidate = _original_relayed_candidate
        return
    if policy.public_address is not None:
        ipaddress.ip_address(policy.public_address)  # ValueError early, not per viewer
    _policy = policy
    aioice.ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]
    aioice.ice.relayed_candidate = _logged_relayed_candidate


async def _logged_relayed_candidate(
    **kwargs: Any,
) -> tuple[aioice.Candidate, aioice.ice.StunProtocol]:
    host, port = kwargs["turn_server"]
    server = f"{'turns' if kwargs.get('turn_ssl') else 'turn'}:{host}:{port}"
    how = f"transport={kwargs.get('turn_transport')}"
    try:
        return await _original_relayed_candidate(**kwargs)
    except asyncio.CancelledError:
        logger.warning("TURN %s?%s: no relay candidate: no answer in time", server, how)
        raise
    except Exception as exc:
        logger.warning("TURN %s?%s: no relay candidate: %s", server, how, exc or repr(exc))
        raise


async def _component_candidates(
    self: aioice.Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109 (aioice's own signature)
) -> list[aioice.Candidate]:
    policy = _policy
    if policy is None or policy.ports is None or not addresses:
        candidates = await _original_component_candidates(self, component, addresses, timeout)
        return candidates + _public_candidates(policy, candidates, component)
    protocols = await _bind_host_protocols(self, addresses, policy.ports, component)
    self._protocols += protocols
    hosts = [protocol.local_candidate for protocol in protocols]
    jobs = [_original_component_candidates(self, component, [], timeout)]  # TURN
    if self.stun_server:
        stun_server = self.stun_server
        jobs += [
            _reflexive(protocol, stun_server, timeout)
            for protocol in protocols
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]
    found = await asyncio.gather(*jobs)
    candidates = hosts + [c for group in found for c in group]
    return candidates + _public_candidates(policy, candidates, component)


async def _reflexive(
    protocol: aioice.ice.StunProtocol, server: tuple[str, int], seconds: float
) -> list[aioice.Candidate]:
    try:
        async with asyncio.timeout(seconds):
            candidate, _ = await aioice.ice.server_reflexive_candidate(protocol, server)
    except Exception as exc:  # aioice also goes on without it
        logger.info("STUN %s: no server-reflexive candidate: %s", server, exc or repr(exc))
        return []
    return [candidate]


async def _bind_host_protocols(
    connection: aioice.Connection, addresses: list[str], ports: UdpPorts, component: int
) -> list[aioice.ice.StunProtocol]:
    """One datagram endpoint per address, all on the first port of the range free on
    every address."""
    global _next_port
    loop = asyncio.get_running_loop()
    for step in range(len(ports)):
        port = ports.first + (_next_port + step) % len(ports)
        sockets = _bind_all(addresses, port)
        if sockets is None:
            continue
        _next_port = (port - ports.first + 1) % len(ports)
        protocols = []
        for address, sock in sockets:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), sock=sock
            )
            protocol.local_candidate = aioice.Candidate(
                foundation=candidate_foundation("host", "udp", address),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=address,
                port=port,
                type="host",
            )
            protocols.append(protocol)
        return protocols
    raise PortsExhausted(ports)


def _bind_all(addresses: list[str], port: int) -> list[tuple[str, socket.socket]] | None:
    """Sockets bound to `port` on each address (an unusable address left out, as aioice
    does), or None when the port is taken on one of them."""
    bound: list[tuple[str, socket.socket]] = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                for _, other in bound:
                    other.close()
                return None
            logger.info("cannot bind %s:%d: %s", address, port, exc)
            continue
        sock.setblocking(False)
        bound.append((address, sock))
    return bound


def _public_candidates(
    policy: GatherPolicy | None, candidates: list[aioice.Candidate], component: int
) -> list[aioice.Candidate]:
    """The school's public address on the port of the host candidate it forwards to
    (server-reflexive: the NAT's mapping, known from config instead of STUN)."""
    if policy is None or policy.public_address is None or policy.ports is None:
        return []
    public = str(ipaddress.ip_address(policy.public_address))
    version = ipaddress.ip_address(public).version
    taken = {(c.host, c.port) for c in candidates}
    for host in candidates:
        if host.type != "host" or ipaddress.ip_address(host.host).version != version:
            continue
        if (public, host.port) in taken or host.host == public:
            return []
        return [
            aioice.Candidate(
                foundation=candidate_foundation("srflx", "udp", host.host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "srflx"),
                host=public,
                port=host.port,
                type="srflx",
                related_address=host.host,
                related_port=host.port,
            )
        ]
    return []
