"""Taking part: what happens between the teacher and the pupils online in one room.

Who is online (a pupil on two devices with their own link is one; a name picked on
the class link is a participant of its own, never verified, even while that pupil is
online with their own link), raised hands in the order they went up,
messages to the teacher (never shown to other pupils), the one session allowed to speak
(never a pupil ID: nobody is heard through another's grant), who was removed from
this lesson, whether the camera is paused for privacy. Pupils
change it over their class data channel, the console's buttons over the API; the
console follows it (`wait_for_change`).

A pupil allowed to speak is heard through the classroom speakers; the sound that pupil
gets back is the ducked microphone (quieter while the speakers talk), so their own
voice does not come back to them at full strength.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamError

from edge.live.room import Room
from edge.school.clock import Clock
from webrtc import Message, ViewerSession

logger = logging.getLogger(__name__)

MESSAGE_CHARS = 300
KEPT_MESSAGES = 100


@dataclass
class Participant:
    key: str  # a verified pupil's ID, else "viewer:<session>" (the class link)
    name: str
    verified: bool
    pupil_id: str | None
    sessions: dict[str, ViewerSession] = field(default_factory=dict)
    hand_at: float | None = None  # monotonic time the hand went up
    hand_session: str | None = None  # the device that raised it (it is heard if allowed)
    joined_at: dt.datetime | None = None

    def send(self, message: Message) -> None:
        for session in self.sessions.values():
            if session.channel is not None:
                session.channel.send(message)


def participant_key(session: ViewerSession) -> str:
    """Whose a session is: a verified pupil's ID, or the session itself (the class link)."""
    pupil_id = session.info.get("pupil_id")
    if pupil_id and session.info.get("verified"):
        return str(pupil_id)
    return f"viewer:{session.id}"


