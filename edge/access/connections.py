"""Slow clients: deadlines and caps on the HTTP connections the service holds open.

uvicorn's h11 protocol waits for request headers as long as a client likes and takes
every connection: 300 half-sent requests held 300 file descriptors. `EdgeProtocol`
(`uvicorn.Config(http=EdgeProtocol)`) closes a connection whose request headers are not
complete HEADER_SECONDS after it opened, or after its previous response ended; it
answers 503 and closes at once, unread, a connection past PER_ADDRESS open from one
address (a reverse proxy the service trusts excepted) or past `connection_limit()` in
all, which stays well below the file limit (systemd's LimitNOFILE). A request body has
BODY_SECONDS in all (`body_deadline`, in `access.bounded_body`), else the answer is 408.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import resource
import time
from collections.abc import AsyncIterator

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0
BODY_SECONDS = 20.0
PER_ADDRESS = 100  # 40 pupils behind one carrier NAT, a few connections each
MAX_CONNECTIONS = 1000
WARN_SECONDS = 60.0  # one warning of a kind a minute, however many clients misbehave

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
    b"Connection: close\r\nContent-Length: 21\r\n\r\ntoo many connections\n"
)

logger = logging.getLogger(__name__)
_warned: dict[str, float] = {}


class BodyTimeout(TimeoutError):
    """A request body that did not arrive within its deadline: answered 408."""


@contextlib.asynccontextmanager
async def body_deadline(seconds: float = BODY_SECONDS) -> AsyncIterator[None]:
    """Raises `BodyTimeout` when the block, which reads a request body, outlasts `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise BodyTimeout(f"the request body did not arrive within {seconds:g} s") from exc


@functools.cache
def connection_limit() -> int:
    """MAX_CONNECTIONS, or half the process's file limit if lower: the other half stays
    for recordings, media sockets, pipes and the database."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else min(MAX_CONNECTIONS, soft // 2)


def _warn(kind: str, message: str, *args: object) -> None:
    now = time.monotonic()
    if now - _warned.get(kind, -WARN_SECONDS) >= WARN_SECONDS:
        _warned[kind] = now
        logger.warning(message + " (others like it go unlogged for a minute)", *args)


def _trusted_proxy(config: Config, host: str) -> bool:
    """A reverse proxy whose X-Forwarded-For the service believes: it carries many clients."""
    if not config.proxy_headers:
        return False
    allowed = config.forwarded_allow_ips
    for entry in allowed.split(",") if isinstance(allowed, str) else allowed:
        if entry.strip() == "*":
            return True
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry.strip(), strict=False):
                return True
    return False


def _host(protocol: object) -> str:
    client = getattr(protocol, "client", None)  # not every uvicorn protocol has one
    return str(client[0]) if client else ""


class EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and caps on connections."""

    header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = _host(self)
        if len(self.connections) > connection_limit():
            self._refuse(
                "open", "%d connections open, refused one from %s", connection_limit(), host
            )
            return
        if not _trusted_proxy(self.config, host):
            same = sum(_host(c) == host for c in self.connections)
            if same > PER_ADDRESS:
                self._refuse("address", "%d connections from %s, refused one more", same - 1, host)
                return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        # a request's headers are complete (a new cycle), or the connection went to websockets
        if self.cycle is not cycle or self.transport.get_protocol() is not self:
            self._disarm()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm()  # before uvicorn reads a pipelined request, which disarms
        super().on_response_complete()

    def _refuse(self, kind: str, message: str, *args: object) -> None:
        _warn(kind, message, *args)
        self.transport.write(REFUSAL)
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self.header_timer = self.loop.call_later(HEADER_SECONDS, self._headers_too_slow)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            _warn("headers", "closed a connection from %s: no request headers in time", _host(self))
            self.transport.close()
