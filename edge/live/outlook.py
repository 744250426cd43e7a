"""What a pupil's page is told around the lesson: live, next, ended today, and the 409
that says no lesson is live (the WHEP and the relay paths answer it alike)."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from edge.access.rules import problem
from edge.live.state import room_state

if TYPE_CHECKING:
    from edge.live.service import EdgeService


def lesson_outlook(service: EdgeService, room: str, staff: bool = False) -> dict[str, object]:
    """The room's live, next and ended (today) lessons and the school's time; staff also
    see ids and states."""
    return room_state(service, room).outlook(service.config.zone, staff=staff)


def not_live(service: EdgeService, room: str, headers: dict[str, str]) -> JSONResponse:
    """409: no lesson is live; when to try again (at most 15 s, sooner if it starts
    sooner), the next and the ended lesson, the school's time (the waiting room)."""
    outlook = lesson_outlook(service, room)
    upcoming = outlook["next"]
    wait = 15
    if isinstance(upcoming, dict) and isinstance(upcoming.get("start"), str):
        until = dt.datetime.fromisoformat(upcoming["start"]) - service.clock.now()
        wait = max(1, min(15, math.ceil(until.total_seconds())))
    return problem(
        409,
        "No lesson live",
        "no lesson is live in this room now",
        {**headers, "Retry-After": str(wait)},
        next_start=upcoming["start"] if isinstance(upcoming, dict) else None,
        next_lesson=upcoming,
        ended_lesson=outlook["ended"],
        now=outlook["now"],
    )
