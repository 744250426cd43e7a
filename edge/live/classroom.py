"""Taking part: what happens between the teacher and the pupils online in one room,
whatever path their picture and sound take (the built-in WHEP, or Janus).

Each device in the classroom is a `Channel`: the pupil's page opens one (`POST
/classroom/{room}`, then an event stream and POSTs, edge/web/channel.py), and a player
without a page (any WHEP client) gets one standing in for its media session. A channel is
the source of attendance: present while its event stream is open (a reconnect within
`GRACE` seconds resumes it) or its media plays. Media sessions are linked to the channel
that asked for them, so the teacher's "remove" ends them all, on either path.

Who is online (a pupil on two devices with their own link is one; a name picked on the
class link is a participant of its own per device, never verified, even while that pupil
is online with their own link), raised hands in the order they went up, messages to the
teacher (never shown to other pupils), the one device allowed to speak (never a pupil ID:
nobody is heard through another's grant), who was removed from this lesson, whether the
camera is paused for privacy. The console follows it (`wait_for_change`).

A pupil allowed to speak publishes their microphone (WHIP, a talk session of its own for
that turn) and is heard through the classroom speakers; the sound that pupil gets back
is the ducked microphone (quieter while the speakers talk).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from capture.supervise import cancel_all, supervised
from edge.live.room import Room
from edge.school.clock import Clock
from webrtc import PacketBus, Viewer

logger = logging.getLogger(__name__)

Message = dict[str, Any]
MESSAGE_CHARS = 300
KEPT_MESSAGES = 100
GRACE = 20.0  # seconds a page's channel waits for its event stream to come back
OUTBOX = 64  # events kept for a page while its stream reconnects (the oldest go first)
BURST, WINDOW = 10, 10.0  # at most this many messages from a channel in this many seconds


@dataclass
class Channel:
    """One device in the classroom. `implicit`: a player without a page, present while
    its media session (whose id it shares) plays."""

    id: str
    key: str  # the participant: a verified pupil's ID, else one per device
    room: str
    class_name: str
    pupil_id: str | None
    verified: bool
    address: str
    link: str  # "pupil:<id>" or "class:<class>": the link it came with
    user_agent: str = ""
    device: str = ""  # the page's id for its tab: a reopened channel takes over
    implicit: bool = False
    opened_at: float = field(default_factory=time.monotonic)
    streams: int = 0  # event streams open now
    lost_at: float | None = None  # when its last stream closed
    present: bool = False  # noted in attendance
    media: dict[str, Viewer | None] = field(default_factory=dict)  # None: relayed
    outbox: collections.deque[Message] = field(
        default_factory=lambda: collections.deque(maxlen=OUTBOX)
    )
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    recent: collections.deque[float] = field(default_factory=collections.deque)
    closed: bool = False

    def send(self, message: Message) -> None:
        if not self.implicit and not self.closed:
            self.outbox.append(message)
            self.arrived.set()

    def info(self) -> dict[str, object]:
        return {
            "room": self.room,
            "class_name": self.class_name,
            "pupil_id": self.pupil_id,
            "verified": self.verified,
            "address": self.address,
            "link": self.link,
            "user_agent": self.user_agent,
        }


@dataclass
class Participant:
    key: str
    name: str
    verified: bool
    pupil_id: str | None
    channels: dict[str, Channel] = field(default_factory=dict)
    hand_at: float | None = None  # monotonic time the hand went up
    hand_channel: str | None = None  # the device that raised it (it is heard if allowed)
    joined_at: dt.datetime | None = None

    def send(self, message: Message) -> None:
        for channel in self.channels.values():
            channel.send(message)


@dataclass
class Talk:
    """A talking pupil's microphone (WHIP), played by the room's media plane."""

    id: str
    room: str
    channel: str  # the page's classroom channel
    connected_at: float | None = None  # time.monotonic()


class Classroom:
    """One room's taking part; `start()` runs the reaper of lost channels, `stop()` ends
    it and every talk session."""

    def __init__(
        self,
        room: Room,
        *,
        clock: Clock,
        zone: dt.tzinfo,
        names: Callable[[str | None], str],
        close_media: Callable[[str], Awaitable[object]],
        close_talk: Callable[[str], Awaitable[object]],
        on_present: Callable[[Channel], None] = lambda channel: None,
        on_absent: Callable[[Channel], None] = lambda channel: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self.clock = clock
        self.zone = zone
        self._names = names  # pupil ID → name (roster)
        self._close_media = close_media  # media session ID → awaitable that ends it
        self._close_talk = close_talk  # talk session ID → awaitable that ends it
        self._on_present, self._on_absent = on_present, on_absent
        self._monotonic = monotonic
        self.channels: dict[str, Channel] = {}
        self.participants: dict[str, Participant] = {}
        self.messages: collections.deque[dict[str, object]] = collections.deque(
            maxlen=KEPT_MESSAGES
        )
        self.speaking: str | None = None  # the participant allowed to speak...
        self.speaking_channel: str | None = None  # ...and the one device of theirs heard
        self.talk: Talk | None = None  # the microphone published for that turn
        self.removed: set[str] = set()  # pupil IDs removed from the current lesson
        # (pupil ID picked or None, address): class-link devices removed from this lesson
        self.removed_picks: set[tuple[str | None, str]] = set()
        self.lesson_id: str | None = None
        self.version = 0
        self._changed = asyncio.Event()  # replaced at each change; waiters hold the old one
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: list[tuple[Awaitable[object], str]] = []  # run by the reaper

    async def start(self) -> None:
        self._tasks = [supervised(f"classroom-{self.room.name}", self._reap)]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        for channel in list(self.channels.values()):
            self._close(channel, "service stopping")
        await self._run_pending()

    # ------------------------------------------------------------ changes

    def _touch(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Something the console shows changed elsewhere (who studies from home)."""
        self._touch()

    async def wait_for_change(self, seen: int, within: float) -> int:
        """The version after `seen` (at once if it moved already), or `seen` after
        `within` seconds without a change."""
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):  # 3.11's wait_for can swallow a cancel
                    await self._changed.wait()
        return self.version

    def lesson_changed(self, lesson_id: str | None) -> None:
        """A new lesson (or none): hands, messages and removals start afresh."""
        if lesson_id == self.lesson_id:
            return
        self.lesson_id = lesson_id
        self.removed.clear()
        self.removed_picks.clear()
        self.messages.clear()
        for participant in self.participants.values():
            participant.hand_at = None
        self._stop_speaking()
        self._touch()

    def lesson_ended(self) -> None:
        """The lesson is over: every page is told, and their channels close."""
        for channel in list(self.channels.values()):
            channel.send({"type": "ended"})
            self._close(channel, "lesson ended")
        self._touch()

    # ------------------------------------------------------------ channels

    def refuses(self, pupil_id: str | None, verified: bool, address: str) -> bool:
        """Whether a join was removed from this lesson: a pupil the teacher removed (on any
        link), or a class-link device removed from that address with that name picked."""
        if pupil_id is not None and pupil_id in self.removed:
            return True
        return not verified and (pupil_id, address) in self.removed_picks

    def open(self, channel: Channel) -> Channel:
        """A device enters: a page's channel (present once its event stream opens, see
        `stream_opened`) or a player's stand-in (present at once). A page that opens a
        channel again for the same device (`key`) resumes its participant."""
        self.channels[channel.id] = channel
        participant = self.participants.get(channel.key)
        if participant is None:
            participant = self.participants[channel.key] = Participant(
                channel.key,
                self._names(channel.pupil_id),
                channel.verified,
                channel.pupil_id,
                joined_at=self.clock.now(),
            )
        participant.channels[channel.id] = channel
        if channel.implicit:
            self._present(channel)
        else:
            channel.lost_at = self._monotonic()  # it has GRACE seconds to open its stream
            channel.send(self._hello(participant))
        self._touch()
        return channel

    def reopen(self, channel: Channel) -> Channel:
        """Open `channel`; an older channel of the same device (`device`) gives way to it
        and hands over its raised hand and its turn to speak."""
        older = [
            c
            for c in self.channels.values()
            if c.device and c.device == channel.device and c.key == channel.key
        ]
        self.open(channel)
        for old in older:
            if self.speaking_channel == old.id:
                self.speaking_channel = channel.id
                channel.send({"type": "speak", "allowed": True})
            participant = self.participants.get(old.key)
            if participant is not None and participant.hand_channel == old.id:
                participant.hand_channel = channel.id
            channel.media.update(old.media)  # its media plays on for the new channel
            old.media.clear()
            self._close(old, "reopened")
        return channel

    def _hello(self, participant: Participant) -> Message:
        return {
            "type": "hello",
            "name": participant.name,
            "hand": participant.hand_at is not None,
            "speak": self.speaking == participant.key,
        }

    def _present(self, channel: Channel) -> None:
        if not channel.present:
            channel.present = True
            try:
                self._on_present(channel)
            except Exception:  # attendance must never break taking part
                logger.exception("noting channel %s present", channel.id)

    def stream_opened(self, channel: Channel) -> None:
        channel.streams += 1
        channel.lost_at = None
        self._present(channel)
        self._touch()

    def stream_closed(self, channel: Channel) -> None:
        channel.streams = max(channel.streams - 1, 0)
        if channel.streams == 0 and not channel.closed:
            channel.lost_at = self._monotonic()

    def leave(self, channel_id: str) -> bool:
        """The page says goodbye (or its stand-in's media ended)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        self._close(channel, "left")
        self._touch()
        return True

    def _close(self, channel: Channel, why: str) -> None:
        if self.channels.pop(channel.id, None) is None:
            return
        channel.closed = True
        channel.arrived.set()  # its event stream ends
        if channel.present:
            try:
                self._on_absent(channel)
            except Exception:
                logger.exception("noting channel %s absent", channel.id)
        participant = self.participants.get(channel.key)
        if participant is not None:
            participant.channels.pop(channel.id, None)
            if participant.hand_channel == channel.id:
                participant.hand_at = participant.hand_channel = None
            if not participant.channels:
                del self.participants[channel.key]
        if self.speaking_channel == channel.id:
            self._stop_speaking()
        for media_id in list(channel.media):
            self._later(self._close_media(media_id), f"closing media {media_id}")
        logger.info("room %s: channel %s closed (%s)", self.room.name, channel.id, why)

    def _later(self, step: Awaitable[object], what: str) -> None:
        """Run `step` soon, supervised by the reaper's next turn."""
        self._pending.append((step, what))

    async def _run_pending(self) -> None:
        pending, self._pending = self._pending, []
        for step, what in pending:
            try:
                await step
            except Exception:
                logger.exception("room %s: %s", self.room.name, what)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self.reap_once()

    async def reap_once(self) -> None:
        """Close the channels whose event stream has been gone longer than `GRACE` and
        that no media plays for (a page whose events a proxy holds back keeps watching,
        present through its media, until that ends too)."""
        now = self._monotonic()
        for channel in list(self.channels.values()):
            lost = channel.lost_at is not None and now - channel.lost_at > GRACE
            if lost and not channel.media:
                self._close(channel, f"no event stream for {GRACE:.0f} s")
                self._touch()
        await self._run_pending()

    def link_media(self, channel_id: str, media_id: str, session: Viewer | None) -> bool:
        """A media session (WHEP, or a relay viewer: `session` None) plays for a channel."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        channel.media[media_id] = session
        participant = self.participants.get(channel.key)
        if session is not None and self.speaking == channel.key and participant is not None:
            self._duck(participant, True)
        return True

    def unlink_media(self, media_id: str) -> None:
        for channel in self.channels.values():
            channel.media.pop(media_id, None)

    def channel_of(self, media_id: str) -> Channel | None:
        return next((c for c in self.channels.values() if media_id in c.media), None)

    def message(self, channel: Channel, message: Message) -> bool:
        """A page's message: `{"type": "hand", "up": bool}` or `{"type": "message",
        "text": ...}`. False: too many lately (dropped)."""
        now = self._monotonic()
        while channel.recent and now - channel.recent[0] > WINDOW:
            channel.recent.popleft()
        if len(channel.recent) >= BURST:
            return False
        channel.recent.append(now)
        participant = self.participants.get(channel.key)
        if participant is None:
            return True
        kind = message.get("type")
        if kind == "hand":
            up = bool(message.get("up"))
            if up and participant.hand_at is None:
                participant.hand_at = time.monotonic()
                participant.hand_channel = channel.id
            elif not up:
                participant.hand_at = None
            participant.send({"type": "hand", "up": participant.hand_at is not None})
        elif kind == "message":
            text = " ".join(str(message.get("text", "")).split())[:MESSAGE_CHARS]
            if not text:
                return True
            self.messages.append(
                {"from": participant.name, "key": participant.key,
                 "verified": participant.verified, "text": text,
                 "at": self.clock.now().astimezone(self.zone).isoformat()}
            )  # fmt: skip
            channel.send({"type": "sent"})  # to the teacher only, never to classmates
        self._touch()
        return True

    # ------------------------------------------------------------ speaking

    def may_talk(self, channel: Channel) -> bool:
        """Whether this device is the one the teacher allowed to speak now."""
        return self.speaking == channel.key and self.speaking_channel == channel.id

    def talk_started(self, channel: Channel, talk: Talk) -> Talk | None:
        """A microphone published for the allowed turn (the room's media plane plays it);
        the one it replaces (to close)."""
        old, self.talk = self.talk, talk
        self._touch()
        return old if old is not None and old is not talk else None

    def talk_connected(self, talk: Talk) -> None:
        if self.talk is talk:
            self._touch()

    def talk_ended(self, talk: Talk) -> None:
        if self.talk is talk:
            self.talk = None
            self._touch()

    # ------------------------------------------------------------ the teacher

    def allow_speak(self, key: str) -> bool:
        participant = self.participants.get(key)
        if participant is None:
            return False
        if self.speaking is not None and self.speaking != key:
            self._stop_speaking()
        self.speaking = key
        heard = participant.hand_channel
        if heard not in participant.channels:  # the hand was not raised, or that device left
            pages = [c for c in participant.channels.values() if not c.implicit]
            heard = (pages or list(participant.channels.values()))[-1].id  # the newest
        self.speaking_channel = heard
        participant.hand_at = None
        self._duck(participant, True)
        participant.channels[heard].send({"type": "speak", "allowed": True})
        participant.send({"type": "hand", "up": False})
        self._touch()
        return True

    def mute(self, key: str) -> bool:
        if self.speaking != key:
            return False
        self._stop_speaking()
        self._touch()
        return True

    def _stop_speaking(self) -> None:
        key, self.speaking, self.speaking_channel = self.speaking, None, None
        participant = self.participants.get(key) if key else None
        if participant is not None:
            self._duck(participant, False)
            participant.send({"type": "speak", "allowed": False})
        if self.talk is not None:
            talk = self.talk
            self.talk_ended(talk)
            self._later(self._close_talk(talk.id), f"ending talk session {talk.id}")

    def _duck(self, participant: Participant, on: bool) -> None:
        ducked, mic = self.room.buses.get("mic/ducked"), self.room.buses.get("mic")
        self.room.duck(on)
        bus: PacketBus | None = ducked if on else mic
        for channel in participant.channels.values():
            for session in channel.media.values():
                if session is not None:
                    session.set_audio(bus)

    def lower_hand(self, key: str) -> bool:
        participant = self.participants.get(key)
        if participant is None or participant.hand_at is None:
            return False
        participant.hand_at = None
        participant.send({"type": "hand", "up": False})
        self._touch()
        return True

    async def remove(self, key: str) -> bool:
        """End the participant's channels and media for this lesson. A verified pupil
        cannot join again on any link; a class-link device cannot join again from that
        address with that name picked (the pupil's own link still can)."""
        participant = self.participants.get(key)
        if participant is None:
            return False
        if participant.verified and participant.pupil_id is not None:
            self.removed.add(participant.pupil_id)
        else:
            for channel in participant.channels.values():
                self.removed_picks.add((participant.pupil_id, channel.address))
        participant.send({"type": "removed"})
        if self.speaking == key:
            self._stop_speaking()
        for channel in list(participant.channels.values()):
            self._close(channel, "removed by the teacher")
        await self._run_pending()
        self._touch()
        return True

    def pause_camera(self, paused: bool) -> None:
        self.room.pause_camera(paused)
        self._touch()

    # ------------------------------------------------------------ the console's view

    def state(self) -> dict[str, object]:
        hands = sorted(
            (p for p in self.participants.values() if p.hand_at is not None),
            key=lambda p: p.hand_at or 0.0,
        )
        return {
            "version": self.version,
            "online": [
                {"key": p.key, "name": p.name, "verified": p.verified,
                 "devices": len(p.channels), "hand": p.hand_at is not None,
                 "speaking": self.speaking == p.key}
                for p in sorted(self.participants.values(), key=lambda p: p.name)
            ],
            "hands": [{"key": p.key, "name": p.name} for p in hands],
            "messages": list(self.messages),
            "speaking": self.speaking,
            "talking": self.talk is not None and self.talk.connected_at is not None,
            "speaker": self.room.has_speakers,
        }  # fmt: skip
