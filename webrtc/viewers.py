"""What the service asks of its viewers, wherever they run: `SessionManager` serves them
in this process, `WorkerPool` in viewer worker processes of their own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .bus import PacketBus
from .lag import LoopLag


@dataclass(frozen=True)
class WorkerStats:
    """The viewer workers, for /metrics and health (all zero: viewers in this process)."""

    workers: int = 0
    replaced: int = 0  # workers that died or hung and were started again
    lag: float = 0.0  # the worst lateness of a worker's loop lately, seconds
    drops: Mapping[str, int] = field(default_factory=dict)  # datagrams dropped, by cause
    sessions: tuple[int, ...] = ()  # viewers per worker
    pids: tuple[int, ...] = ()


class Viewer(Protocol):
    """One viewer's session (a WHEP resource)."""

    @property
    def id(self) -> str: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def connected_at(self) -> float | None: ...

    @property
    def answer_ms(self) -> dict[str, float]:
        """What answering the offer took, ms: "negotiate", "gather"."""
        ...

    def set_save_data(self, save_data: bool) -> None: ...

    def set_audio(self, bus: PacketBus | None) -> None: ...

    async def status(self) -> dict[str, Any]:
        """What the viewer gets now (`ViewerSession.describe()`)."""
        ...


class Viewers(Protocol):
    """Every viewer session of the service: created from an offer, trickled, deleted."""

    @property
    def sessions(self) -> Mapping[str, Viewer]: ...

    @property
    def lag(self) -> LoopLag: ...

    def peer_connections_open(self) -> int: ...

    def worker_stats(self) -> WorkerStats: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create(
        self, room: str, offer_sdp: str, *, save_data: bool = False, **info: object
    ) -> tuple[Viewer, str]: ...

    async def trickle(self, session_id: str, body: str) -> None: ...

    async def delete(self, session_id: str) -> bool: ...
