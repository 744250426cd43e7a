"""A media process as the control process sees it (`edge.live.mediahost`; the service
starts one per room).

`MediaProcess` starts it, hands it media sockets to feed (the viewer workers', and one for
the control process's own mirror buses: the rooms' counts and rates in `/healthz`, a relay
viewer's rendition choice), and replaces it when it exits, sends no status for
`heartbeat_timeout` seconds, or has threads stuck in a device or an encoder that its
pipelines' watchdogs gave up replacing (at most once in `STUCK_RETRY` seconds): the rooms
that were capturing capture again, their relay forwarders start again, and `on_replaced`
runs (the viewer workers are fed anew by the new process; their viewers keep their
sessions).
`RemoteMedia` is one room's media plane seen from here (`edge.live.media.RoomMedia`),
`RemoteForwarder` its relay forwarder there, and `RemoteTake` a recording's take written
there: when the process is replaced, its takes are lost (the recorder measures their
files and begins a new part).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from capture import MAX_ABANDONED, AudioEncoder, MediaKind, VideoEncoder
from capture.supervise import cancel_all, end_process, spawn_module, supervised, watch_ticks
from edge.config.settings import RoomSettings
from edge.live import mediawire as wire
from edge.live.media import MediaLayout, OnTalk, TalkState, bus_for
from edge.recording.take import OnOpen, TakeEnd, TakePlan, TakeProgress
from webrtc import OfferError, PacketBus
from webrtc.feed import FeedReceiver
from webrtc.handover import hand
from webrtc.ice import IceServer
from webrtc.relay import RelayMedia
from webrtc.wire import Pending

logger = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 2.0  # s without a status: the media process is hung
READY_TIMEOUT = 30.0  # s it may take to start (imports on a slow disk)
REQUEST_TIMEOUT = 20.0  # s for a warm, a cool or a preview
WATCH_INTERVAL = 0.25
STOP_GRACE = 8.0  # s it may take to release the devices when asked to end
FORWARDER = -2  # a mirror bus's `elsewhere` key for the relay forwarder (see webrtc.workers.GONE)
STUCK_RETRY = 300.0  # s between replacements for threads stuck in a device or encoder


class MediaProcess:
    """The media process of `rooms` (the service gives each room its own); `start()`/`stop()`."""

    def __init__(
        self,
        rooms: Mapping[str, RoomSettings],
        origin: float,
        *,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        addresses: list[str] | None = None,
        ports: tuple[int, int] | None = None,
        public_address: str | None = None,
    ) -> None:
        self.settings = dict(rooms)
        self.origin = origin
        self.heartbeat_timeout = heartbeat_timeout
        # its peer connections' settings (a talking pupil's microphone), as ours
        self.addresses, self.ports, self.public_address = addresses, ports, public_address
        self.on_replaced: Callable[[], Awaitable[None]] | None = None
        self.rooms: dict[str, RemoteMedia] = {}
        self.status: dict[str, wire.RoomStatus] = {}
        self.takes: dict[int, RemoteTake] = {}  # written by the running process
        self.take_progress: dict[int, TakeProgress] = {}
        self.order: list[str] = []  # bus names in wire order (`set_order`)
        self.replaced = 0
        self.process: asyncio.subprocess.Process | None = None
        self.last_status = time.monotonic()
        self.ready = False  # it said `ready`, and has not been ended since
        self._stuck_replaced_at = -STUCK_RETRY
        self._receiver: FeedReceiver | None = None
        self._index: dict[str, int] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._handover: socket.socket | None = None
        self._pending: Pending[wire.FromMedia] = Pending(REQUEST_TIMEOUT)
        self._reader_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first_start = asyncio.Event()  # ended (well or not): a worker's socket may come

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def answering(self) -> bool:
        """Running, with a status within `heartbeat_timeout` seconds."""
        process = self.process
        return (
            self.ready
            and process is not None
            and process.returncode is None
            and time.monotonic() - self.last_status <= self.heartbeat_timeout
        )

    def add(self, media: RemoteMedia) -> None:
        self.rooms[media.room] = media

    def set_order(self, names: list[str]) -> None:
        """The buses in wire order (the viewer workers' order: one feed format for all)."""
        mine = [bus.name for media in self.rooms.values() for bus in media.buses.values()]
        self.order = names + [name for name in mine if name not in names]
        self._index = {name: index for index, name in enumerate(self.order)}

    def _mirrors(self) -> list[PacketBus | None]:
        by_name: dict[str, PacketBus] = {}
        for media in self.rooms.values():
            for bus in media.buses.values():
                by_name[bus.name] = bus
        return [by_name.get(name) for name in self.order]

    async def start(self) -> None:
        """Start it (the viewer workers may start meanwhile: `attach` waits for it)."""
        if not self.order:
            self.set_order([])
        try:
            await self._launch()
        finally:
            self._first_start.set()
        self._tasks = [supervised("media-process", self._watch)]

    async def _launch(self) -> None:
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handover, handover_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = await spawn_module(
            "edge.live.mediahost",
            {"control": control_child, "handover": handover_child},
            "--name",
            f"media process {' '.join(self.settings)}",
        )
        handover.setblocking(False)  # a hung media process must not hold this loop up
        self._handover = handover
        reader, self._writer = await asyncio.open_unix_connection(sock=control, limit=wire.MAX_LINE)
        hello = wire.Hello(
            rooms={n: s.model_dump(mode="json") for n, s in self.settings.items()},
            origin=self.origin,
            order=self.order,
            addresses=self.addresses,
            ports=self.ports,
            public_address=self.public_address,
        )
        self._writer.write(wire.encode(hello))
        async with asyncio.timeout(READY_TIMEOUT):
            line = await reader.readline()
        if not line:
            raise RuntimeError("the media process ended before it was ready (its log says why)")
        first = wire.from_media(line)
        if not isinstance(first, wire.Ready) or first.version != wire.VERSION:
            raise RuntimeError(f"the media process said {first!r:.200}")
        self.last_status = time.monotonic()
        self.ready = True
        self._reader_task = asyncio.create_task(self._read(reader), name="media-process-reader")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver = FeedReceiver(self._mirrors())
        await asyncio.get_running_loop().create_unix_connection(lambda: receiver, sock=mine)
        self._receiver = receiver
        self._attach_now(wire.CONTROL_FEED, theirs)
        logger.info("media process started (pid %d)", first.pid)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = wire.from_media(line)
            except ValueError as exc:
                logger.error("media process: unreadable message: %.300s", exc)
                continue
            if isinstance(message, wire.Status):
                self.last_status = time.monotonic()
                self.status = dict(message.rooms)
                self.take_progress = dict(message.takes)
                continue
            if isinstance(message, wire.Opened):
                if (take := self.takes.get(message.take)) is not None:
                    take.on_open(message.file)
                continue
            if isinstance(message, wire.Talking):
                if (media := self.rooms.get(message.room)) is not None:
                    media.talking(message.session, message.state)
                continue
            if not isinstance(message, wire.Ready):
                self._pending.answer(message.req, message)

    async def attach(self, key: int, sock: socket.socket) -> None:
        """Hand `sock` to the media process to feed (this process's copy is closed)."""
        try:
            if not self._first_start.is_set():
                async with asyncio.timeout(READY_TIMEOUT):
                    await self._first_start.wait()
        except BaseException:
            sock.close()
            raise
        self._attach_now(key, sock)

    def _attach_now(self, key: int, sock: socket.socket) -> None:
        hand(self._handover, key, sock)  # hung or gone: the watch replaces it

    async def detach(self, key: int) -> None:
        hand(self._handover, key, None)

    def send(self, message: wire.Message) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    def next_req(self) -> int:
        return self._pending.next_req()

    async def call(self, message: wire.Request) -> wire.FromMedia:
        if not self.ready:  # being replaced: nobody would answer
            raise ConnectionError("the media process is being started again")
        return await self._pending.ask(message.req, lambda: self.send(message))

    def request_keyframe(self, name: str) -> None:
        index = self._index.get(name)
        if index is not None and self._receiver is not None:
            self._receiver.request_keyframe(index)

    async def _watch(self) -> None:
        async for held_up in watch_ticks(WATCH_INTERVAL, self.heartbeat_timeout / 2):
            now = time.monotonic()
            if held_up:  # its silence was ours, not the media process's
                self.last_status = now
            process = self.process
            if process is None or process.returncode is not None:
                why = f"exited ({process.returncode if process else 'never started'})"
            elif now - self.last_status > self.heartbeat_timeout:
                why = f"sent no status for {now - self.last_status:.1f} s"
            elif (stuck := self.stuck_sources()) and now - self._stuck_replaced_at > STUCK_RETRY:
                # the pipeline's watchdog gave up on fresh threads: only a new process helps
                why, self._stuck_replaced_at = f"has threads stuck in {stuck}", now
            else:
                continue
            await self._replace(why)

    def stuck_sources(self) -> str:
        """The sources whose pipeline has given up replacing hung threads, if any."""
        return ", ".join(
            f"{room}/{source.name}"
            for room, status in self.status.items()
            for source in status.sources
            if source.abandoned >= MAX_ABANDONED
        )

    async def _replace(self, why: str) -> None:
        logger.warning("media process (pid %s) %s: replaced", self.pid, why)
        await self._end(grace=0.0)
        self.replaced += 1
        try:
            await self._launch()
        except Exception:
            logger.exception("the media process did not start again")
            await self._end(grace=0.0)
            return
        for media in self.rooms.values():
            try:
                await media.restore()
            except Exception:
                logger.exception("room %s: capturing again", media.room)
        if self.on_replaced is not None:
            await self.on_replaced()

    async def _end(self, *, grace: float) -> None:
        """Close the sockets (the media process releases the devices and exits); kill
        it if it has not exited after `grace` seconds. Each step runs even if one fails."""
        self.ready = False
        self._pending.fail_all(ConnectionError("the media process ended"))
        takes, self.takes = self.takes, {}
        for take in takes.values():
            take.lost = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.process is not None:
            await end_process(self.process, grace)
        if self._handover is not None:
            self._handover.close()
            self._handover = None
        if self._receiver is not None and self._receiver.transport is not None:
            self._receiver.transport.close()
        self._receiver = None
        if self._reader_task is not None:
            await cancel_all([self._reader_task])
            self._reader_task = None

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await self._end(grace=STOP_GRACE)


class RemoteMedia:
    """Room `room`'s media plane in the media process (`edge.live.media.RoomMedia`)."""

    def __init__(self, room: str, settings: RoomSettings, process: MediaProcess) -> None:
        self.room, self.origin, self._process = room, process.origin, process
        self.layout = MediaLayout(room, settings, process.origin, self._mirror, lambda: False)
        self.buses = self.layout.buses
        self.video_lines, self.vp8_lines = self.layout.video_lines, self.layout.vp8_lines
        self.audio = self.layout.audio
        self.capturing = self.paused = self.twins = self.ducking = False
        self.talks: set[str] = set()  # talk sessions the media process runs
        self._on_talk: OnTalk = lambda session, state: None
        self.forwarding: wire.Forward | None = None  # said again to a new media process
        process.add(self)

    def _mirror(
        self, name: str, encoder: VideoEncoder | AudioEncoder, kind: MediaKind
    ) -> PacketBus:
        process = self._process
        return bus_for(name, encoder, kind, lambda: process.request_keyframe(name))

    async def _call(self, message: wire.Request) -> wire.FromMedia:
        return await self._process.call(message)

    async def warm(self) -> None:
        self.capturing = True  # a media process started meanwhile warms it (`restore`)
        try:
            reply = await self._call(wire.Warm(req=self._process.next_req(), room=self.room))
        except (ConnectionError, TimeoutError) as exc:
            logger.warning(
                "room %s: capture starts with the next media process (%s)", self.room, exc
            )
            return
        if isinstance(reply, wire.Done) and reply.error:
            raise RuntimeError(
                f"room {self.room}: the media process could not start: {reply.error}"
            )

    async def cool(self) -> None:
        self.capturing = False
        with contextlib.suppress(ConnectionError, TimeoutError):  # gone: nothing to release
            await self._call(wire.Cool(req=self._process.next_req(), room=self.room))

    def pause_camera(self, paused: bool) -> None:
        self.paused = paused
        self._process.send(wire.Pause(room=self.room, paused=paused))

    def set_twins(self, on: bool) -> None:
        self.twins = on
        self._process.send(wire.Twins(room=self.room, on=on))

    def set_ducking(self, on: bool) -> None:
        self.ducking = on
        self._process.send(wire.Duck(room=self.room, on=on))

    def on_talk_events(self, on_talk: OnTalk) -> None:
        self._on_talk = on_talk

    async def talk(self, offer_sdp: str, ice_servers: list[IceServer]) -> tuple[str, str]:
        """A talking pupil's microphone, answered and played in the media process."""
        servers = [
            wire.IceServerSpec(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in ice_servers
        ]
        message = wire.Talk(
            req=self._process.next_req(), room=self.room, offer=offer_sdp, ice_servers=servers
        )
        try:
            reply = await self._call(message)
        except (ConnectionError, TimeoutError) as exc:
            raise OfferError(
                503, "Not ready", "Loa lớp học chưa sẵn sàng, em thử lại sau vài giây nhé."
            ) from exc
        if not isinstance(reply, wire.Answered) or reply.session is None or reply.sdp is None:
            status, title, detail = (
                (reply.status, reply.title, reply.detail)
                if isinstance(reply, wire.Answered)
                else (500, "No answer", "")
            )
            raise OfferError(status, title or "Not answered", detail)
        self.talks.add(reply.session)
        return reply.session, reply.sdp

    async def end_talk(self, session_id: str) -> bool:
        if session_id not in self.talks:
            return False
        self.talks.discard(session_id)
        message = wire.EndTalk(req=self._process.next_req(), room=self.room, session=session_id)
        with contextlib.suppress(ConnectionError, TimeoutError):  # gone: it has ended
            await self._call(message)
        return True

    def talking(self, session_id: str, state: TalkState) -> None:
        """What the media process said of a talk session."""
        if state == "closed":
            self.talks.discard(session_id)
        self._on_talk(session_id, state)

    def status(self) -> wire.RoomStatus:
        return self._process.status.get(self.room) or wire.RoomStatus()

    async def preview(self, source: str) -> bytes | None:
        message = wire.Preview(req=self._process.next_req(), room=self.room, source=source)
        try:
            reply = await self._call(message)
        except (ConnectionError, TimeoutError):
            return None
        if not isinstance(reply, wire.Picture) or reply.jpeg is None:
            return None
        return base64.b64decode(reply.jpeg)

    async def take(self, plan: TakePlan, on_open: OnOpen) -> RemoteTake:
        """Start a take of this room's buses in the media process."""
        process = self._process
        take = RemoteTake(process, process.next_req(), on_open)
        process.takes[take.key] = take
        message = wire.BeginTake(req=process.next_req(), room=self.room, take=take.key, plan=plan)
        try:
            reply = await self._call(message)
            if isinstance(reply, wire.Done) and reply.error:
                raise RuntimeError(f"the media process could not record: {reply.error}")
        except BaseException:
            process.takes.pop(take.key, None)
            raise
        return take

    async def forward(
        self,
        host: str,
        media: list[RelayMedia],
        ports: dict[str, list[int]],
        rtcp_ports: dict[str, int],
    ) -> RemoteForwarder:
        """Push `media` (streams of this room's mirror buses) as RTP to Janus from the
        media process, so that this process's stalls stall no relayed frame."""
        keys = {id(bus): key for key, bus in self.buses.items()}
        streams = [
            wire.RelayStream(
                mid=m.mid, buses=[keys[id(b)] for b in m.buses], payload_type=m.payload_type
            )
            for m in media
        ]
        self.forwarding = wire.Forward(
            req=0, room=self.room, host=host, streams=streams, ports=ports, rtcp_ports=rtcp_ports
        )
        await self._forward()
        return RemoteForwarder(self, media)

    async def _forward(self) -> None:
        if self.forwarding is None:
            return
        message = self.forwarding.model_copy(update={"req": self._process.next_req()})
        try:
            reply = await self._call(message)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning(
                "room %s: the relay starts with the next media process (%s)", self.room, exc
            )
            return
        if isinstance(reply, wire.Done) and reply.error:
            raise RuntimeError(
                f"room {self.room}: the media process could not relay: {reply.error}"
            )

    async def unforward(self) -> None:
        self.forwarding = None
        with contextlib.suppress(ConnectionError, TimeoutError):  # gone: nothing to stop
            await self._call(wire.Unforward(req=self._process.next_req(), room=self.room))

    async def restore(self) -> None:
        """Say again what was asked of the media process before it was replaced."""
        for bus in self.buses.values():
            bus.lost_on_the_way()
        self.pause_camera(self.paused)
        self.set_twins(self.twins)
        self.set_ducking(self.ducking)
        talks, self.talks = self.talks, set()
        for session_id in talks:  # they ended with the process that ran them
            self._on_talk(session_id, "closed")
        if self.capturing:
            await self.warm()
            await self._forward()


class RemoteForwarder:
    """A room's relay forwarder in the media process (`edge.live.media.Forwarding`)."""

    def __init__(self, media: RemoteMedia, streams: list[RelayMedia]) -> None:
        self._media, self.media = media, streams
        for stream in streams:  # its buses' subscriber there, counted here (`/healthz`)
            for bus in stream.buses:
                bus.elsewhere[FORWARDER] = (1, 0, 0)

    async def stop(self) -> None:
        for stream in self.media:
            for bus in stream.buses:
                bus.elsewhere.pop(FORWARDER, None)
        await self._media.unforward()


class RemoteTake:
    """A take written by the media process (`edge.recording.take.Take`)."""

    def __init__(self, process: MediaProcess, key: int, on_open: OnOpen) -> None:
        self._process, self.key, self.on_open = process, key, on_open
        self.lost = False  # its process has gone (set by `MediaProcess`)
        self._last = TakeProgress()

    def progress(self) -> TakeProgress:
        if self.lost:
            return self._last.model_copy(update={"lost": True})
        self._last = self._process.take_progress.get(self.key) or self._last
        return self._last

    def fail(self, error: str) -> None:
        self._process.send(wire.FailTake(take=self.key, error=error))

    async def end(self) -> TakeEnd:
        if self.lost:
            raise ConnectionError("the media process that wrote it has gone")
        process = self._process
        try:
            reply = await process.call(wire.EndTake(req=process.next_req(), take=self.key))
        finally:
            process.takes.pop(self.key, None)
        if not isinstance(reply, wire.Taken) or reply.ended is None:
            raise ConnectionError(f"the media process did not end it: {reply!r:.200}")
        return reply.ended
