"""Relay mode (`[relay] kind = "janus"`): per room, while its lesson is live, a Janus
streaming mountpoint fed with the room's encoded packets; per pupil, a Janus token the
service hands out at `POST /relay/{room}` and takes back when the session ends.

`POST /relay/{room}` (Bearer join token, `?as=` on class links; WHEP's 401/403/404/409)
answers 201 {"janus", "mountpoint", "token", "session", "ice_servers", "beat_seconds"}.
The pupil's page then talks to Janus's own HTTP API (`static/janus.js`: a session with
the token, the streaming plugin, watch the mountpoint); it beats
`POST /relay/{room}/{session}?janus=SESSION` every `beat_seconds` (204, or 404 once the
session is gone; the Janus session it names is destroyed when the viewer ends) and
`DELETE`s it on leaving. A join names the page's classroom channel
(`?channel=`), which is the pupil's presence and place in the console on either path; a
relay viewer without one is present on its own while it beats.

Renditions: each video stream of the mountpoint is simulcast, one substream per
rendition (at most three, cheapest first), and each relay viewer has the same ladder and
rate controller as a WHEP session, fed by what its page measures (`report()`, every
2 s) and capped by "save data"; the page asks Janus for the substreams chosen. While a
relay pupil speaks, their page takes the mountpoint's `ducked` audio stream instead of
`audio` (the room's microphone, quieter while the speakers play).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from capture.supervise import cancel_all, supervised
from edge.access import joining
from edge.config.settings import RelaySettings, RoomSettings, VideoRendition
from webrtc import PageReport, RemoteChoice, VideoLine
from webrtc.relay import (
    PORTS_PER_MEDIA,
    SIMULCAST_MAX,
    JanusAdmin,
    JanusError,
    Mountpoint,
    RelayMedia,
    create_mountpoint,
    destroy_mountpoint,
)

if TYPE_CHECKING:
    from edge.live.media import Forwarding
    from edge.live.room import Room
    from edge.live.service import EdgeService

logger = logging.getLogger(__name__)

PAYLOAD_TYPES = {"camera": 96, "board": 97, "audio": 111, "ducked": 111}
VIDEO_MIDS = ("camera", "board")  # the order of `Room.feeds().video`
KEYFRAME_AGAIN_AFTER = 1.5  # s: a joiner's peer connection is up by then; ask once more
REAP_EVERY = 5.0  # s
MISSED_BEATS = 2.5  # a session silent this many beats is gone


def mountpoint_id(room: str) -> int:
    """A stable id per room, below 2**52 (a JavaScript number stays exact)."""
    digest = hashlib.sha256(f"classroom-edge:{room}".encode()).digest()
    return int.from_bytes(digest[:7], "big") % (1 << 52) or 1


def mountpoint_secret(admin_secret: str, room: str) -> str:
    """The mountpoint's secret: stable per room (a restart can destroy what a crash
    left), known only to whoever knows Janus's admin secret."""
    return hmac.new(admin_secret.encode(), f"mountpoint:{room}".encode(), "sha256").hexdigest()


def relayed_buses(room: RoomSettings) -> list[tuple[str, tuple[str, ...]]]:
    """(mid, bus names): the camera's and the board's renditions, cheapest first (Janus
    simulcasts three at most: the cheapest and the two best), the microphone, and its
    ducked copy for a pupil who speaks; those the room has."""

    def substreams(source: str, renditions: list[VideoRendition]) -> tuple[str, ...]:
        ordered = sorted(renditions, key=lambda r: r.bitrate_kbps)
        if len(ordered) > SIMULCAST_MAX:
            ordered = [ordered[0], *ordered[1 - SIMULCAST_MAX :]]
        return tuple(f"{source}/{r.name}" for r in ordered)

    found: list[tuple[str, tuple[str, ...]]] = []
    if room.camera is not None:
        found.append(("camera", substreams("camera", room.camera_renditions)))
    if room.board is not None:
        found.append(("board", substreams("board", room.board_renditions)))
    if room.mic is not None:
        found.append(("audio", ("mic",)))
        if room.speaker is not None:
            found.append(("ducked", ("mic/ducked",)))
    return found


PORTS_PER_ROOM = 10  # with `port_base`: camera 4, board 4, audio 1, ducked audio 1


def relayed_media(room: Room) -> list[RelayMedia]:
    """The mountpoint's streams of `room` (`relayed_buses`), with its buses."""
    return [
        RelayMedia(mid, tuple(room.buses[name] for name in names), PAYLOAD_TYPES[mid])
        for mid, names in relayed_buses(room.settings)
        if all(name in room.buses for name in names)
    ]


