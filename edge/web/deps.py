"""What the routes need, as FastAPI dependencies, each refusal in one place: the service,
a room that exists (404), staff (403), staff allowed to change things (403 without the
page's CSRF token), a pupil's grant for the room (401, 429), the CORS headers for players
on other sites, a JSON body read within its bound and checked by a pydantic model (413,
415, 400 naming the field). A dependency that refuses raises `Refused`, which `app`
answers with its problem body (and the CORS headers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from edge.access import joining
from edge.access.rules import cors_headers, csrf_refusal, is_staff, json_object, problem
from edge.access.tokens import Grant
from edge.live.outlook import not_live
from edge.live.service import EdgeService


class Refused(Exception):
    """A request a dependency turned away; `response` is what the client gets."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def the_service(request: Request) -> EdgeService:
    return cast(EdgeService, request.app.state.service)


Service = Annotated[EdgeService, Depends(the_service)]


def require_staff(request: Request, service: Service) -> None:
    """The board itself, the staff key or a staff login; else 403."""
    if not is_staff(request, service.staff):
        raise Refused(problem(403, "Staff only", "log in at /login"))


def require_staff_change(request: Request, service: Service) -> None:
    """Staff, and a page that sent back its CSRF token (or the staff key); else 403."""
    require_staff(request, service)
    refusal = csrf_refusal(request, service.staff)
    if refusal is not None:
        raise Refused(refusal)


def known_room(room: str, service: Service) -> str:
    """The `{room}` of the path, when this mini-PC has it; else 404."""
    if room not in service.rooms:
        raise Refused(problem(404, "Unknown room", f"there is no room {room!r} here"))
    return room


StaffOnly = Depends(require_staff)
StaffChange = Depends(require_staff_change)
Room = Annotated[str, Depends(known_room)]


def cors(methods: str) -> Callable[[Request, EdgeService], dict[str, str]]:
    """A dependency: the CORS headers for a player on an allowed site (`[http]
    cors_origins`) of a route answering `methods`; none for other sites."""

    def headers(request: Request, service: Service) -> dict[str, str]:
        return cors_headers(request, service.config.site.http.cors_origins, methods)

    return headers


Cors = Annotated[dict[str, str], Depends(cors("GET, POST, OPTIONS"))]


def pupil_grant(room: Room, request: Request, service: Service, headers: Cors) -> Grant:
    """The grant of the request's link (the bearer) for `room`; 401 or 429 else."""
    grant = joining.grant_for_room(service, request, room, headers)
    if not isinstance(grant, Grant):
        raise Refused(grant)
    return grant


def pupil_or_staff(room: Room, request: Request, service: Service, headers: Cors) -> None:
    """Staff, or a valid link for `room`."""
    if not is_staff(request, service.staff):
        pupil_grant(room, request, service, headers)


PupilGrant = Annotated[Grant, Depends(pupil_grant)]


def admit(
    service: EdgeService, request: Request, room: str, grant: Grant, headers: dict[str, str]
) -> joining.Seat | Response:
    """Who joins `room` on `grant` now, or the answer that says why not: 409 while no
    lesson is live (with the waiting room's outlook), 403 removed by the teacher or a
    `?channel=` of another link's, 429 a cap reached. The one admission of WHEP, the
    relay and the classroom channel; the seat names the page's channel, if any."""
    if not service.rooms[room].live:
        return not_live(service, room, headers)
    seat = joining.seat(service, request, room, grant, headers)
    wanted = request.query_params.get("channel")
    if not isinstance(seat, joining.Seat) or not wanted:
        return seat
    channel = service.rooms[room].classroom.channels.get(wanted)
    if channel is None:  # it closed meanwhile: the media stands on its own
        return seat
    if channel.implicit or channel.link != seat.link:
        return problem(403, "Forbidden", "this channel belongs to another link", headers)
    return dataclasses.replace(seat, channel=channel.id)


PupilOrStaff = Depends(pupil_or_staff)


M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M], limit: int = 16_384) -> Callable[[Request], Awaitable[M]]:
    """A dependency: the request's JSON object (at most `limit` bytes) as a `model`."""

    async def read(request: Request) -> M:
        wish = await json_object(request, limit)
        if isinstance(wish, Response):
            raise Refused(wish)
        try:
            return model.model_validate(wish)
        except ValidationError as exc:
            wrong = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise Refused(problem(400, "Malformed request", wrong)) from None

    return read
