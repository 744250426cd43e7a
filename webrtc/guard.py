"""What the internet sends a media port never reaches DTLS or SRTP unless it comes from
the pupil's validated ICE pair (OWASP ASVS 5.0 V17.2.3–17.2.6, issue 24).

aioice 0.13 (`StunProtocol.datagram_received`) hands every datagram that does not parse
as STUN to the connection's data queue, whatever its source and whether or not ICE has
completed; aiortc 1.16 reads that queue as DTLS/SRTP from the pupil. So one zero-length
datagram from anyone ended a session (`data[0]`: IndexError in
`RTCDtlsTransport._recv_next`), so did one over 1,500 bytes starting 0x80–0xBF
(pylibsrtp's ValueError: aiortc catches only pylibsrtp.Error), a stranger's ClientHello
queued before ICE completed was the first record our DTLS client read, and a STUN
request with a short attribute raised struct.error in the datagram callback (a traceback
per datagram). `guard_datagrams(True)` replaces that one method; the replacement:

- drops empty datagrams and those over `MAX_DATAGRAM` bytes (pylibsrtp's buffer);
- takes the STUN range (first byte 0–3, RFC 7983) as STUN only: a message aioice cannot
  parse, or whose handling raises, is a counted drop, never data and never a traceback;
- passes anything else on only when the connection has selected (nominated) a pair for
  the socket's component, on this very socket, and the datagram comes from that pair's
  remote address: before ICE completes nothing is queued (a DTLS record is never
  answered before the pair is validated), and afterwards only the pupil's address and
  port reach DTLS and SRTP.

Every drop is counted by cause in `DROPS` (the service's /metrics), and each cause logs
at most one line a minute, with the count since its last line.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aioice.ice
from aioice import stun

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 1500
"""pylibsrtp's buffer (`Session._cdata`): a longer SRTP packet raises ValueError."""
LOG_EVERY = 60.0
"""Seconds between two log lines of one cause."""


class Cause(enum.StrEnum):
    EMPTY = "empty"
    OVERSIZED = "oversized"
    MALFORMED_STUN = "malformed_stun"
    STUN_ERROR = "stun_error"
    """Parsed, but aioice's handling of it raised."""
    BEFORE_ICE = "before_ice"
    """Not STUN, and the connection has not selected a pair yet."""
    OTHER_ADDRESS = "other_address"
    """Not STUN, and not from the selected pair's remote address (or not on its socket)."""


@dataclass
class Drops:
    """Datagrams dropped, by cause; one log line per cause per `every` seconds at most."""

    clock: Callable[[], float] = time.monotonic
    every: float = LOG_EVERY
    counts: Counter[Cause] = field(default_factory=Counter)
    _unlogged: Counter[Cause] = field(default_factory=Counter)
    _logged_at: dict[Cause, float] = field(default_factory=dict)

    def drop(self, cause: Cause, source: tuple[Any, ...], detail: str = "") -> None:
        self.counts[cause] += 1
        self._unlogged[cause] += 1
        now = self.clock()
        last = self._logged_at.get(cause)
        if last is not None and now - last < self.every:
            return
        since = "" if last is None else f" in {now - last:.0f} s"
        logger.warning(
            "media port: dropped %d datagram(s) (%s)%s, the latest from %s:%s%s",
            self._unlogged[cause],
            cause.value,
            since,
            source[0],
            source[1],
            f": {detail}" if detail else "",
        )
        self._logged_at[cause] = now
        self._unlogged[cause] = 0


DROPS = Drops()

_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def guard_datagrams(on: bool) -> None:
    """Process-wide: every aioice socket (host and TURN-relayed) passes its datagrams
    through `_guarded_datagram_received`; `False` restores aioice's own."""
    protocol = aioice.ice.StunProtocol
    protocol.datagram_received = _guarded_datagram_received if on else _original_datagram_received  # type: ignore[method-assign]


def _guarded_datagram_received(
    self: aioice.ice.StunProtocol, data: bytes | str, addr: tuple[Any, ...]
) -> None:
    data = cast(bytes, data)
    if not data:
        DROPS.drop(Cause.EMPTY, addr)
        return
    if len(data) > MAX_DATAGRAM:
        DROPS.drop(Cause.OVERSIZED, addr, f"{len(data)} bytes")
        return
    if data[0] < 4:  # STUN (RFC 7983): never data
        try:
            stun.parse_message(data)
        except Exception as exc:  # struct.error, ValueError, …: aioice's parser is strict
            DROPS.drop(Cause.MALFORMED_STUN, addr, f"{type(exc).__name__}: {exc}")
            return
        try:
            _original_datagram_received(self, data, addr)
        except Exception as exc:
            DROPS.drop(Cause.STUN_ERROR, addr, f"{type(exc).__name__}: {exc}")
        return
    component = self.local_candidate.component
    pair = self.receiver._nominated.get(component)
    if pair is None:
        DROPS.drop(Cause.BEFORE_ICE, addr)
        return
    if pair.protocol is not self or pair.remote_addr != (addr[0], addr[1]):
        DROPS.drop(Cause.OTHER_ADDRESS, addr)
        return
    self.receiver.data_received(data, component)