def read_secret(settings: RelaySettings, config_path: Path | None) -> str:
    path = settings.admin_secret_file
    if not path.is_absolute() and config_path is not None:
        path = config_path.parent / path
    return path.read_text(encoding="utf-8").strip()


@dataclass
class RelayViewer:
    id: str
    room: str
    token: str  # the Janus token of this viewer
    info: dict[str, object]  # who: `joining.Seat.info()`
    last_beat: float  # time.monotonic()
    choice: RemoteChoice  # its renditions
    mids: tuple[str, ...]  # the mountpoint's video mids, in `choice`'s line order
    janus_session: int | None = None  # the page's Janus session, as its first beat said

    def state(self) -> dict[str, Any]:
        """What the viewer gets now, as a WHEP session's resource says it, and the
        Janus substream of each video mid (None: not sent)."""
        described = self.choice.describe()
        names = dict(zip(self.mids, described["video"], strict=True))
        described["video"] = {mid: names.get(mid) for mid in VIDEO_MIDS}
        described["substreams"] = {
            mid: None if bus is None else list(line.renditions).index(bus)
            for mid, line, bus in zip(
                self.mids, self.choice.lines, self.choice.chosen(), strict=True
            )
        }
        return described


@dataclass
class RoomRelay:
    mountpoint: Mountpoint
    forwarder: Forwarding


