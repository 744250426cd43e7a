"""The teacher's console on the smart board, `/console/{room}` (the mini-PC itself, or
staff): LIVE/REC, pupils online, raised hands in order, messages, who may speak, the
camera's privacy pause, an extra lesson, extending or ending the live one; who studies
from home today.

`GET /api/rooms/{room}/console/events` streams the console's state (Server-Sent Events)
the moment it changes; `POST /api/rooms/{room}/console` takes the teacher's buttons.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.access.links import room_links
from edge.access.rules import problem, staff_page_refusal
from edge.live.media import NO_SPEAKERS
from edge.live.ptz import CameraControlError
from edge.live.state import room_state
from edge.web import lessons
from edge.web.deps import Room, Service, StaffOnly, json_body
from edge.web.pages import page
from edge.web.sheet import render_sheet

if TYPE_CHECKING:
    from edge.live.service import EdgeService

PUSH_SECONDS = 1.0  # changes outside the classroom (the lesson, the mic) reach it this fast
KEEPALIVE_SECONDS = 15.0
Action = (
    Literal[
        "allow_speak", "mute", "lower_hand", "remove", "pause_camera", "resume_camera", "preset"
    ]
    | lessons.Command  # start, extend, end: the same rules as the lesson API
)


class ConsoleAction(lessons.LessonWish):
    """A console button: `{"action": ..., "key": participant, "name": preset, ...}`, with
    a lesson command's `minutes`, `subject`, `teacher`."""

    action: Action
    key: str = Field("", max_length=200, description="the participant (the console's key)")
    name: str = Field("", max_length=64, description="a camera preset's name")


routes = APIRouter()


class AtHome(BaseModel):
    """`{"date": "YYYY-MM-DD", "pupils": [IDs]}`: who studies from home that day (today
    when the date is left out)."""

    model_config = ConfigDict(extra="forbid")
    date: dt.date | None = None
    pupils: list[Annotated[str, Field(max_length=64)]] = Field(max_length=200)


def state(service: EdgeService, room: str) -> dict[str, object]:
    """The room's state (edge/live/state.py) with the classroom's: who is online, hands,
    messages; the class's pupils and who studies from home today."""
    runtime = service.rooms[room]
    classroom, camera = runtime.classroom, runtime.camera
    zone = service.config.zone
    now = room_state(service, room)
    class_name = runtime.settings.class_name
    home = service.attendance.at_home(now.now.astimezone(zone).date(), class_name)
    return {
        **now.for_staff(zone),
        "warnings": service.warnings(),  # the whole mini-PC's: the board shows them all
        "pupils": [{"id": p.id, "name": p.name} for p in service.roster.pupils(class_name)],
        "at_home": sorted(home) if home is not None else None,
        "presets": camera.labels() if camera.identity else {},
        **classroom.state(),
    }


@routes.get("/console/{room}")
async def console_page(room: str, request: Request, service: Service) -> Response:
    refusal = staff_page_refusal(request, service.staff, service.rooms, room)
    if refusal is not None:
        return refusal
    return page("console.html", {"room": room, "school": service.config.site.school})


@routes.get("/control/{room}")
async def control_page(room: str) -> Response:
    """The old teacher's page: the console does all it did (links keep working)."""
    return RedirectResponse(f"/console/{quote(room, safe='')}", status_code=301)


@routes.get("/sheet/{room}")
async def link_sheet(room: str, request: Request, service: Service) -> Response:
    """The class's links with QR codes, to print for parents."""
    refusal = staff_page_refusal(request, service.staff, service.rooms, room)
    if refusal is not None:
        return refusal
    links = room_links(service.config, service.signer, service.roster, room, service.base_url)
    class_name = service.config.rooms[room].class_name
    return HTMLResponse(
        render_sheet(service.config.site.school, class_name, links),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@routes.get("/api/rooms/{room}/console", dependencies=[StaffOnly])
async def console_state(room: Room, service: Service) -> Response:
    return JSONResponse(state(service, room), headers={"Cache-Control": "no-store"})


@routes.get("/api/rooms/{room}/console/events", dependencies=[StaffOnly])
async def console_events(room: Room, request: Request, service: Service) -> Response:
    classroom = service.rooms[room].classroom

    async def stream() -> AsyncIterator[str]:
        seen, sent, quiet = -1, "", 0.0
        while not await request.is_disconnected():
            version = await classroom.wait_for_change(seen, PUSH_SECONDS)
            text = json.dumps(state(service, room), ensure_ascii=False)
            if version != seen or text != sent:
                seen, sent, quiet = version, text, 0.0
                yield f"data: {text}\n\n"
            else:
                quiet += PUSH_SECONDS
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": still here\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@routes.post("/api/rooms/{room}/console", dependencies=[StaffOnly])
async def console_action(
    room: Room,
    wish: Annotated[ConsoleAction, Depends(json_body(ConsoleAction))],
    service: Service,
) -> Response:
    runtime = service.rooms[room]
    classroom = runtime.classroom
    action, key = wish.action, wish.key
    done = True
    if action == "allow_speak":
        if not runtime.has_speakers:
            return problem(409, "No speakers", NO_SPEAKERS)
        done = classroom.allow_speak(key)
    elif action == "mute":
        done = classroom.mute(key)
    elif action == "lower_hand":
        done = classroom.lower_hand(key)
    elif action == "remove":
        done = await classroom.remove(key)
    elif action == "pause_camera" or action == "resume_camera":
        classroom.pause_camera(action == "pause_camera")
    elif action == "preset":
        try:
            await runtime.camera.recall(wish.name)
        except CameraControlError as exc:
            return problem(exc.status, "Camera", exc.message)
    else:  # start, extend, end: the same rules as the lesson API
        lesson = await lessons.run(service.scheduler, room, action, wish)
        if isinstance(lesson, JSONResponse):
            return lesson
    if not done:
        return problem(409, "Conflict", "Học sinh này không còn trong lớp trực tuyến.")
    return JSONResponse(state(service, room))


@routes.get("/api/classes/{class_name}/at-home", dependencies=[StaffOnly])
async def at_home_get(class_name: str, service: Service, date: str = "") -> Response:
    day = _day(date) or service.clock.now().astimezone(service.config.zone).date()
    home = service.attendance.at_home(day, class_name)
    body = {"date": day.isoformat(), "class": class_name}
    return JSONResponse({**body, "pupils": sorted(home) if home is not None else None})


@routes.post("/api/classes/{class_name}/at-home", dependencies=[StaffOnly])
async def at_home_set(
    class_name: str, wish: Annotated[AtHome, Depends(json_body(AtHome))], service: Service
) -> Response:
    """`{"date": "YYYY-MM-DD", "pupils": [IDs]}`: who studies from home that day."""
    day = wish.date or service.clock.now().astimezone(service.config.zone).date()
    known = {p.id for p in service.roster.pupils(class_name)}
    unknown = sorted(set(wish.pupils) - known)
    if unknown:
        return problem(400, "Unknown pupils", f"not on the roster of {class_name}: {unknown}")
    service.attendance.set_at_home(day, class_name, wish.pupils, "console", service.clock.now())
    for runtime in service.rooms.values():
        if runtime.settings.class_name == class_name:
            runtime.classroom.changed()
    return JSONResponse(
        {"date": day.isoformat(), "class": class_name, "pupils": sorted(wish.pupils)}
    )


def _day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
