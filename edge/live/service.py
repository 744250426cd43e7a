"""The service of one mini-PC: its rooms, the viewer sessions, the token signer."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import secrets
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from capture.supervise import cancel_all, run_every_step, supervised
from edge.access.gate import Gate
from edge.access.hubkey import read_key
from edge.access.links import open_roster, public_url, signer_for, staff_key
from edge.access.rules import Staff, own_names
from edge.access.staff import StaffSessions
from edge.access.throttle import Throttle
from edge.config.settings import Config, LibrarySettings, RoomSettings
from edge.live.classroom import Channel, Classroom, Talk
from edge.live.delivery import Delivery
from edge.live.logbook import Logbook
from edge.live.media import TalkState
from edge.live.ptz import CameraControl, CameraControlError
from edge.live.relay import Relay, read_secret
from edge.live.remote import MediaProcess, RemoteMedia
from edge.live.room import Room
from edge.live.state import room_state
from edge.recording.archive import Archiver, ArchiveStore, DiskGuard, Manners
from edge.recording.compose import Composer
from edge.recording.library import DirectoryTarget, RcloneTarget, Target
from edge.recording.recorder import Recorder
from edge.recording.recordings import RecordingStore
from edge.recording.take import Tracks
from edge.school.attendance import AttendanceStore
from edge.school.clock import Clock, SystemClock
from edge.school.hub import HubStore
from edge.school.lessons import Lesson, LessonStore
from edge.school.roster import Pupil
from edge.school.scheduler import RoomPlan, Rules, Scheduler
from webrtc import (
    IceServer,
    SessionManager,
    Viewer,
    Viewers,
    WorkerPool,
    gather_only,
    is_loopback,
)
from webrtc.dtls import harden
from webrtc.guard import guard_datagrams
from webrtc.ice import GatherPolicy, TurnRest, UdpPorts, gather_in
from webrtc.peers import apply_peer_settings
from webrtc.workers import viewer_workers

logger = logging.getLogger(__name__)

HEARTBEAT = 30.0  # seconds between notes of who is still watching
LIVE_ROOM_FIELDS = {"presets", "start_preset", "timetable", "excluded_subjects"}
"""Room settings a saved edit changes at once; the others (devices, encodings) need a
restart of the service."""


class EdgeService:
    """Composition root; `start()` opens devices and starts encoders, `stop()` releases all."""

    def __init__(
        self,
        config: Config,
        *,
        host: str,
        port: int,
        clock: Clock | None = None,
        usb_backend: object | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.host, self.port = host, port
        self.loopback = is_loopback(host)
        self.signer = signer_for(config)
        self.base_url = public_url(config, host, port)
        self.staff = Staff(
            staff_key(config),
            StaffSessions(config.site.data_dir, staff_key(config)),
            own_names(host, self.base_url, config.site.http.public_url),
        )
        webrtc = config.site.webrtc
        self.advertised_ice_servers = [  # the static ones; `ice_servers()` adds minted TURN
            IceServer(tuple(s.urls), s.username, s.credential) for s in webrtc.ice_servers
        ]
        self.turn = turn_rest(config)
        self.gather_policy = GatherPolicy(
            UdpPorts.parse(webrtc.udp_ports) if webrtc.udp_ports else None,
            webrtc.public_address,
        )
        self.talks: dict[str, Talk] = {}  # pupils' microphones, one turn each (WHIP)
        self.attendance = AttendanceStore(config.site.data_dir / "lessons.db")
        self._heartbeat: asyncio.Task[None] | None = None
        self.store = LessonStore(config.site.data_dir / "lessons.db")
        self.recordings = RecordingStore(config.site.data_dir / "recordings", config.zone)
        self.jobs = ArchiveStore(config.site.data_dir / "lessons.db")
        self.throttle = Throttle()  # refused join and login attempts per address
        self.roster = open_roster(config)
        self.gate = Gate(self.signer, self.roster)
        self.started_at = time.monotonic()
        self.logbook = Logbook(config.zone)
        self.relay = (
            Relay(config.site.relay, self, read_secret(config.site.relay, config.path))
            if config.site.relay is not None
            else None
        )  # [relay]: pupils play from Janus; None: the built-in fan-out serves them
        origin = time.monotonic()  # the buses' time zero, the same in every process
        addresses = self.candidate_addresses = self._candidate_addresses()
        ports = self.gather_policy.ports
        self.media_processes = {  # each room's capture and encoders in a process of its own
            name: MediaProcess(
                {name: settings},
                origin,
                addresses=addresses,
                ports=(ports.first, ports.last) if ports is not None else None,
                public_address=self.gather_policy.public_address,
            )
            for name, settings in config.rooms.items()
            if config.site.webrtc.media_process
        }
        self.rooms = {
            name: self._room(name, settings, usb_backend) for name, settings in config.rooms.items()
        }
        self.sessions = self._viewers()
        pool = self.sessions if isinstance(self.sessions, WorkerPool) else None
        for key, media_process in enumerate(self.media_processes.values()):
            media_process.set_order(pool.bus_names() if pool is not None else [])
            if pool is not None:  # its viewers keep their sessions: a new feed from the new one
                media_process.on_replaced = partial(pool.refeed, key)
        self.archiver = self._archiver(self.store, self.jobs)
        self.delivery = Delivery.for_service(self)  # rooms with a [hub]: reports to it
        hub = config.site.school_hub  # [school_hub]: this process is the school's hub
        self.hub = HubStore(config.site.data_dir / "school.db") if hub is not None else None
        self.hub_keys = (
            {name: read_key(room.key_file) for name, room in hub.rooms.items()} if hub else {}
        )
        schedule = config.site.schedule
        self.scheduler = Scheduler(
            self.store,
            [self.plan(name) for name in config.rooms],
            {name: _Driver(self, room) for name, room in self.rooms.items()},
            clock=self.clock,
            zone=config.zone,
            calendar=config.site.calendar.calendar(),
            rules=Rules(
                lead=dt.timedelta(minutes=schedule.lead_minutes),
                grace=dt.timedelta(minutes=schedule.grace_minutes),
                rollover=dt.timedelta(minutes=schedule.rollover_minutes),
                always_span=dt.timedelta(minutes=schedule.always_live_lesson_minutes),
            ),
        )

    def _room(self, name: str, settings: RoomSettings, usb_backend: object | None) -> Room:
        """Room `name` with its parts: camera control, classroom, recorder."""
        config = self.config
        camera = CameraControl(
            name,
            settings.camera.control if settings.camera is not None else None,
            settings.presets,
            None if config.demo else config.room_files.get(name),
            backend=usb_backend,
        )
        process = self.media_processes.get(name)
        media = None if process is None else RemoteMedia(name, settings, process)
        room = Room(name, settings, camera, media)
        room.media.on_talk_events(partial(self._talk_event, name))
        room.classroom = Classroom(
            room,
            clock=self.clock,
            zone=config.zone,
            names=self._name_of,
            close_media=self.close_media,
            close_talk=self.end_talk,
            on_present=self._present,
            on_absent=self._absent,
        )
        if config.site.recordings.enabled and settings.record:
            room.recorder = Recorder(
                name,
                room.media.take,
                recorded_tracks(settings),
                self.recordings,
                origin=room.origin,
                clock=self.clock,
                school=config.site.school,
                stop_below_bytes=config.site.recordings.stop_below_mb * 1_000_000,
            )
        return room

    def ice_servers(self, label: str) -> list[IceServer]:
        """STUN/TURN for one page or session: the static servers and, with [webrtc.turn],
        TURN credentials minted now (`label` tells whose in the TURN server's log)."""
        minted = [self.turn.mint(f"{label}.{secrets.token_hex(4)}")] if self.turn else []
        return self.advertised_ice_servers + minted

    def plan(self, name: str) -> RoomPlan:
        """What the scheduler needs of room `name`, from the current config."""
        settings = self.config.rooms[name]
        return RoomPlan(
            name,
            settings.class_name,
            self.config.timetables.get(name, []),
            self.config.excluded_subjects(name),
            settings.always_live,
        )

    def apply_room(self, name: str, fresh: Config) -> tuple[list[str], list[str]]:
        """Take room `name`'s settings from `fresh` (the files as just saved): what could be
        applied now and what waits for a restart (devices, encodings)."""
        old, new = self.config.rooms[name], fresh.rooms[name]
        changed = [f for f in RoomSettings.model_fields if getattr(old, f) != getattr(new, f)]
        if self.config.timetables.get(name) != fresh.timetables.get(name):
            changed.append("timetable")
        changed = list(dict.fromkeys(changed))
        later = [f for f in changed if f not in LIVE_ROOM_FIELDS]
        if later:
            return [], later
        self.config.rooms[name] = new
        self.config.timetables[name] = fresh.timetables.get(name, [])
        self.rooms[name].settings = new
        self.rooms[name].camera.presets = dict(new.presets)
        self.scheduler.replan(self.plan(name))
        logger.info("room %s: applied %s without a restart", name, ", ".join(changed) or "nothing")
        return changed, []

    async def start(self) -> None:
        self.logbook.install()
        apply_peer_settings(self.candidate_addresses, self.gather_policy)
        closed = await asyncio.to_thread(self.attendance.close_dangling)
        if closed:
            logger.info("%d viewer session(s) a crash left open end when last seen", closed)
        # side by side: each takes a python's start-up
        starts = [process.start() for process in self.media_processes.values()]
        await asyncio.gather(*starts, self.sessions.start())
        for room in self.rooms.values():
            await room.classroom.start()
        if self.relay is not None:
            await self.relay.start()
        self._heartbeat = supervised("attendance-heartbeat", self._beat)
        await self.archiver.start()
        await self.scheduler.start()
        if self.delivery is not None:
            await self.delivery.start()

    def _candidate_addresses(self) -> list[str] | None:
        """The only addresses our host candidates may have (None: every interface's)."""
        if self.loopback:
            return ["127.0.0.1"]
        if self.host not in ("0.0.0.0", "::", ""):
            return [self.host]
        return None

    def _viewers(self) -> Viewers:
        """The pupils' sessions: in viewer worker processes, or in this one (0 workers)."""
        webrtc = self.config.site.webrtc
        # On loopback (tests, one machine) our own peer connections use no STUN/TURN.
        ice = () if self.loopback else lambda: self.ice_servers("edge")
        workers = viewer_workers(webrtc.viewer_workers)
        if workers == 0:
            return SessionManager(
                lambda room: self.rooms[room].feeds(),
                ice,
                connect_timeout=webrtc.connect_timeout,
                max_sessions=webrtc.max_viewers,
                on_connected=self._viewer_joined,
                on_closed=self._viewer_left,
            )
        return WorkerPool(
            workers,
            {name: room.feeds() for name, room in self.rooms.items()},
            [bus for room in self.rooms.values() for bus in room.buses.values()],
            ice,
            connect_timeout=webrtc.connect_timeout,
            max_sessions=webrtc.max_viewers,
            addresses=self.candidate_addresses,
            ports=self.gather_policy.ports,
            public_address=self.gather_policy.public_address,
            holds={name: room.twins for name, room in self.rooms.items()},
            on_connected=self._viewer_joined,
            on_closed=self._viewer_left,
            on_lost=self._viewer_lost,
            feeds_to=list(self.media_processes.values()) or None,
        )

    def _archiver(self, lessons: LessonStore, jobs: ArchiveStore) -> Archiver:
        site = self.config.site
        guard = DiskGuard(
            self.recordings,
            jobs,
            retention=dt.timedelta(days=site.recordings.retention_days),
            min_free_bytes=site.recordings.min_free_mb * 1_000_000,
        )
        library = site.library
        return Archiver(
            lessons,
            jobs,
            self.recordings,
            library_target(library, site.data_dir),
            Manners(
                rate_bytes=library.rate_limit_kbps * 1000 // 8,
                window=library.daily_window(),
                pause_while_live=library.pause_while_live,
                retry_base=library.retry_base_seconds,
                retry_max=library.retry_max_seconds,
            ),
            guard,
            clock=self.clock,
            zone=self.config.zone,
            live=lambda: any(room.live for room in self.rooms.values()),
            composer=Composer(nice=site.recordings.compose_nice)
            if site.recordings.compose
            else None,
        )

    def pick_key(self, pupil: Pupil) -> str:
        """How a class link's page names a pupil: stable, but not their ID (personal data)."""
        return self.signer.sign(f"pick:{pupil.class_name}:{pupil.id}")[:12]

    def classmate(self, class_name: str, key: str) -> Pupil | None:
        return next((p for p in self.roster.pupils(class_name) if self.pick_key(p) == key), None)

    def _viewer_joined(self, session: Viewer) -> None:
        self.media_started(session.id, session, session.info)

    def _viewer_left(self, session: Viewer) -> None:
        self.media_ended(session.id, session.info)

    def _viewer_lost(self, session: Viewer) -> None:
        """Its viewer worker ended: the page is told to join again now, not after its
        browser notices the silence (seconds) and its backoff."""
        room = self.rooms.get(str(session.info.get("room", "")))
        channel = room.classroom.channel_of(session.id) if room is not None else None
        if channel is not None:
            channel.send({"type": "rejoin"})

    def media_started(self, media_id: str, session: Viewer | None, info: dict[str, Any]) -> None:
        """A media session plays (WHEP: `session`; relayed: None): for the page's channel
        that asked for it, or, from a player without a page, as a channel of its own."""
        room = self.rooms.get(str(info.get("room", "")))
        if room is None:
            return
        channel_id = info.get("channel")
        if channel_id and room.classroom.link_media(str(channel_id), media_id, session):
            return
        pupil_id = info.get("pupil_id")
        verified = bool(info.get("verified", False))
        stand_in = Channel(
            id=media_id,
            key=str(pupil_id) if pupil_id and verified else f"viewer:{media_id}",
            room=room.name,
            class_name=str(info.get("class_name", "")),
            pupil_id=pupil_id,
            verified=verified,
            address=str(info.get("address", "")),
            link=str(info.get("link", "")),
            user_agent=str(info.get("user_agent", "")),
            implicit=True,
        )
        room.classroom.open(stand_in)
        room.classroom.link_media(media_id, media_id, session)

    def media_ended(self, media_id: str, info: dict[str, Any]) -> None:
        room = self.rooms.get(str(info.get("room", "")))
        if room is not None:
            room.classroom.unlink_media(media_id)
            room.classroom.leave(media_id)  # a stand-in channel ends with its media

    async def close_media(self, media_id: str) -> None:
        """End a media session, built-in or relayed."""
        if not await self.sessions.delete(media_id) and self.relay is not None:
            await self.relay.leave(media_id)

    async def start_talk(self, room: str, channel: Channel, offer: str) -> tuple[Talk, str]:
        """A pupil's microphone for the turn the teacher gave `channel`, answered and played
        by the room's media plane; (the talk, the SDP answer). Raises `OfferError`."""
        servers = [] if self.loopback else self.ice_servers("edge")
        session_id, answer = await self.rooms[room].media.talk(offer, servers)
        talk = self.talks[session_id] = Talk(session_id, room, channel.id)
        replaced = self.rooms[room].classroom.talk_started(channel, talk)
        if replaced is not None:
            await self.end_talk(replaced.id)
        return talk, answer

    async def end_talk(self, session_id: str) -> bool:
        talk = self.talks.pop(session_id, None)
        if talk is None:
            return False
        self.rooms[talk.room].classroom.talk_ended(talk)
        await self.rooms[talk.room].media.end_talk(session_id)
        return True

    def _talk_event(self, room: str, session_id: str, state: TalkState) -> None:
        """The media plane says a talk session connected, or closed by itself (failed,
        never connected, its process gone)."""
        talk = self.talks.get(session_id)
        if talk is None:
            return
        if state == "connected":
            talk.connected_at = time.monotonic()
            self.rooms[room].classroom.talk_connected(talk)
        else:
            del self.talks[session_id]
            self.rooms[room].classroom.talk_ended(talk)

    def _present(self, channel: Channel) -> None:
        self.attendance.joined(
            channel.id,
            room=channel.room,
            class_name=channel.class_name,
            pupil_id=channel.pupil_id,
            verified=channel.verified,
            at=self.clock.now(),
            address=channel.address,
            device=channel.user_agent,
        )

    def _absent(self, channel: Channel) -> None:
        self.attendance.left(channel.id, self.clock.now())

    def _name_of(self, pupil_id: str | None) -> str:
        pupil = self.roster.get(pupil_id) if pupil_id else None
        return pupil.name if pupil is not None else "Học sinh chưa chọn tên"

    async def _beat(self) -> None:
        """Who is still watching, every `HEARTBEAT` seconds: a crash loses no more."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            present = [
                channel.id
                for room in self.rooms.values()
                for channel in room.classroom.channels.values()
                if channel.present
            ]
            self.attendance.seen(present, self.clock.now())

    async def stop(self) -> None:
        """Stop and release everything, in order; a step that fails is logged and the
        others still run (the recordings are closed, the database written)."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if self.delivery is not None:
            steps.append(("hub delivery", self.delivery.stop))
        if self.hub is not None:
            steps.append(("school hub", self.hub.close))
        if self._heartbeat is not None:
            steps.append(("heartbeat", partial(cancel_all, [self._heartbeat])))
        steps.append(("scheduler", self.scheduler.stop))
        if self.relay is not None:
            steps.append(("relay", self.relay.stop))
        steps += [("archiver", self.archiver.stop), ("viewer sessions", self.sessions.stop)]
        steps += [(f"room {n}", room.stop) for n, room in self.rooms.items()]
        steps += [(f"room {n}: media process", p.stop) for n, p in self.media_processes.items()]
        steps += [
            ("lessons", self.store.close),
            ("jobs", self.jobs.close),
            ("roster", self.roster.close),
            ("attendance", self.attendance.close),
            ("candidates", partial(gather_only, None)),
            ("interfaces", partial(gather_in, None)),
            ("dtls", partial(harden, False)),
            ("datagram guard", partial(guard_datagrams, False)),
            ("log book", self.logbook.remove),
        ]
        await run_every_step(steps)

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
            "peer_connections": self.sessions.peer_connections_open(),
            "sessions": len(self.sessions.sessions),
            "viewer_workers": len(self.sessions.worker_stats().pids),
            "media_processes": sum(p.answering() for p in self.media_processes.values()),
            "media_process_replaced": sum(p.replaced for p in self.media_processes.values()),
        }

    def health(self) -> dict[str, object]:
        now = asyncio.get_running_loop().time()
        zone = self.config.zone
        rooms = {
            name: {**room_state(self, name).for_staff(zone), **room.health(now)}
            for name, room in self.rooms.items()
        }
        for name, room in self.rooms.items():
            if room.recorder is not None:
                rooms[name]["recorder"] = room.recorder.health()
        warming = time.monotonic() - self.started_at < 10
        stalled = not warming and any(r["stalled"] for r in rooms.values())
        healthy = not stalled and not any(r["device_missing"] for r in rooms.values())
        return {
            "status": "ok" if healthy else "degraded",
            "viewers": len(self.sessions.sessions),
            "rooms": rooms,
            "archive": self.archiver.health(),
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """What staff must see (the console, /healthz): streaming goes on regardless."""
        found = []
        if self.archiver.guard.low:
            free = self.archiver.guard.free / 1e6
            found.append(
                f"Ổ đĩa sắp đầy: còn {free:.0f} MB, không còn bài đã lưu trữ nào để xoá. "
                "Bài học vẫn phát trực tiếp; hãy báo Tổ CNTT."
            )
        for name in self.rooms:
            found += room_state(self, name).warnings
        return found


class _Driver:
    """What the scheduler does to one room: devices, the live flag, its viewers."""

    def __init__(self, service: EdgeService, room: Room) -> None:
        self.service = service
        self.room = room

    async def warm(self) -> None:
        opening = not self.room.capturing
        await self.room.warm()
        preset = self.room.settings.start_preset
        if opening and preset is not None:
            try:
                await self.room.camera.recall(preset)
            except CameraControlError as exc:  # the lesson goes on where the camera points
                logger.warning("room %s: start preset %s: %s", self.room.name, preset, exc)

    async def go_live(self, lesson: Lesson) -> None:
        self.room.lesson = lesson
        self.room.live = True
        self.room.classroom.lesson_changed(lesson.id)
        logger.info("room %s: lesson %s live (%s)", self.room.name, lesson.id, lesson.subject)
        if self.room.recorder is not None:
            await self.room.recorder.begin(lesson)
        if self.service.relay is not None:
            await self.service.relay.open(self.room)

    async def close(self, lesson: Lesson, *, keep_viewers: bool) -> None:
        if self.room.lesson is not None and self.room.lesson.id == lesson.id:
            self.room.lesson = None
        if self.room.recorder is not None:
            await self.room.recorder.finish(lesson)  # lesson.json complete before `recorded`
        self.service.archiver.wake()
        if keep_viewers:
            logger.info("room %s: lesson %s closed, viewers stay", self.room.name, lesson.id)
            return
        self.room.live = False
        self.room.classroom.lesson_ended()  # every page is told, before its media ends
        closed = await self.service.close_viewers(self.room.name)
        if self.service.relay is not None:
            closed += await self.service.relay.close_viewers(self.room.name)
        logger.info("room %s: lesson %s closed, %d viewers left", self.room.name, lesson.id, closed)

    async def cool(self) -> None:
        if self.service.relay is not None:
            await self.service.relay.cool(self.room.name)
        await self.room.cool()


def recorded_tracks(room: RoomSettings) -> Tracks:
    """What a room's recording holds: the camera's top rendition with the microphone
    (presenter.mp4), the board's first rendition that is not stills (presentation.mp4)."""
    camera = room.camera_renditions[0] if room.camera is not None else None
    boards = [r for r in room.board_renditions if not r.stills] or room.board_renditions
    board = boards[0] if room.board is not None else None
    return Tracks(
        camera=f"camera/{camera.name}" if camera else None,
        camera_size=(camera.width, camera.height) if camera else (0, 0),
        board=f"board/{board.name}" if board else None,
        board_size=(board.width, board.height) if board else (0, 0),
        mic="mic" if room.mic is not None else None,
    )


def turn_rest(config: Config) -> TurnRest | None:
    """[webrtc.turn] with its secret read (the loader made the path absolute and checked it)."""
    turn = config.site.webrtc.turn
    if turn is None:
        return None
    secret = turn.secret_file.read_bytes().strip()
    return TurnRest(tuple(turn.urls), secret, turn.ttl_minutes * 60)


def library_target(library: LibrarySettings, data_dir: Path) -> Target | None:
    """The configured library, or None (lessons then wait in the recordings folder)."""
    if library.kind == "rclone" and library.remote:
        return RcloneTarget(
            library.remote, binary=library.rclone_binary, config=library.rclone_config
        )
    if library.path is not None:
        return DirectoryTarget(data_dir / library.path)  # an absolute path stays absolute
    return None
