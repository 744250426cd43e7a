"""WHIP (RFC 9725) for a pupil's turn to speak: the page publishes its microphone, we
answer with one receive-only Opus line and hand the decoded frames on. A talk session
exists only for the turn; nobody else has a decoder.

`Publishers` owns the talk sessions of a process: at most `max_sessions`, each ended on
DELETE, on ICE/DTLS failure, or when it has not connected within `connect_timeout`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from capture.supervise import cancel_all, supervised

from .ice import IceServer, rtc_configuration
from .sdp import OfferError, parse_offer

logger = logging.getLogger(__name__)


class TalkSession:
    """One published microphone; `close()` is idempotent."""

    def __init__(self, session_id: str, pc: RTCPeerConnection) -> None:
        self.id = session_id
        self.pc = pc
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.info: dict[str, Any] = {}
        self._track: MediaStreamTrack | None = None

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> str:
        """Answer an offer of exactly one audio line that sends (Opus)."""
        description = parse_offer(offer_sdp)
        kinds = [m.kind for m in description.media]
        sending = [m for m in description.media if m.kind == "audio"]
        if kinds != ["audio"] or sending[0].direction not in ("sendonly", "sendrecv"):
            raise OfferError(
                400, "Not a microphone", "publish one audio line (sendonly), and nothing else"
            )
        transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        opus = [
            c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"
        ]
        transceiver.setCodecPreferences(opus)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise OfferError(
                400, "Unsupported offer", f"cannot negotiate the offer ({exc}); audio must be Opus"
            ) from exc
        self._track = transceiver.receiver.track
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def frames(self) -> AsyncIterator[object]:
        """The decoded audio frames, until the session ends."""
        track = self._track
        if track is None:
            return
        with contextlib.suppress(MediaStreamError):
            while True:
                yield await track.recv()

    async def close(self) -> None:
        await self.pc.close()


class Publishers:
    """Every talk session of the process; `stop()` closes them all and ends the reaper."""

    def __init__(
        self,
        ice_servers: Sequence[IceServer] | Callable[[], Sequence[IceServer]] = (),
        *,
        connect_timeout: float = 15.0,
        max_sessions: int = 8,
        on_connected: Callable[[TalkSession], None] | None = None,
        on_closed: Callable[[TalkSession], None] | None = None,
    ) -> None:
        self.ice_servers = ice_servers if callable(ice_servers) else list(ice_servers)
        self.connect_timeout = connect_timeout
        self.max_sessions = max_sessions
        self.on_connected = on_connected
        self.on_closed = on_closed
        self.sessions: dict[str, TalkSession] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [supervised("whip-reaper", self._reap)]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await asyncio.gather(*(self.delete(s) for s in list(self.sessions)))

    async def create(
        self, offer_sdp: str, ice_servers: Sequence[IceServer] | None = None, **info: object
    ) -> tuple[TalkSession, str]:
        """Answer a WHIP offer (with `ice_servers`, else the pool's); returns the session and
        the SDP answer. Raises `OfferError`."""
        if len(self.sessions) >= self.max_sessions:
            raise OfferError(503, "Too many speakers", f"at most {self.max_sessions} at once")
        if ice_servers is not None:
            servers: Sequence[IceServer] = ice_servers
        else:
            servers = self.ice_servers() if callable(self.ice_servers) else self.ice_servers
        pc = RTCPeerConnection(rtc_configuration(servers))
        session = TalkSession(secrets.token_urlsafe(16), pc)
        session.info.update(info)
        self.sessions[session.id] = session

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState == "connected" and session.connected_at is None:
                session.connected_at = time.monotonic()
                if self.on_connected is not None:
                    self.on_connected(session)

        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            await self.delete(session.id)
            raise
        return session, answer

    async def delete(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        await session.close()
        if self.on_closed is not None:
            self.on_closed(session)
        return True

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                late = (
                    session.connected_at is None and now - session.created_at > self.connect_timeout
                )
                if late or session.state in ("failed", "closed"):
                    logger.info("talk session %s ended (%s)", session.id, session.state)
                    await self.delete(session.id)
