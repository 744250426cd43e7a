"""The service of one mini-PC: its rooms, the viewer sessions, the token signer."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import threading
import time

from webrtc import IceServer, SessionManager, gather_only, is_loopback

from .clock import Clock, SystemClock
from .lessons import Lesson, LessonStore
from .links import public_url, pupils, signer_for, staff_key
from .room import Room
from .roster import Pupil
from .scheduler import RoomPlan, Rules, Scheduler
from .settings import Config

logger = logging.getLogger(__name__)


class EdgeService:
    """Composition root; `start()` opens devices and starts encoders, `stop()` releases all."""

    def __init__(self, config: Config, *, host: str, port: int, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        self.signer = signer_for(config)
        self.staff_key = staff_key(config)
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
        self.store: LessonStore | None = None
        self.scheduler: Scheduler | None = None
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
        await self.sessions.start()
        config, schedule = self.config, self.config.site.schedule
        self.store = LessonStore(config.site.data_dir / "lessons.db")
        self.scheduler = Scheduler(
            self.store,
            [
                RoomPlan(
                    name,
                    settings.class_name,
                    config.timetables.get(name, []),
                    config.excluded_subjects(name),
                    settings.always_live,
                )
                for name, settings in config.rooms.items()
            ],
            {name: _Driver(self, room) for name, room in self.rooms.items()},
            clock=self.clock,
            zone=config.zone,
            calendar=config.site.calendar.calendar(),
            rules=Rules(
                lead=dt.timedelta(minutes=schedule.lead_minutes),
                grace=dt.timedelta(minutes=schedule.grace_minutes),
                rollover=dt.timedelta(minutes=schedule.rollover_minutes),
            ),
        )
        await self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.sessions.stop()
        await asyncio.gather(*(room.stop() for room in self.rooms.values()))
        if self.store is not None:
            self.store.close()
        gather_only(None)

    async def close_viewers(self, room: str) -> int:
        """End every viewer session of `room` (its lesson ended)."""
        ids = [s.id for s in self.sessions.sessions.values() if s.info.get("room") == room]
        for session_id in ids:
            await self.sessions.delete(session_id)
        return len(ids)

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


class _Driver:
    """What the scheduler does to one room: devices, the live flag, its viewers."""

    def __init__(self, service: EdgeService, room: Room) -> None:
        self.service = service
        self.room = room

    async def warm(self) -> None:
        await self.room.warm()

    async def go_live(self, lesson: Lesson) -> None:
        self.room.lesson = lesson
        self.room.live = True
        logger.info("room %s: lesson %s live (%s)", self.room.name, lesson.id, lesson.subject)

    async def close(self, lesson: Lesson, *, keep_viewers: bool) -> None:
        if self.room.lesson is not None and self.room.lesson.id == lesson.id:
            self.room.lesson = None
        if keep_viewers:
            logger.info("room %s: lesson %s closed, viewers stay", self.room.name, lesson.id)
            return
        self.room.live = False
        closed = await self.service.close_viewers(self.room.name)
        logger.info("room %s: lesson %s closed, %d viewers left", self.room.name, lesson.id, closed)

    async def cool(self) -> None:
        await self.room.cool()
