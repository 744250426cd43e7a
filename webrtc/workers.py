"""Viewers served by worker processes, on cores of their own (`webrtc.worker`).

The pool starts `count` workers and shares the viewers out among them (a new viewer
goes to the worker with the fewest). Every encoded packet is written once to each
worker's media sockets (`webrtc.feed`), one per feeding side (`feeds_to`): a `FeedHub` in
this process, or each room's media process (the sending end is handed to it, the
receiving end to the worker, `webrtc.handover`); no event loop or slow worker holds up an
encoder. A feeding side started again feeds every worker anew (`refeed`): the viewers
keep their sessions. A worker that exits, or sends no heartbeat for `heartbeat_timeout`
seconds, is killed and replaced; its viewers' pages rejoin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from capture.supervise import cancel_all, end_process, spawn_module, supervised, watch_ticks

from . import wire
from .bus import LayerView, PacketBus
from .feed import FeedHub
from .handover import hand
from .ice import IceServer, UdpPorts
from .lag import LoopLag
from .sdp import OfferError
from .session import Feeds
from .twins import Hold
from .viewers import WorkerStats

logger = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 2.0  # s without a beat: the worker is hung
READY_TIMEOUT = 30.0  # s a new worker may take to start (imports on a slow disk)
REQUEST_TIMEOUT = 20.0  # s for an answer (candidates gathered), a trickle, a delete
GONE = -1  # `PacketBus.elsewhere` key of the counts of workers that have ended
WAIT_FOR_WORKER = 5.0  # s a new viewer waits for a worker being replaced
WATCH_INTERVAL = 0.25
RETRY_FIRST, RETRY_MOST = (
    0.5,
    30.0,
)  # s before starting again a worker that would not start  # s between looks at the workers


class FeedTarget(Protocol):
    """Where the workers' media sockets are fed from: a `FeedHub` in this process, or the
    media process (the socket is handed over)."""

    async def attach(self, key: int, sock: socket.socket) -> None: ...

    async def detach(self, key: int) -> None: ...


class WorkerLink:
    """One worker process: its control stream, its media feed, its viewers."""

    def __init__(
        self,
        number: int,
        hello: wire.Hello,
        on_message: Callable[[WorkerLink, wire.FromWorker], None],
        feeds: Sequence[FeedTarget],
    ) -> None:
        self.number = number
        self.hello = hello
        self._on_message = on_message
        self._feeds = list(feeds)  # the worker's key of each is its place here
        self.process: asyncio.subprocess.Process | None = None
        self._fed: set[int] = set()
        self._handover: socket.socket | None = None
        self.sessions: set[str] = set()
        self.holds: collections.Counter[str] = collections.Counter()  # room -> twins held
        self.last_beat = time.monotonic()
        self.beat: wire.Beat | None = None
        self.ready = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: wire.Pending[wire.FromWorker] = wire.Pending(REQUEST_TIMEOUT)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handover, handover_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        handover.setblocking(False)  # a hung worker must not hold this loop up
        self._handover = handover
        self.process = await spawn_module(
            "webrtc.worker",
            {"control": control_child, "handover": handover_child},
            "--name",
            f"viewer worker {self.number}",
        )
        try:
            reader, self._writer = await asyncio.open_unix_connection(
                sock=control, limit=wire.MAX_LINE
            )
            self._writer.write(wire.encode(self.hello))
            async with asyncio.timeout(READY_TIMEOUT):
                first = wire.from_worker(await reader.readline())
            if not isinstance(first, wire.Ready) or first.version != wire.VERSION:
                raise RuntimeError(f"viewer worker {self.number} said {first!r:.200}")
        except BaseException:
            if self._writer is None:  # (else it closes with its writer: `stop`)
                control.close()
            raise
        for key in range(len(self._feeds)):
            await self.feed(key)
        self.last_beat = time.monotonic()
        self.ready = True
        self._reader_task = asyncio.create_task(self._read(reader), name=f"worker-{self.number}")
        logger.info("viewer worker %d started (pid %d)", self.number, first.pid)

    async def feed(self, key: int) -> None:
        """A new media socket from feeding side `key` (in place of the one it had): the
        worker's viewers resync at the next keyframe. A side being started again feeds
        it when it is back (`WorkerPool.refeed`)."""
        media, media_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        media.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            hand(self._handover, key, media_child)
        except ConnectionError:
            media.close()
            raise
        try:
            await self._feeds[key].attach(self.number, media)
        except ConnectionError as exc:
            logger.warning("viewer worker %d: feed %d is not there yet (%s)", self.number, key, exc)
            return
        self._fed.add(key)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = wire.from_worker(line)
            except ValueError as exc:
                logger.error("viewer worker %d: unreadable message: %.300s", self.number, exc)
                continue
            if isinstance(message, wire.Beat):
                self.last_beat, self.beat = time.monotonic(), message
            reply_to = getattr(message, "req", None)
            if reply_to is None or not self._pending.answer(reply_to, message):
                try:
                    self._on_message(self, message)
                except Exception:  # the service's bug must not end the worker's link
                    logger.exception("viewer worker %d: handling %s", self.number, message.type)
        self.ready = False  # the worker closed its end: it exited, or is about to

    def send(self, message: wire.Message) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    def next_req(self) -> int:
        return self._pending.next_req()

    async def request(
        self, message: wire.Offer | wire.Trickle | wire.Delete | wire.Describe
    ) -> Any:
        if not self.ready:  # stopping or stopped: nobody would answer
            raise ConnectionError(f"viewer worker {self.number} is not serving")
        return await self._pending.ask(message.req, lambda: self.send(message))

    async def stop(self, *, graceful: float = 3.0) -> None:
        """Close the control socket (the worker closes its sessions and exits); kill it
        if it has not exited after `graceful` seconds. Each step runs even if one fails."""
        self.ready = False
        self._pending.fail_all(ConnectionError(f"viewer worker {self.number} stopped"))
        if self._writer is not None:
            self._writer.close()
        if self.process is not None:
            await end_process(self.process, graceful)
        fed, self._fed = self._fed, set()
        for key in sorted(fed):
            try:
                await self._feeds[key].detach(self.number)
            except Exception:  # the rest of the stop still runs
                logger.exception("viewer worker %d: ending its feed %d", self.number, key)
        if self._handover is not None:
            self._handover.close()
            self._handover = None
        if self._reader_task is not None:
            await cancel_all([self._reader_task])


class RemoteSession:
    """A viewer session that lives in a worker (`webrtc.viewers.Viewer`)."""

    def __init__(self, pool: WorkerPool, session_id: str, link: WorkerLink, info: dict[str, Any]):
        self._pool = pool
        self.id = session_id
        self.link = link
        self.info = info
        self.connected_at: float | None = None
        self.answer_ms: dict[str, float] = {}

    def set_save_data(self, save_data: bool) -> None:
        self.link.send(wire.SaveData(session=self.id, on=save_data))

    def set_audio(self, bus: PacketBus | None) -> None:
        index = self._pool.index_of(bus)
        if index is not None:
            self.link.send(wire.SetAudio(session=self.id, bus=index))

    async def status(self) -> dict[str, Any]:
        try:
            reply = await self.link.request(
                wire.Describe(req=self.link.next_req(), session=self.id)
            )
        except (TimeoutError, ConnectionError):
            return {}
        return reply.state if isinstance(reply, wire.Described) and reply.state else {}


def viewer_workers(configured: int | None) -> int:
    """How many viewer workers: as configured, else one per core but one (the encoders')."""
    if configured is not None:
        return configured
    return max(1, (os.cpu_count() or 2) - 1)


def share_ports(ports: UdpPorts | None, count: int) -> list[tuple[int, int] | None]:
    """Each worker's part of `udp_ports`: consecutive, as even as can be."""
    if ports is None:
        return [None] * count
    if len(ports) < count:
        raise ValueError(
            f"udp_ports {ports.first}-{ports.last} has {len(ports)} ports, "
            f"fewer than the {count} viewer workers"
        )
    size, extra = divmod(len(ports), count)
    shares: list[tuple[int, int] | None] = []
    first = ports.first
    for number in range(count):
        last = first + size - 1 + (1 if number < extra else 0)
        shares.append((first, last))
        first = last + 1
    return shares


class WorkerPool:
    """Viewer sessions in `count` worker processes (`webrtc.viewers.Viewers`)."""

    def __init__(
        self,
        count: int,
        feeds: Mapping[str, Feeds],
        buses: Sequence[PacketBus],
        ice_servers: Sequence[IceServer] | Callable[[], Sequence[IceServer]] = (),
        *,
        connect_timeout: float = 30.0,
        max_sessions: int = 200,
        addresses: Sequence[str] | None = None,
        ports: UdpPorts | None = None,
        public_address: str | None = None,
        holds: Mapping[str, Hold] | None = None,
        on_connected: Callable[[RemoteSession], None] | None = None,
        on_closed: Callable[[RemoteSession], None] | None = None,
        on_lost: Callable[[RemoteSession], None] | None = None,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        feeds_to: Sequence[FeedTarget] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.count = count
        self.ice_servers = ice_servers
        self.max_sessions = max_sessions
        self.on_connected = on_connected
        self.on_closed = on_closed
        self.on_lost = on_lost  # its worker died or hung: the page may rejoin at once
        self.heartbeat_timeout = heartbeat_timeout
        self._holds = dict(holds or {})
        self.sessions: dict[str, RemoteSession] = {}
        self.lag = LoopLag()  # this (control) process's loop
        self.replaced = 0  # workers replaced after they died or hung
        self._buses: list[PacketBus] = []
        self._index: dict[int, int] = {}  # id(bus) -> index
        for bus in buses:
            self._register(bus)
        rooms = [self._room_feeds(room, room_feeds) for room, room_feeds in feeds.items()]
        specs = [self._spec(i, bus) for i, bus in enumerate(self._buses)]
        self._hellos = [
            wire.Hello(
                worker=number,
                buses=specs,
                rooms=rooms,
                connect_timeout=connect_timeout,
                max_sessions=max_sessions,
                addresses=list(addresses) if addresses is not None else None,
                ports=share,
                public_address=public_address,
            )
            for number, share in enumerate(share_ports(ports, count))
        ]
        self.links: list[WorkerLink | None] = [None] * count
        self._hub: FeedHub | None = None  # ours to run
        if feeds_to is None:
            self._hub = FeedHub(self._buses)
            feeds_to = [self._hub]
        self._feeds: list[FeedTarget] = list(feeds_to)
        self._tasks: list[asyncio.Task[None]] = []
        self._gone_drops: collections.Counter[str] = collections.Counter()  # of ended workers
        self._failures = [0] * count  # starts in a row that failed, per worker
        self._retry_at = [0.0] * count

    def _register(self, bus: PacketBus) -> int:
        index = self._index.get(id(bus))
        if index is None:
            if isinstance(bus, LayerView):
                self._register(bus.base)
            index = self._index[id(bus)] = len(self._buses)
            self._buses.append(bus)
        return index

    def _line(self, line: Any) -> wire.LineSpec | None:
        if line is None:
            return None
        return wire.LineSpec(
            renditions=[self._register(bus) for bus in line.renditions], can_pause=line.can_pause
        )

    def _room_feeds(self, room: str, feeds: Feeds) -> wire.RoomFeeds:
        return wire.RoomFeeds(
            room=room,
            video=[self._line(line) for line in feeds.video],
            audio=None if feeds.audio is None else self._register(feeds.audio),
            vp8=[self._line(line) for line in feeds.vp8],
        )

    def _spec(self, index: int, bus: PacketBus) -> wire.BusSpec:
        return wire.BusSpec(
            index=index,
            name=bus.name,
            kind=bus.kind,
            codec=bus.codec,
            queue_size=bus.queue_size,
            nominal_bitrate=bus.nominal_bitrate,
            self_contained=bus.self_contained,
            base=self._index[id(bus.base)] if isinstance(bus, LayerView) else None,
        )

    def index_of(self, bus: PacketBus | None) -> int | None:
        return None if bus is None else self._index.get(id(bus))

    def peer_connections_open(self) -> int:
        return sum(
            link.beat.peer_connections for link in self.links if link and link.beat is not None
        )

    def worker_stats(self) -> WorkerStats:
        live = [link for link in self.links if link is not None]
        drops = collections.Counter(self._gone_drops)
        for link in live:
            if link.beat is not None:
                drops.update(link.beat.drops)
        return WorkerStats(
            workers=sum(link.ready for link in live),
            replaced=self.replaced,
            lag=max((link.beat.lag for link in live if link.beat), default=0.0),
            drops=drops,
            sessions=tuple(len(link.sessions) for link in live),
            pids=tuple(self.pids()),
        )

    def pids(self) -> list[int]:
        return [link.pid for link in self.links if link is not None and link.pid is not None]

    async def start(self) -> None:
        await self.lag.start()
        if self._hub is not None:
            self._hub.start()
        await asyncio.gather(*(self._start_link(n) for n in range(self.count)))
        self._tasks = [supervised("viewer-workers", self._watch)]

    def bus_names(self) -> list[str]:
        """The buses' names in wire order (a media frame names its bus by index)."""
        return [bus.name for bus in self._buses]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        for number, link in enumerate(self.links):
            if link is not None:
                await self._drop(link, "stopping")
                self.links[number] = None
        if self._hub is not None:
            await asyncio.to_thread(self._hub.stop)
        await self.lag.stop()

    async def _start_link(self, number: int) -> bool:
        link = WorkerLink(number, self._hellos[number], self._message, self._feeds)
        self.links[number] = link
        try:
            await link.start()
        except Exception:
            logger.exception("viewer worker %d did not start", number)
            await link.stop(graceful=0)
            return False
        return True

    async def _drop(self, link: WorkerLink, why: str) -> None:
        """End `link`'s process and its viewers (their pages rejoin)."""
        lost = why != "stopping"  # died or hung: its viewers are told, their pages rejoin
        graceful = 0.0 if lost else 3.0
        await link.stop(graceful=graceful)
        for bus in self._buses:
            counts = bus.elsewhere.pop(link.number, None)
            if counts is not None:  # its drops still count (counters never go back)
                _, dropped, resyncs = bus.elsewhere.get(GONE, (0, 0, 0))
                bus.elsewhere[GONE] = (0, dropped + counts[1], resyncs + counts[2])
        if link.beat is not None:
            self._gone_drops.update(link.beat.drops)
        for room, held in link.holds.items():
            hold = self._holds.get(room)
            if hold is not None:
                for _ in range(held):  # its VP8 viewers are gone with it
                    hold.release()
        link.holds.clear()
        if lost:
            logger.warning(
                "viewer worker %d (pid %s) %s: replaced; its %d viewer(s) rejoin",
                link.number,
                link.pid,
                why,
                len(link.sessions),
            )
        for session_id in list(link.sessions):
            session = self.sessions.get(session_id)
            if lost and session is not None and self.on_lost is not None:
                try:
                    self.on_lost(session)
                except Exception:
                    logger.exception("telling viewer %s its session was lost", session_id)
            self._ended(session_id)

    async def _watch(self) -> None:
        async for held_up in watch_ticks(WATCH_INTERVAL, self.heartbeat_timeout / 2):
            if held_up:  # the workers' silence was ours, not theirs
                now = time.monotonic()
                for link in self.links:
                    if link is not None:
                        link.last_beat = max(link.last_beat, now)
            await self._watch_once()

    async def _watch_once(self) -> None:
        now = time.monotonic()
        for number, link in enumerate(self.links):
            if link is None:
                continue
            process = link.process
            if process is None or process.returncode is not None or not link.ready:
                why = f"exited ({process.returncode if process else 'never started'})"
            elif now - link.last_beat > self.heartbeat_timeout:
                why = f"sent no heartbeat for {now - link.last_beat:.1f} s"
            else:
                continue
            if now < self._retry_at[number]:
                continue
            await self._replace(number, link, why)

    async def _replace(self, number: int, link: WorkerLink, why: str) -> None:
        await self._drop(link, why)
        self.replaced += 1
        if await self._start_link(number):
            self._failures[number] = 0
        else:
            self._failures[number] += 1
            backoff = RETRY_FIRST * 2 ** (self._failures[number] - 1)
            self._retry_at[number] = time.monotonic() + min(RETRY_MOST, backoff)

    async def refeed(self, key: int) -> None:
        """Feeding side `key` started again: a new media socket from it to every worker
        (their viewers keep their sessions and resync at the next keyframe)."""
        for link in self.links:  # a worker still starting too (it may have asked the old one)
            if link is not None:
                try:
                    await link.feed(key)
                except ConnectionError as exc:  # gone (the watch replaces it), or not yet
                    logger.warning("viewer worker %d: no new feed: %s", link.number, exc)

    def _message(self, link: WorkerLink, message: wire.FromWorker) -> None:
        match message:
            case wire.Keyframe(bus=index) if 0 <= index < len(self._buses):
                self._buses[index].request_keyframe()
            case wire.Connected(session=session_id):
                session = self.sessions.get(session_id)
                if session is not None and session.connected_at is None:
                    session.connected_at = time.monotonic()
                    if self.on_connected is not None:
                        self.on_connected(session)
            case wire.Closed(session=session_id):
                self._ended(session_id)
            case wire.Twins(room=room, hold=hold) if room in self._holds:
                if hold:
                    link.holds[room] += 1
                    self._holds[room].acquire()
                elif link.holds[room] > 0:
                    link.holds[room] -= 1
                    self._holds[room].release()
            case wire.Beat(buses=counts):
                for index, bus in enumerate(self._buses):
                    seen = counts.get(index)
                    if seen is None:
                        bus.elsewhere.pop(link.number, None)
                    else:
                        bus.elsewhere[link.number] = (
                            seen.subscribers,
                            seen.dropped,
                            seen.resyncs,
                        )
            case _:
                pass

    def _ended(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        session.link.sessions.discard(session_id)
        if session.connected_at is not None and self.on_closed is not None:
            self.on_closed(session)

    def _least_loaded(self) -> WorkerLink | None:
        ready = [link for link in self.links if link is not None and link.ready]
        return min(ready, key=lambda link: len(link.sessions), default=None)

    async def create(
        self, room: str, offer_sdp: str, *, save_data: bool = False, **info: object
    ) -> tuple[RemoteSession, str]:
        """Answer an offer in the least loaded worker. Raises `OfferError`."""
        if len(self.sessions) >= self.max_sessions:
            raise OfferError(503, "Too many viewers", f"at most {self.max_sessions} sessions")
        link = self._least_loaded()
        deadline = time.monotonic() + WAIT_FOR_WORKER
        while link is None and time.monotonic() < deadline:  # one is being replaced
            await asyncio.sleep(0.1)
            link = self._least_loaded()
        if link is None:
            raise OfferError(503, "Viewers' process restarting", "try again in a few seconds")
        servers = self.ice_servers() if callable(self.ice_servers) else self.ice_servers
        session = RemoteSession(self, secrets.token_urlsafe(16), link, {**info, "room": room})
        self.sessions[session.id] = session
        link.sessions.add(session.id)
        offer = wire.Offer(
            req=link.next_req(),
            session=session.id,
            room=room,
            sdp=offer_sdp,
            save_data=save_data,
            ice_servers=[
                wire.IceServerSpec(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in servers
            ],
        )
        try:
            reply = await link.request(offer)
        except (TimeoutError, ConnectionError) as exc:
            self.sessions.pop(session.id, None)
            link.sessions.discard(session.id)
            link.send(wire.Delete(req=link.next_req(), session=session.id))
            raise OfferError(503, "No answer", "the viewers' process did not answer") from exc
        if isinstance(reply, wire.Failed):
            self.sessions.pop(session.id, None)
            link.sessions.discard(session.id)
            raise OfferError(reply.status, reply.title, reply.detail)
        assert isinstance(reply, wire.Answer)
        session.answer_ms = dict(reply.timing)
        return session, reply.sdp

    async def trickle(self, session_id: str, body: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise KeyError(session_id)
        link = session.link
        try:
            reply = await link.request(
                wire.Trickle(req=link.next_req(), session=session_id, body=body)
            )
        except (TimeoutError, ConnectionError):
            raise KeyError(session_id) from None
        if isinstance(reply, wire.Failed):
            raise OfferError(reply.status, reply.title, reply.detail)
        if isinstance(reply, wire.Done) and not reply.found:
            raise KeyError(session_id)

    async def delete(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        link = session.link
        with contextlib.suppress(TimeoutError, ConnectionError):
            await link.request(wire.Delete(req=link.next_req(), session=session_id))
        self._ended(session_id)
        return True
