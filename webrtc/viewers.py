"""What the service asks of its viewers, wherever they run: `SessionManager` serves them
in this process, `WorkerPool` in viewer worker processes of their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .bus import PacketBus
from .lag import LoopLag


class Viewer(Protocol):
    """One viewer's session (a WHEP resource)."""

    @property
    def id(self) -> str: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def connected_at(self) -> float | None: ...

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

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create(
        self, room: str, offer_sdp: str, *, save_data: bool = False, **info: object
    ) -> tuple[Viewer, str]: ...

    async def trickle(self, session_id: str, body: str) -> None: ...

    async def delete(self, session_id: str) -> bool: ...
