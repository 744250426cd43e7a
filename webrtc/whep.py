"""WHEP sessions of a process: create from an offer, trickle, delete, reap the dead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import Callable, Sequence

from aiortc import RTCPeerConnection

from capture.supervise import cancel_all, supervised

from .ice import IceServer, rtc_configuration
from .lag import LoopLag
from .sdp import OfferError, parse_sdpfrag
from .session import ADAPT_INTERVAL, Feeds, ViewerSession
from .viewers import WorkerStats

logger = logging.getLogger(__name__)

LAG_WINDOW = 2.0  # s: a receiver report read now may have waited behind this much lateness


class SessionManager:
    """Owns every viewer session; `stop()` closes them all and ends the reaper.

    `ice_servers` may be a function: called for each session (fresh TURN credentials).
    A session ends on DELETE, on ICE/DTLS failure or a closed connection, or when it
    has not connected within `connect_timeout` seconds.
    """

    def __init__(
        self,
        feeds: Callable[[str], Feeds],
        ice_servers: Sequence[IceServer] | Callable[[], Sequence[IceServer]] = (),
        *,
        connect_timeout: float = 30.0,
        max_sessions: int = 200,
        on_connected: Callable[[ViewerSession], None] | None = None,
        on_closed: Callable[[ViewerSession], None] | None = None,
        on_removed: Callable[[ViewerSession], None] | None = None,
    ) -> None:
        self.feeds = feeds  # what a room offers its viewers, by room name
        self.on_connected = on_connected  # a session's media began to flow
        self.on_closed = on_closed  # a session that had connected has ended
        self.on_removed = on_removed  # any session has ended, connected or not
        self.ice_servers = ice_servers if callable(ice_servers) else list(ice_servers)
        self.connect_timeout = connect_timeout
        self.max_sessions = max_sessions
        self.sessions: dict[str, ViewerSession] = {}
        self.peer_connections: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.lag = LoopLag()  # the loop's own lateness, taken off the viewers' round trips

    async def start(self) -> None:
        await self.lag.start()
        self._tasks = [
            supervised("whep-reaper", self._reap),
            supervised("whep-adapt", self._adapt),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await self.lag.stop()
        await asyncio.gather(*(self._close(s) for s in list(self.sessions.values())))

    def peer_connections_open(self) -> int:
        return len(self.peer_connections)

    def worker_stats(self) -> WorkerStats:
        return WorkerStats()

    async def create(
        self, room: str, offer_sdp: str, *, save_data: bool = False, **info: object
    ) -> tuple[ViewerSession, str]:
        """Answer an offer to watch `room`; returns the session and the SDP answer.
        Raises `OfferError`."""
        return await self.open(room, offer_sdp, save_data=save_data, info=info)

    async def open(
        self,
        room: str,
        offer_sdp: str,
        *,
        save_data: bool = False,
        ice_servers: Sequence[IceServer] | None = None,
        session_id: str | None = None,
        info: dict[str, object] | None = None,
    ) -> tuple[ViewerSession, str]:
        """`create`, with the session's ID and ICE servers given (a viewer worker's)."""
        if len(self.sessions) >= self.max_sessions:
            raise OfferError(503, "Too many viewers", f"at most {self.max_sessions} sessions")
        session_id = session_id or secrets.token_urlsafe(16)
        if ice_servers is None:
            ice_servers = self.ice_servers() if callable(self.ice_servers) else self.ice_servers
        pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.peer_connections.add(pc)
        session = ViewerSession(session_id, pc, self.feeds(room), save_data=save_data)
        session.info.update(info or {}, room=room)
        self.sessions[session_id] = session

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState == "connected" and session.connected_at is None:
                session.connected_at = time.monotonic()
                if self.on_connected is not None:
                    self.on_connected(session)
            if pc.connectionState in ("failed", "closed"):
                self._wake.set()

        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            await self._close(session)
            raise
        return session, answer

    async def trickle(self, session_id: str, body: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise KeyError(session_id)
        await session.add_candidates(parse_sdpfrag(body))

    async def delete(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        await self._close(session)
        return True

    async def _close(self, session: ViewerSession) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        await session.close()
        if session.connected_at is not None and self.on_closed is not None:
            self.on_closed(session)
        if self.on_removed is not None:
            self.on_removed(session)

    def _is_dead(self, session: ViewerSession, now: float) -> bool:
        if session.state in ("failed", "closed"):
            return True
        return session.connected_at is None and now - session.created_at > self.connect_timeout

    async def _reap(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # 3.11's wait_for can swallow a cancel
                    await self._wake.wait()
            self._wake.clear()
            await self._reap_once()

    async def _adapt(self) -> None:
        while True:
            await asyncio.sleep(ADAPT_INTERVAL)
            await self._adapt_once()

    async def _adapt_once(self) -> None:
        # a method of its own, so no frame keeps the last session alive while sleeping
        server_lag = self.lag.recent(LAG_WINDOW)
        for session in list(self.sessions.values()):
            try:
                await session.adapt(server_lag)
            except Exception:  # one viewer's oddity must not stop the others
                logger.exception("adapting session %s", session.id)

    async def _reap_once(self) -> None:
        # a method of its own, so no frame keeps the last closed session alive
        now = time.monotonic()
        dead = [s for s in self.sessions.values() if self._is_dead(s, now)]
        for session in dead:
            logger.info("session %s ended (%s)", session.id, session.state)
            await self._close(session)
