"""Starting an extra lesson, extending the live one, ending it early: one set of rules
for the console's buttons (`POST /api/rooms/{room}/console`) and the lesson API
(`POST /api/rooms/{room}/lesson`, `.../lesson/extend`, `.../lesson/end`). The callers
have checked the room and that the caller is staff."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse

from edge.access.rules import problem
from edge.school.lessons import Lesson
from edge.school.scheduler import LessonConflict, Scheduler

Command = Literal["start", "extend", "end"]
COMMANDS: tuple[Command, ...] = ("start", "extend", "end")
MINUTES = range(1, 121)  # whole minutes, for an extra lesson and for an extension alike
TEXT = ("subject", "teacher")  # an extra lesson's, up to 64 characters each


async def run(
    scheduler: Scheduler | None, room: str, command: Command, wish: dict[str, Any]
) -> Lesson | JSONResponse:
    """The lesson after `command`, or the problem to answer: 400 for a bad wish, 409 when
    it does not fit what the room is doing, 503 while the scheduler is not running."""
    minutes = wish.get("minutes", 45 if command == "start" else 5)  # the defaults
    if command != "end" and (
        isinstance(minutes, bool) or not isinstance(minutes, int) or minutes not in MINUTES
    ):
        return problem(400, "Malformed request", f"minutes: a whole number from 1 to {MINUTES[-1]}")
    text = {key: wish.get(key, "") for key in TEXT}
    if not all(isinstance(v, str) and len(v) <= 64 for v in text.values()):
        return problem(400, "Malformed request", "subject, teacher: text up to 64 characters")
    if scheduler is None:  # before the service has started, or while it stops
        return problem(
            503,
            "Not ready",
            "Lịch tiết học chưa chạy (máy đang khởi động hoặc đang tắt): thử lại sau ít giây.",
            {"Retry-After": "5"},
        )
    try:
        if command == "start":
            return await scheduler.start_adhoc(room, float(minutes), **text)
        if command == "extend":
            return await scheduler.extend(room, float(minutes))
        return await scheduler.end_now(room)
    except LessonConflict as exc:
        return problem(409, "Conflict", str(exc))
