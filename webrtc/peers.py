"""The process-wide peer-connection settings of every process that answers peers (the
service, a viewer worker, a room's media process): one place, so they cannot differ."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .departures import quiet_departures
from .dtls import harden
from .guard import guard_datagrams
from .ice import GatherPolicy, gather_in, gather_only


def apply_peer_settings(addresses: Sequence[str] | None, policy: GatherPolicy) -> None:
    """Host candidates only on `addresses` (None: every interface's), bound and advertised
    as `policy` says; our DTLS suites and SRTP profiles; only a peer's ICE pair reaches
    DTLS/SRTP (the datagram guard); a peer leaving is INFO, not a traceback."""
    if addresses is not None:
        gather_only(list(addresses))
    gather_in(policy)
    harden()
    guard_datagrams(True)
    quiet_departures(asyncio.get_running_loop())