class Relay:
    """The mountpoints of the live rooms and the relay viewers; `start()`/`stop()`."""

    def __init__(self, settings: RelaySettings, service: EdgeService, admin_secret: str) -> None:
        self.settings = settings
        self.service = service
        self.public_url = settings.public_url or settings.api_url
        self.rtp_host = settings.rtp_host or urlsplit(settings.api_url).hostname or "127.0.0.1"
        self.admin = JanusAdmin(settings.admin_url, admin_secret)
        self._secret = admin_secret
        self.rooms: dict[str, RoomRelay] = {}
        self.viewers: dict[str, RelayViewer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._later: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        await self.admin.start()
        self._reaper = supervised("relay-reaper", self._reap)

    async def stop(self) -> None:
        if self._reaper is not None:
            await cancel_all([self._reaper])
            self._reaper = None
        for handle in self._later:
            handle.cancel()
        self._later.clear()
        for viewer_id in list(self.viewers):
            await self.leave(viewer_id)
        for name in list(self.rooms):
            await self.cool(name)
        await self.admin.stop()

    def _secret_of(self, room: str) -> str:
        return mountpoint_secret(self._secret, room)

    async def open(self, room: Room) -> RoomRelay | None:
        """The room's mountpoint and forwarder, created if need be; None while Janus
        fails (the lesson goes on; the next join tries again)."""
        async with self._locks.setdefault(room.name, asyncio.Lock()):
            existing = self.rooms.get(room.name)
            if existing is not None:
                return existing
            media = relayed_media(room)
            ports = None
            if self.settings.port_base is not None:
                index = sorted(self.service.config.rooms).index(room.name)
                first = self.settings.port_base + PORTS_PER_ROOM * index
                count = sum(PORTS_PER_MEDIA[m.kind] for m in media)
                ports = list(range(first, first + count))
            try:
                mountpoint = await create_mountpoint(
                    self.admin,
                    mountpoint_id(room.name),
                    self._secret_of(room.name),
                    media,
                    description=f"classroom-edge {room.name}",
                    ports=ports,
                )
            except JanusError as exc:
                logger.warning("room %s: no relay mountpoint: %s", room.name, exc)
                return None
            # from the media process when there is one: the control process stalls no frame
            try:
                forwarder = await room.media.forward(
                    self.rtp_host, media, mountpoint.ports, mountpoint.rtcp_ports
                )
            except RuntimeError as exc:  # the lesson goes on without the relay
                logger.error("room %s: no relay forwarder: %s", room.name, exc)
                with contextlib.suppress(JanusError):
                    await destroy_mountpoint(self.admin, mountpoint)
                return None
            relay = self.rooms[room.name] = RoomRelay(mountpoint, forwarder)
            logger.info(
                "room %s: relay mountpoint %d on %s, ports %s",
                room.name,
                mountpoint.id,
                self.rtp_host,
                mountpoint.ports,
            )
            return relay

    async def close_viewers(self, room: str) -> int:
        """End the relay sessions of `room` (its lesson ended): tokens back, Janus's
        viewers of the mountpoint kicked."""
        ids = [v.id for v in self.viewers.values() if v.room == room]
        for viewer_id in ids:
            await self.leave(viewer_id)
        relay = self.rooms.get(room)
        if relay is not None and ids:
            with contextlib.suppress(JanusError):
                await self.admin.streaming(
                    {
                        "request": "kick_all",
                        "id": relay.mountpoint.id,
                        "secret": relay.mountpoint.secret,
                    }
                )
        return len(ids)

    async def cool(self, room: str) -> None:
        """The room rests: its viewers end, the forwarder stops, the mountpoint goes."""
        await self.close_viewers(room)
        async with self._locks.setdefault(room, asyncio.Lock()):
            relay = self.rooms.pop(room, None)
            if relay is None:
                return
            await relay.forwarder.stop()
            try:
                await destroy_mountpoint(self.admin, relay.mountpoint)
            except JanusError as exc:
                logger.warning(
                    "room %s: destroying mountpoint %d: %s", room, relay.mountpoint.id, exc
                )

    async def join(
        self, room: Room, seat: joining.Seat, *, user_agent: str, save_data: bool = False
    ) -> tuple[RelayViewer, RoomRelay]:
        """A new relay viewer: a Janus token, its place in the classroom (the page's
        channel the seat names, or one of its own), a fresh keyframe. Raises
        `JanusError` when Janus is away."""
        relay = await self.open(room)
        if relay is None:
            raise JanusError("no mountpoint")
        token = secrets.token_urlsafe(24)
        await self.admin.add_token(token)
        info = {**seat.info(), "room": room.name, "user_agent": user_agent}
        videos = [m for m in relay.forwarder.media if m.kind == "video"]
        audio = next((m.buses[0] for m in relay.forwarder.media if m.mid == "audio"), None)
        lines = [VideoLine(m.buses, can_pause=m.mid == "camera") for m in videos]
        choice = RemoteChoice(lines, audio, save_data=save_data, clock=time.monotonic)
        viewer = RelayViewer(
            secrets.token_urlsafe(12),
            room.name,
            token,
            info,
            time.monotonic(),
            choice,
            tuple(m.mid for m in videos),
        )
        self.viewers[viewer.id] = viewer
        self.service.media_started(viewer.id, None, info)
        self.request_keyframes(room.name)
        handle = asyncio.get_running_loop().call_later(
            KEYFRAME_AGAIN_AFTER, self._keyframes_later, room.name
        )
        self._later.add(handle)
        return viewer, relay

    def _keyframes_later(self, room: str) -> None:
        self._later = {h for h in self._later if not h.cancelled() and h.when() > time.monotonic()}
        self.request_keyframes(room)

    def request_keyframes(self, room: str) -> None:
        """An IDR on every relayed video substream (Janus asks again by PLI when a viewer
        waits for one)."""
        relay = self.rooms.get(room)
        if relay is not None:
            for media in relay.forwarder.media:
                for bus in media.buses:
                    bus.request_keyframe()

    def beat(self, viewer_id: str, janus_session: int | None = None) -> bool:
        """The page still watches; `janus_session`: the Janus session it watches in, which
        the service destroys when the viewer leaves (kept from the first beat that says)."""
        viewer = self.viewers.get(viewer_id)
        if viewer is None:
            return False
        viewer.last_beat = time.monotonic()
        if viewer.janus_session is None:
            viewer.janus_session = janus_session
        return True

    def report(self, viewer: RelayViewer, page: PageReport) -> None:
        """What the viewer's page measured: it counts as a beat, and moves its renditions
        to what its link carries."""
        viewer.last_beat = time.monotonic()
        viewer.choice.report(page)

    async def leave(self, viewer_id: str) -> bool:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        self.service.media_ended(viewer_id, viewer.info)
        try:
            await self.admin.remove_token(viewer.token)
        except JanusError as exc:
            logger.warning("relay session %s: removing its Janus token: %s", viewer_id, exc)
        if viewer.janus_session is not None:  # at once, not after Janus's session timeout
            try:
                await self.admin.call("destroy_session", session_id=viewer.janus_session)
            except JanusError as exc:  # the page destroyed it already, most often
                logger.info("relay session %s: destroying its Janus session: %s", viewer_id, exc)
        return True

    async def _reap(self) -> None:
        """Sessions that stopped beating end (a closed laptop sends no DELETE)."""
        while True:
            await asyncio.sleep(REAP_EVERY)
            limit = time.monotonic() - MISSED_BEATS * self.settings.beat_seconds
            for viewer in [v for v in self.viewers.values() if v.last_beat < limit]:
                logger.info("relay session %s: no beat, ended", viewer.id)
                await self.leave(viewer.id)