class Classroom:
    def __init__(
        self,
        room: Room,
        *,
        clock: Clock,
        zone: dt.tzinfo,
        names: Callable[[str | None], str],
        close_session: Callable[[str], Any],
    ) -> None:
        self.room = room
        self.clock = clock
        self.zone = zone
        self._names = names  # pupil ID → name (roster)
        self._close_session = close_session  # session ID → awaitable that ends it
        self.participants: dict[str, Participant] = {}
        self.messages: collections.deque[dict[str, object]] = collections.deque(
            maxlen=KEPT_MESSAGES
        )
        self.speaking: str | None = None  # the participant allowed to speak...
        self.speaking_session: str | None = None  # ...and the one device of theirs heard
        self.removed: set[str] = set()  # pupil IDs removed from the current lesson
        # (pupil ID picked or None, address): class-link viewers removed from this lesson
        self.removed_picks: set[tuple[str | None, str]] = set()
        self.lesson_id: str | None = None
        self.version = 0
        self._changed = asyncio.Event()  # replaced at each change; waiters hold the old one
        self._talk_tasks: dict[str, asyncio.Task[None]] = {}

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

    # ------------------------------------------------------------ pupils

    def refuses(self, pupil_id: str | None, verified: bool, address: str) -> bool:
        """Whether a join was removed from this lesson: a pupil the teacher removed (on any
        link), or a class-link viewer removed from that address with that name picked."""
        if pupil_id is not None and pupil_id in self.removed:
            return True
        return not verified and (pupil_id, address) in self.removed_picks

    def joined(self, session: ViewerSession) -> None:
        pupil_id = session.info.get("pupil_id")
        key = participant_key(session)
        participant = self.participants.get(key)
        if participant is None:
            participant = self.participants[key] = Participant(
                key,
                self._names(pupil_id),
                bool(session.info.get("verified")),
                pupil_id,
                joined_at=self.clock.now(),
            )
        participant.sessions[session.id] = session
        if session.incoming_audio is not None:  # always drained: a queue nobody reads grows
            self._talk_tasks[session.id] = asyncio.create_task(
                self._listen(session), name=f"talk-{session.id}"
            )
        if self.speaking == key:
            self._duck(participant, True)
        self._touch()

    def left(self, session: ViewerSession) -> None:
        task = self._talk_tasks.pop(session.id, None)
        if task is not None:
            task.cancel()
        if self.speaking_session == session.id:
            self._stop_speaking()
        for key, participant in list(self.participants.items()):
            if participant.sessions.pop(session.id, None) is not None and not participant.sessions:
                del self.participants[key]
        self._touch()

    def message(self, session: ViewerSession, message: Message) -> None:
        """A message on a pupil's data channel."""
        key = participant_key(session)
        participant = self.participants.get(key)
        if participant is None:
            return
        kind = message.get("type")
        if kind == "hand":
            up = bool(message.get("up"))
            if up and participant.hand_at is None:
                participant.hand_at = time.monotonic()
                participant.hand_session = session.id
            elif not up:
                participant.hand_at = None
            participant.send({"type": "hand", "up": participant.hand_at is not None})
        elif kind == "message":
            text = " ".join(str(message.get("text", "")).split())[:MESSAGE_CHARS]
            if not text:
                return
            self.messages.append(
                {"from": participant.name, "key": key, "verified": participant.verified,
                 "text": text, "at": self.clock.now().astimezone(self.zone).isoformat()}
            )  # fmt: skip
            participant.send({"type": "sent"})  # to the teacher only, never to classmates
        else:
            return
        self._touch()

    async def _listen(self, session: ViewerSession) -> None:
        """Read a pupil's microphone; it reaches the speakers only while that session
        is the one allowed."""
        track = session.incoming_audio
        assert track is not None
        speaker = self.room.speaker
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if self.speaking_session == session.id and speaker is not None:
                    speaker.play(frame)  # type: ignore[arg-type]

    # ------------------------------------------------------------ the teacher

    def allow_speak(self, key: str) -> bool:
        participant = self.participants.get(key)
        if participant is None:
            return False
        if self.speaking is not None and self.speaking != key:
            self._stop_speaking()
        self.speaking = key
        heard = participant.hand_session
        if heard not in participant.sessions:  # the hand was not raised, or from a device gone
            heard = next(reversed(participant.sessions))  # the newest
        self.speaking_session = heard
        participant.hand_at = None
        self._duck(participant, True)
        participant.send({"type": "speak", "allowed": True})
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
        key, self.speaking, self.speaking_session = self.speaking, None, None
        participant = self.participants.get(key) if key else None
        if participant is not None:
            self._duck(participant, False)
            participant.send({"type": "speak", "allowed": False})

    def _duck(self, participant: Participant, on: bool) -> None:
        ducked, mic = self.room.buses.get("mic/ducked"), self.room.buses.get("mic")
        encoder = self.room.ducking_encoder
        if encoder is not None:
            encoder.active = on
        for session in participant.sessions.values():
            session.set_audio(ducked if on else mic)

    def lower_hand(self, key: str) -> bool:
        participant = self.participants.get(key)
        if participant is None or participant.hand_at is None:
            return False
        participant.hand_at = None
        participant.send({"type": "hand", "up": False})
        self._touch()
        return True

    async def remove(self, key: str) -> bool:
        """End the participant's sessions for this lesson. A verified pupil cannot join
        again on any link; a class-link viewer cannot join again from that address with
        that name picked (the pupil's own link still can)."""
        participant = self.participants.get(key)
        if participant is None:
            return False
        if participant.verified and participant.pupil_id is not None:
            self.removed.add(participant.pupil_id)
        else:
            for session in participant.sessions.values():
                self.removed_picks.add((participant.pupil_id, str(session.info.get("address"))))
        participant.send({"type": "removed"})
        if self.speaking == key:
            self._stop_speaking()
        for session_id in list(participant.sessions):
            await self._close_session(session_id)
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
                {"key": p.key, "name": p.name, "verified": p.verified, "devices": len(p.sessions),
                 "hand": p.hand_at is not None, "speaking": self.speaking == p.key}
                for p in sorted(self.participants.values(), key=lambda p: p.name)
            ],
            "hands": [{"key": p.key, "name": p.name} for p in hands],
            "messages": list(self.messages),
            "speaking": self.speaking,
            "speaker": self.room.speaker is not None,
        }  # fmt: skip

    async def stop(self) -> None:
        tasks = list(self._talk_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._talk_tasks.clear()
