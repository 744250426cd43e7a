"""The lesson API for staff and tools: `GET /api/rooms/{room}/lesson` (today's live, next
and ended lesson, the recording, the warnings), and starting an extra lesson, extending
the live one, ending it early, with one set of rules for the console's buttons
(`POST /api/rooms/{room}/console`) and the API (`POST /api/rooms/{room}/lesson`,
`.../lesson/extend`, `.../lesson/end`); and `GET /api/rooms/{room}/now` for the pupil's
waiting room."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.access.rules import problem
from edge.live.outlook import lesson_outlook
from edge.live.state import room_state
from edge.school.lessons import Lesson
from edge.school.scheduler import LessonConflict, Scheduler
from edge.web.deps import Cors, PupilOrStaff, Room, Service, StaffOnly, json_body

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


routes = APIRouter()


@routes.get("/api/rooms/{room}/now", dependencies=[PupilOrStaff])
async def room_now(room: Room, service: Service, headers: Cors) -> Response:
    """The lesson live now, the next one and the one that ended, for the pupil's waiting
    room (a join link as the bearer) or staff."""
    return JSONResponse(
        lesson_outlook(service, room), headers={**headers, "Cache-Control": "no-store"}
    )


@routes.get("/api/rooms/{room}/lesson", dependencies=[StaffOnly])
async def lesson_state(room: Room, service: Service) -> Response:
    state = room_state(service, room)
    body = {
        **state.outlook(service.config.zone, staff=True),
        "recording": state.recording,
        "warnings": service.warnings(),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _answer(service: Service, room: str, command: Command, wish: LessonWish) -> Response:
    lesson = await run(service.scheduler, room, command, wish)
    if isinstance(lesson, JSONResponse):
        return lesson
    status = 201 if command == "start" else 200
    return JSONResponse(lesson.as_json(service.config.zone), status_code=status)


@routes.post("/api/rooms/{room}/lesson", dependencies=[StaffOnly])
async def lesson_start(room: Room, wish: LessonBody, service: Service) -> Response:
    """Start an extra lesson now: `{"minutes": 45, "subject": "", "teacher": ""}`."""
    return await _answer(service, room, "start", wish)


@routes.post("/api/rooms/{room}/lesson/end", dependencies=[StaffOnly])
async def lesson_end(room: Room, wish: LessonBody, service: Service) -> Response:
    return await _answer(service, room, "end", wish)


@routes.post("/api/rooms/{room}/lesson/extend", dependencies=[StaffOnly])
async def lesson_extend(room: Room, wish: LessonBody, service: Service) -> Response:
    """`{"minutes": 10}`: up to the next period's bell."""
    return await _answer(service, room, "extend", wish)
