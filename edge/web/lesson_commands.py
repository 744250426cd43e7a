"""Starting an extra lesson, extending the live one, ending it early: one set of rules
for the console's buttons (`POST /api/rooms/{room}/console`) and the lesson API
(`POST /api/rooms/{room}/lesson`, `.../lesson/extend`, `.../lesson/end`). The callers
have checked the room and that the caller is staff."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.access.rules import problem
from edge.school.lessons import Lesson
from edge.school.scheduler import LessonConflict, Scheduler
from edge.web.deps import json_body

Command = Literal["start", "extend", "end"]
MOST_MINUTES = 120  # whole minutes, for an extra lesson and for an extension alike


class LessonWish(BaseModel):
    """The body of a lesson command (the lesson API's, or within a console action)."""

    model_config = ConfigDict(extra="ignore")
    minutes: int | None = Field(None, description="whole minutes, 1 to MOST_MINUTES")
    subject: str = Field("", max_length=64, description="an extra lesson's subject")
    teacher: str = Field("", max_length=64)

    @field_validator("minutes", mode="before")
    @classmethod
    def _whole_minutes(cls, value: object) -> object:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_MINUTES:
            raise ValueError(f"a whole number from 1 to {MOST_MINUTES}")
        return value


async def run(
    scheduler: Scheduler, room: str, command: Command, wish: LessonWish
) -> Lesson | JSONResponse:
    """The lesson after `command`, or the problem to answer: 409 when it does not fit
    what the room is doing (the body was checked by `LessonWish`)."""
    minutes = wish.minutes or (45 if command == "start" else 5)  # the defaults
    text = {"subject": wish.subject, "teacher": wish.teacher}
    try:
        if command == "start":
            return await scheduler.start_adhoc(room, float(minutes), **text)
        if command == "extend":
            return await scheduler.extend(room, float(minutes))
        return await scheduler.end_now(room)
    except LessonConflict as exc:
        return problem(409, "Conflict", str(exc))


LessonBody = Annotated[LessonWish, Depends(json_body(LessonWish))]
"""A route's checked lesson command body (a FastAPI dependency)."""
