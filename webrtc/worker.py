"""A viewer worker process: `python -m webrtc.worker --control FD --handover FD`.

It serves a share of the service's viewers on a core of its own: aiortc sessions (ICE,
DTLS, SRTP, RTCP, the rate choice) fed from mirrors of the service's buses. Every encoded
packet comes once on a media socket from the side that encodes it (each room's media
process, or the service), handed over on the handover socket (`webrtc.handover`; a new
one for the same key replaces the old: the viewers resync at the next keyframe). The
service (`webrtc.workers.WorkerPool`) asks for sessions on the control socket
(`webrtc.wire`). It ends when the control socket closes (the service went away).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence

from capture.supervise import cancel_all, supervised

from . import wire
from .bus import LayerView, PacketBus
from .choice import VideoLine
from .feed import FeedReceiver
from .guard import DROPS
from .handover import take_handovers
from .ice import GatherPolicy, IceServer, UdpPorts
from .peers import apply_peer_settings
from .sdp import OfferError
from .session import Feeds, ViewerSession
from .whep import SessionManager

logger = logging.getLogger(__name__)

SWAP_SETTLES = 0.15  # s after a switch of audio bus before its counts are sent


class _Holds:
    """A room's VP8 twins, held on the service's side through messages."""

    def __init__(self, worker: Worker, room: str) -> None:
        self._worker, self._room = worker, room

    def acquire(self) -> None:
        self._worker.send(wire.Twins(room=self._room, hold=True))

    def release(self) -> None:
        self._worker.send(wire.Twins(room=self._room, hold=False))


class Worker:
    """The worker's side: mirrors of the buses, a `SessionManager`, the control loop."""

    def __init__(
        self, hello: wire.Hello, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.hello = hello
        self._writer = writer
        self.buses: list[PacketBus] = []
        for spec in sorted(hello.buses, key=lambda s: s.index):
            if spec.index != len(self.buses):
                raise ValueError(f"bus indexes must run 0, 1, …; got {spec.index}")
            self.buses.append(self._mirror(spec, loop))
        self.feeds = {room.room: self._feeds(room) for room in hello.rooms}
        self.sessions = SessionManager(
            self._feeds_of,
            connect_timeout=hello.connect_timeout,
            max_sessions=hello.max_sessions,
            on_connected=lambda s: self.send(wire.Connected(session=s.id)),
            on_removed=self._removed,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[None]] = set()
        self.receivers: dict[int, FeedReceiver] = {}  # by feeding side
        self._views: dict[int, list[PacketBus]] = {}  # a base bus's index -> its layer views
        for bus in self.buses:
            if isinstance(bus, LayerView):
                self._views.setdefault(self.buses.index(bus.base), []).append(bus)
        self._collect: asyncio.TimerHandle | None = None

    def _mirror(self, spec: wire.BusSpec, loop: asyncio.AbstractEventLoop) -> PacketBus:
        index = spec.index
        if spec.base is not None:
            return LayerView(spec.name, self.buses[spec.base], nominal_bitrate=spec.nominal_bitrate)
        return PacketBus(
            spec.name,
            spec.kind,
            loop=loop,
            request_keyframe=lambda: self.request_keyframe(index),
            queue_size=spec.queue_size,
            nominal_bitrate=spec.nominal_bitrate,
            self_contained=spec.self_contained,
            codec=spec.codec,
        )

    def _line(self, spec: wire.LineSpec | None) -> VideoLine | None:
        if spec is None:
            return None
        return VideoLine([self.buses[i] for i in spec.renditions], can_pause=spec.can_pause)

    def _feeds(self, room: wire.RoomFeeds) -> Feeds:
        return Feeds(
            video=[self._line(line) for line in room.video],
            audio=None if room.audio is None else self.buses[room.audio],
            vp8=[self._line(line) for line in room.vp8],
            twins=_Holds(self, room.room),
        )

    def _feeds_of(self, room: str) -> Feeds:
        feeds = self.feeds.get(room)
        if feeds is None:
            raise OfferError(404, "No such room", f"this worker serves no room {room!r}")
        return feeds

    async def attach_feed(self, key: int, sock: socket.socket) -> None:
        """Read feeding side `key`'s packets from `sock` from now on."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver = FeedReceiver(self.buses)
        await asyncio.get_running_loop().create_unix_connection(lambda: receiver, sock=sock)
        old = self.receivers.get(key)
        self.receivers = {**self.receivers, key: receiver}
        if old is not None:
            self._forget(old)

    async def detach_feed(self, key: int) -> None:
        receivers = dict(self.receivers)
        old = receivers.pop(key, None)
        self.receivers = receivers
        if old is not None:
            self._forget(old)

    def _forget(self, receiver: FeedReceiver) -> None:
        """A feed replaced (its encoders started again): its buses' viewers wait for the
        next keyframe, which they ask of the new feed."""
        if receiver.transport is not None:
            receiver.transport.close()
        for index in receiver.seen:
            for bus in [self.buses[index], *self._views.get(index, ())]:
                bus.lost_on_the_way()

    def request_keyframe(self, index: int) -> None:
        """Straight to the encoder thread, on the media socket the bus's packets come
        on (on every one while none has brought it a packet yet)."""
        receivers = self.receivers.values()
        owners = [r for r in receivers if index in r.seen] or list(receivers)
        asked = [r.request_keyframe(index) for r in owners]
        if not any(asked):
            self.send(wire.Keyframe(bus=index))

    def send(self, message: wire.Message) -> None:
        if not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    async def start(self) -> None:
        await self.sessions.start()
        self._tasks = [supervised("worker-beat", self._beat)]

    async def stop(self) -> None:
        if self._collect is not None:
            self._collect.cancel()
        await cancel_all(self._tasks)
        for task in list(self._requests):
            task.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        await self.sessions.stop()

    def _removed(self, session: ViewerSession) -> None:
        self.send(wire.Closed(session=session.id))
        self._send_beat()  # its subscriptions are gone: the service's counts follow at once
        if not self.sessions.sessions:  # nobody watches: a full collection costs no one
            if self._collect is not None:
                self._collect.cancel()
            self._collect = asyncio.get_running_loop().call_later(1.0, self._collect_if_idle)

    def _collect_if_idle(self) -> None:
        self._collect = None
        if not self.sessions.sessions:
            gc.collect()
            self._send_beat()  # what is left of the peer connections, counted

    async def _beat(self) -> None:
        while True:
            self._send_beat()
            await asyncio.sleep(self.hello.beat)

    def _send_beat(self) -> None:
        counts = {
            i: wire.BusCounts(subscribers=b.subscribers, dropped=b.dropped, resyncs=b.resyncs)
            for i, b in enumerate(self.buses)
            if b.subscribers or b.dropped or b.resyncs
        }
        self.send(
            wire.Beat(
                sessions=len(self.sessions.sessions),
                peer_connections=self.sessions.peer_connections_open(),
                lag=self.sessions.lag.recent(2.0),
                buses=counts,
                drops={cause.value: n for cause, n in DROPS.counts.items()},
            )
        )

    def handle(self, message: wire.ToWorker) -> None:
        """A control message; requests run as tasks of their own, kept until done."""
        match message:
            case wire.SaveData(session=session_id, on=on):
                if (session := self.sessions.sessions.get(session_id)) is not None:
                    session.set_save_data(on)
            case wire.SetAudio(session=session_id, bus=index):
                session = self.sessions.sessions.get(session_id)
                if session is not None and 0 <= index < len(self.buses):
                    session.set_audio(self.buses[index])
                    # the track swaps at the new bus's first packet (20 ms of audio): then
                    # the service's counts follow
                    asyncio.get_running_loop().call_later(SWAP_SETTLES, self._send_beat)
            case wire.Hello():
                logger.warning("a second hello ignored")
            case _:
                task = asyncio.create_task(self._request(message))
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)

    async def _request(self, message: wire.ToWorker) -> None:
        try:
            self.send(await self._reply(message))
        except OfferError as exc:
            req = getattr(message, "req", 0)
            self.send(wire.Failed(req=req, status=exc.status, title=exc.title, detail=exc.detail))
        except Exception as exc:  # a request must always be answered
            logger.exception("worker request %s", message.type)
            req = getattr(message, "req", 0)
            self.send(wire.Failed(req=req, status=500, title="Worker error", detail=repr(exc)))

    async def _reply(self, message: wire.ToWorker) -> wire.Message:
        match message:
            case wire.Offer():
                servers = [
                    IceServer(tuple(s.urls), s.username, s.credential) for s in message.ice_servers
                ]
                session, sdp = await self.sessions.open(
                    message.room,
                    message.sdp,
                    save_data=message.save_data,
                    ice_servers=servers,
                    session_id=message.session,
                )
                self._send_beat()  # its subscriptions, counted at once
                return wire.Answer(
                    req=message.req, session=session.id, sdp=sdp, timing=session.answer_ms
                )
            case wire.Trickle():
                try:
                    await self.sessions.trickle(message.session, message.body)
                except KeyError:
                    return wire.Done(req=message.req, found=False)
                return wire.Done(req=message.req)
            case wire.Delete():
                return wire.Done(req=message.req, found=await self.sessions.delete(message.session))
            case wire.Describe():
                found: ViewerSession | None = self.sessions.sessions.get(message.session)
                state = None if found is None else await found.status()
                return wire.Described(req=message.req, state=state)
        raise TypeError(f"not a request: {message.type}")


def apply_hello(hello: wire.Hello) -> None:
    """The process-wide aiortc settings the service has too."""
    ports = UdpPorts(*hello.ports) if hello.ports is not None else None
    apply_peer_settings(hello.addresses, GatherPolicy(ports, hello.public_address))


async def serve(control_fd: int, handover_fd: int) -> None:
    loop = asyncio.get_running_loop()
    control = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_unix_connection(sock=control, limit=wire.MAX_LINE)
    first = wire.to_worker(await reader.readline())
    if not isinstance(first, wire.Hello) or first.version != wire.VERSION:
        raise SystemExit(f"expected hello version {wire.VERSION}, got {first!r:.200}")
    apply_hello(first)
    worker = Worker(first, writer, loop)
    handover = socket.socket(fileno=handover_fd)

    taker = threading.Thread(
        target=take_handovers,
        args=(handover, loop, worker.attach_feed, worker.detach_feed),
        name="handover",
        daemon=True,
    )
    taker.start()
    await worker.start()
    worker.send(wire.Ready(pid=os.getpid()))
    try:
        while line := await reader.readline():
            try:
                message = wire.to_worker(line)
            except ValueError as exc:
                logger.error("unreadable control message: %s", str(exc)[:300])
                continue
            worker.handle(message)
    finally:
        with contextlib.suppress(OSError):
            handover.shutdown(socket.SHUT_RDWR)
        await worker.stop()
        await asyncio.to_thread(taker.join, 5)
        handover.close()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m webrtc.worker", description=__doc__)
    parser.add_argument("--control", type=int, required=True, help="control socket's fd")
    parser.add_argument("--handover", type=int, required=True, help="handover socket's fd")
    parser.add_argument("--name", default="viewer worker", help="for the log lines")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.control, args.handover))


if __name__ == "__main__":
    main()
