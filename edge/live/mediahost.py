"""A media process: `python -m edge.live.mediahost --control FD --handover FD [--name N]`.

The service starts one per room (`edge.live.remote.MediaProcess`). It runs the room's media
plane (`edge.live.media.LocalMedia`: capture threads, encoders, buses, the speakers and a
talking pupil's microphone), the recording's takes (`edge.recording.take`: the files of
each part) and, in relay mode, the RTP forwarder to Janus (`webrtc.relay.RtpForwarder`)
apart from the control process (HTTP, SQLite, the scheduler, the console, the archive,
each lesson's record) and from the other rooms, and writes every encoded packet once to
each media socket the control process hands it (`webrtc.feed.FeedHub`): the viewer
workers' and the control process's own.
Nothing the control process does, or fails to do, holds up a frame: if it stops reading,
its feed falls behind and resyncs; if it dies, the control socket closes and this process
releases the devices and exits. It says how it is every `status_every` seconds
(`mediawire.Status`, the heartbeat the control process watches).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence

from capture.supervise import cancel_all, supervised
from edge.config.settings import RoomSettings
from edge.live import mediawire as wire
from edge.live.media import LocalMedia, TalkState
from edge.recording.recordings import MediaFile
from edge.recording.take import LocalTake
from webrtc import OfferError, PacketBus
from webrtc.feed import FeedHub
from webrtc.handover import take_handovers
from webrtc.ice import GatherPolicy, IceServer, UdpPorts
from webrtc.peers import apply_peer_settings
from webrtc.relay import RelayMedia, RtpForwarder

logger = logging.getLogger(__name__)


class MediaHost:
    """The media process's side: the rooms' media planes, the feeds, the status beat."""

    def __init__(self, hello: wire.Hello, writer: asyncio.StreamWriter) -> None:
        self.hello = hello
        self._writer = writer
        self.rooms: dict[str, LocalMedia] = {}
        self.takes: dict[int, LocalTake] = {}
        self.forwarders: dict[str, RtpForwarder] = {}
        for name, data in hello.rooms.items():
            settings = RoomSettings.model_validate(data)
            media = LocalMedia(name, settings, hello.origin, serve_here=False)
            media.on_talk_events(functools.partial(self._talking, name))
            self.rooms[name] = media
        by_name: dict[str, PacketBus] = {}
        for media in self.rooms.values():
            for bus in media.buses.values():
                by_name[bus.name] = bus
            for line in media.video_lines + media.vp8_lines:
                for bus in line.renditions if line is not None else ():
                    by_name.setdefault(bus.name, bus)
        missing = [name for name in by_name if name not in hello.order]
        if missing:
            raise ValueError(f"the control process's bus order lacks {missing}")
        # the order names every room's buses (one wire format for all): others' are None
        self.hub = FeedHub([by_name.get(name) for name in hello.order])
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: set[asyncio.Task[None]] = set()

    def _talking(self, room: str, session: str, state: TalkState) -> None:
        self.send(wire.Talking(room=room, session=session, state=state))

    def send(self, message: wire.Message) -> None:
        if not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    async def start(self) -> None:
        self.hub.start()
        self._tasks = [supervised("media-status", self._beat)]

    async def _beat(self) -> None:
        while True:
            rooms = {name: media.status() for name, media in self.rooms.items()}
            takes = {key: take.progress() for key, take in self.takes.items()}
            self.send(wire.Status(rooms=rooms, takes=takes))
            await asyncio.sleep(self.hello.status_every)

    def handle(self, message: wire.ToMedia) -> None:
        match message:
            case (
                wire.Warm()
                | wire.Cool()
                | wire.Preview()
                | wire.Talk()
                | wire.EndTalk()
                | wire.BeginTake()
                | wire.EndTake()
                | wire.Forward()
                | wire.Unforward()
            ):
                task = asyncio.create_task(self._answer(message), name=f"media-{message.type}")
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)
            case wire.Pause(room=room, paused=paused) if room in self.rooms:
                self.rooms[room].pause_camera(paused)
            case wire.Twins(room=room, on=on) if room in self.rooms:
                self.rooms[room].set_twins(on)
            case wire.Duck(room=room, on=on) if room in self.rooms:
                self.rooms[room].set_ducking(on)
            case wire.FailTake(take=key, error=error) if key in self.takes:
                self.takes[key].fail(error)
            case _:
                logger.error("not understood: %.200r", message)

    async def _answer(self, message: wire.Request) -> None:
        if isinstance(message, wire.EndTake):
            await self._end_take(message)
            return
        media = self.rooms.get(message.room)
        try:
            if media is None:
                raise KeyError(f"no room {message.room!r}")
            match message:
                case wire.Warm():
                    await media.warm()
                case wire.Cool():
                    await media.cool()
                case wire.BeginTake(take=key, plan=plan):
                    take = LocalTake(media.buses, plan, functools.partial(self._opened, key))
                    take.start()
                    self.takes[key] = take
                case wire.Forward():
                    await self._unforward(message.room)
                    streams = [
                        RelayMedia(s.mid, tuple(media.buses[b] for b in s.buses), s.payload_type)
                        for s in message.streams
                    ]
                    forwarder = await media.forward(
                        message.host, streams, message.ports, message.rtcp_ports
                    )
                    self.forwarders[message.room] = forwarder
                case wire.Unforward():
                    await self._unforward(message.room)
                case wire.Talk(offer=offer, ice_servers=servers):
                    await self._talk(media, message.req, offer, servers)
                    return
                case wire.EndTalk(session=session):
                    await media.end_talk(session)
                case wire.Preview(source=source):
                    jpeg = await media.preview(source)
                    text = None if jpeg is None else base64.b64encode(jpeg).decode()
                    self.send(wire.Picture(req=message.req, jpeg=text))
                    return
        except Exception as exc:
            logger.exception("%s of room %s", message.type, message.room)
            if isinstance(message, wire.Preview):
                self.send(wire.Picture(req=message.req, jpeg=None))
            elif isinstance(message, wire.Talk):
                self.send(wire.Answered(req=message.req, session=None, status=500))
            else:
                self.send(wire.Done(req=message.req, error=repr(exc)[:300]))
            return
        self.send(wire.Done(req=message.req))

    async def _talk(
        self, media: LocalMedia, req: int, offer: str, servers: list[wire.IceServerSpec]
    ) -> None:
        ice = [IceServer(tuple(s.urls), s.username, s.credential) for s in servers]
        try:
            session, answer = await media.talk(offer, ice)
        except OfferError as exc:
            refused = wire.Answered(
                req=req, session=None, status=exc.status, title=exc.title, detail=exc.detail
            )
            self.send(refused)
            return
        self.send(wire.Answered(req=req, session=session, sdp=answer))

    async def _unforward(self, room: str) -> None:
        forwarder = self.forwarders.pop(room, None)
        if forwarder is not None:
            await forwarder.stop()

    def _opened(self, key: int, entry: MediaFile) -> None:
        self.send(wire.Opened(take=key, file=entry))

    async def _end_take(self, message: wire.EndTake) -> None:
        take = self.takes.get(message.take)
        if take is None:
            self.send(wire.Taken(req=message.req, ended=None, error="no such take"))
            return
        try:
            ended = await take.end()  # cancelled (this process ends): `stop()` ends it
        except Exception as exc:
            logger.exception("ending take %d", message.take)
            self.send(wire.Taken(req=message.req, ended=None, error=repr(exc)[:300]))
            return
        self.takes.pop(message.take, None)
        self.send(wire.Taken(req=message.req, ended=ended))

    async def stop(self) -> None:
        """Stop the forwarders, close the takes' files, release the devices and end the
        feeds, each step even if one fails (the control process measures the files of
        takes it did not end)."""
        await cancel_all([*self._tasks, *self._requests])
        self._tasks = []
        for room in list(self.forwarders):
            try:
                await self._unforward(room)
            except Exception:
                logger.exception("room %s: stopping its relay forwarder", room)
        takes, self.takes = self.takes, {}
        for key, take in takes.items():
            try:
                await take.end()
            except Exception:
                logger.exception("take %d: closing its files", key)
        for name, media in self.rooms.items():
            try:
                await media.cool()
            except Exception:
                logger.exception("room %s: releasing the devices", name)
        await asyncio.to_thread(self.hub.stop)


async def serve(control_fd: int, handover_fd: int) -> None:
    loop = asyncio.get_running_loop()
    control = socket.socket(fileno=control_fd)
    handover = socket.socket(fileno=handover_fd)
    reader, writer = await asyncio.open_unix_connection(sock=control, limit=wire.MAX_LINE)
    first = wire.to_media(await reader.readline())
    if not isinstance(first, wire.Hello) or first.version != wire.VERSION:
        raise SystemExit(f"expected hello version {wire.VERSION}, got {first!r:.200}")
    ports = UdpPorts(*first.ports) if first.ports is not None else None
    apply_peer_settings(first.addresses, GatherPolicy(ports, first.public_address))
    host = MediaHost(first, writer)
    await host.start()
    taker = threading.Thread(
        target=take_handovers,
        args=(handover, loop, host.hub.attach, host.hub.detach),
        name="handover",
        daemon=True,
    )
    taker.start()
    host.send(wire.Ready(pid=os.getpid()))
    try:
        while line := await reader.readline():
            try:
                message = wire.to_media(line)
            except ValueError as exc:
                logger.error("unreadable control message: %s", str(exc)[:300])
                continue
            host.handle(message)
    finally:
        with contextlib.suppress(OSError):
            handover.shutdown(socket.SHUT_RDWR)
        await host.stop()
        await asyncio.to_thread(taker.join, 5)
        handover.close()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.live.mediahost", description=__doc__)
    parser.add_argument("--control", type=int, required=True, help="control socket's fd")
    parser.add_argument("--handover", type=int, required=True, help="handover socket's fd")
    parser.add_argument("--name", default="media process", help="for the log lines")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.control, args.handover))


if __name__ == "__main__":
    main()
