"""A room's state now, in one model: what the console, the admin page, the pupil's
waiting room (`/api/rooms/{room}/now`), `/healthz` and the systemd status all read. The
warnings staff see are worded here, once, on the server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.school.lessons import Lesson

if TYPE_CHECKING:
    from edge.live.room import Room
    from edge.live.service import EdgeService

SILENT_WARNING_SECONDS = 30  # the classroom microphone heard nothing this long, while live
SOURCE_NAMES = {"camera": "Camera", "board": "Hình bảng", "mic": "Micro"}
"""How staff read a source's name in warnings."""
PUPIL_LESSON_KEYS = ("class", "subject", "teacher", "period", "session", "start", "end")
"""What a pupil's page may know of a lesson (no ids, no states)."""


@dataclass(frozen=True)
class RoomState:
    """One room now. `lesson`, `next` and `ended` are today's live, next and last
    ended lessons; `recording` is the lesson being recorded, if any."""

    room: str
    class_name: str
    now: dt.datetime
    live: bool
    capturing: bool
    lesson: Lesson | None
    next: Lesson | None
    ended: Lesson | None
    records: bool  # this room records its lessons at all
    recording: str | None
    recording_error: str | None
    camera_paused: bool
    mic_silent_seconds: float | None
    missing: tuple[str, ...]  # sources that give no signal now (their slate is out)
    warnings: tuple[str, ...]  # this room's, in Vietnamese, for staff

    @property
    def mic_silent(self) -> bool:
        seconds = self.mic_silent_seconds
        return seconds is not None and seconds >= SILENT_WARNING_SECONDS

    def for_staff(self, zone: dt.tzinfo) -> dict[str, object]:
        """The JSON staff pages read (the console, the admin page, the lesson API)."""
        silent = self.mic_silent_seconds
        return {
            "room": self.room,
            "class": self.class_name,
            "now": self.now.astimezone(zone).isoformat(),
            "live": self.live,
            "capturing": self.capturing,
            "lesson": _lesson(self.lesson, zone),
            "next": _lesson(self.next, zone),
            "ended": _lesson(self.ended, zone),
            "records": self.records,
            "recording": self.recording,
            "recording_error": self.recording_error,
            "camera_paused": self.camera_paused,
            "mic_silent_seconds": None if silent is None else round(silent),
            "mic_silent": self.mic_silent,
            "missing": list(self.missing),
            "warnings": list(self.warnings),
        }

    def outlook(self, zone: dt.tzinfo, *, staff: bool) -> dict[str, object]:
        """Today's live, next and ended lesson and the school's time: the waiting room's
        view (no ids, no states) or, for staff, the lesson API's."""
        shown = _lesson if staff else pupil_lesson
        return {
            "now": self.now.astimezone(zone).isoformat(),
            "live": shown(self.lesson, zone),
            "next": shown(self.next, zone),
            "ended": shown(self.ended, zone),
        }


def _lesson(lesson: Lesson | None, zone: dt.tzinfo) -> dict[str, object] | None:
    return lesson.as_json(zone) if lesson is not None else None


def pupil_lesson(lesson: Lesson | None, zone: dt.tzinfo) -> dict[str, object] | None:
    if lesson is None:
        return None
    full = lesson.as_json(zone)
    return {key: full[key] for key in PUPIL_LESSON_KEYS}


def room_state(service: EdgeService, name: str) -> RoomState:
    """Room `name` now (one look at the scheduler's plan)."""
    room = service.rooms[name]
    now = service.clock.now()
    outlook = service.scheduler.outlook(name, now)
    recorder = room.recorder
    recording_error = recorder.health()["error"] if recorder is not None else None
    silent = room.mic_silent_seconds()
    return RoomState(
        room=name,
        class_name=room.settings.class_name,
        now=now,
        live=room.live,
        capturing=room.capturing,
        lesson=outlook.get("live"),
        next=outlook.get("next"),
        ended=outlook.get("ended"),
        records=recorder is not None,
        recording=recorder.recording if recorder is not None else None,
        recording_error=str(recording_error) if recording_error else None,
        camera_paused=room.camera_paused,
        mic_silent_seconds=silent,
        missing=tuple(source for source, _ in room.missing_devices()),
        warnings=tuple(room_warnings(room, silent)),
    )


def room_warnings(room: Room, mic_silent_seconds: float | None) -> list[str]:
    """What staff must know of `room` now; streaming goes on regardless."""
    found = []
    name = room.name
    if mic_silent_seconds is not None and mic_silent_seconds >= SILENT_WARNING_SECONDS:
        found.append(
            f"Phòng {name}: Micro lớp học không thu được tiếng đã {mic_silent_seconds:.0f} "
            "giây: thầy cô hãy kiểm tra micro."
        )
    for source, reason in room.missing_devices():
        what = SOURCE_NAMES.get(source, source)
        effect = (
            "Học sinh vẫn xem hình nhưng không nghe tiếng lớp. "
            if source == "mic"
            else "Học sinh thấy thông báo đang kết nối lại; tiếng vẫn phát. "
        )
        found.append(
            f"Phòng {name}: {what} không có tín hiệu ({reason or 'không có hình'}). "
            f"{effect}Kiểm tra dây cắm."
        )
    for source, ago, recovered in room.recent_hangs():
        what = SOURCE_NAMES.get(source, source)
        found.append(
            f"Phòng {name}: {what} bị treo {ago:.0f} giây trước; đã tự mở lại, "
            "không cần khởi động lại."
            if recovered
            else f"Phòng {name}: {what} bị treo nhiều lần và không tự mở lại được. "
            "Học sinh thấy thông báo mất hình; hãy báo Tổ CNTT khởi động lại dịch vụ."
        )
    if (speaker_error := room.speaker_error()) is not None:
        found.append(
            f"Phòng {name}: Loa lớp học không phát được ({speaker_error}). Học sinh được "
            "cho nói sẽ không được cả lớp nghe thấy; kiểm tra loa và dây cắm."
        )
    if room.recorder is not None and (error := room.recorder.health()["error"]):
        found.append(f"Phòng {name}: không ghi hình được ({error}).")
    return found
