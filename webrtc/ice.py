"""ICE configuration: which host addresses to gather, ICE servers, WHEP Link headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

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
