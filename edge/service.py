"""The service of one mini-PC: its rooms, the viewer sessions, the token signer."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

from webrtc import IceServer, SessionManager, gather_only, is_loopback

from .links import public_url, pupils, signer_for
from .room import Room
from .roster import Pupil
from .settings import Config

logger = logging.getLogger(__name__)


class EdgeService:
    """Composition root; `start()` opens devices and starts encoders, `stop()` releases all."""

    def __init__(self, config: Config, *, host: str, port: int) -> None:
        self.config = config
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        self.signer = signer_for(config)
        self.base_url = public_url(config, host, port)
        self.advertised_ice_servers = [
            IceServer(tuple(s.urls), s.username, s.credential)
            for s in config.site.webrtc.ice_servers
        ]
        # On loopback (tests, one machine) our own peer connections use no STUN/TURN.
        self.sessions = SessionManager(
            [] if self.loopback else self.advertised_ice_servers,
            connect_timeout=config.site.webrtc.connect_timeout,
            max_sessions=config.site.webrtc.max_viewers,
        )
        self.rooms: dict[str, Room] = {}
        self.pupils: dict[str, Pupil] = {p.id: p for p in pupils(config)}
        self.started_at = time.monotonic()

    async def start(self) -> None:
        if self.loopback:
            gather_only(["127.0.0.1"])
        elif self.host not in ("0.0.0.0", "::", ""):
            gather_only([self.host])
        loop = asyncio.get_running_loop()
        self.rooms = {
            name: Room(name, settings, loop) for name, settings in self.config.rooms.items()
        }
        for room in self.rooms.values():
            await room.start()
        await self.sessions.start()

    async def stop(self) -> None:
        await self.sessions.stop()
        await asyncio.gather(*(room.stop() for room in self.rooms.values()))
        gather_only(None)

    def process_counts(self) -> dict[str, int]:
        """Live objects of this process, to spot leaks: threads, tasks, peer connections."""
        gc.collect()
        return {
            "threads": threading.active_count(),
            "tasks": len(asyncio.all_tasks()),
            "peer_connections": len(self.sessions.peer_connections),
            "sessions": len(self.sessions.sessions),
        }

    def health(self) -> dict[str, object]:
        now = asyncio.get_running_loop().time()
        rooms = {name: room.health(now) for name, room in self.rooms.items()}
        warming = time.monotonic() - self.started_at < 10
        healthy = warming or not any(r["stalled"] for r in rooms.values())
        return {
            "status": "ok" if healthy else "degraded",
            "viewers": len(self.sessions.sessions),
            "rooms": rooms,
        }
