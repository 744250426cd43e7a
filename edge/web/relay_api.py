"""Joining through the Janus relay (`[relay]`): `POST /relay/{room}` with the join link as
the bearer gives the page Janus's address, the mountpoint and a token; then
`POST /relay/{room}/{session}` beats and `DELETE` leaves."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from edge.access import joining
from edge.access.rules import problem
from edge.live.relay import Relay, RelayViewer
from edge.web.deps import PupilGrant, Refused, Room, Service, admit, cors
from webrtc.relay import JanusError

logger = logging.getLogger(__name__)

routes = APIRouter()
Headers = Annotated[dict[str, str], Depends(cors("POST, DELETE, OPTIONS"))]


def the_relay(service: Service, headers: Headers) -> Relay:
    """The relay; 404 on a service that serves viewers itself."""
    if service.relay is None:
        raise Refused(
            problem(404, "No relay", "this service serves viewers itself (POST /whep)", headers)
        )
    return service.relay


def relay_viewer(
    room: str, session_id: str, relay: Annotated[Relay, Depends(the_relay)], headers: Headers
) -> RelayViewer:
    """The relay session `session_id` of `room`; 404 when it ended or never was."""
    viewer = relay.viewers.get(session_id)
    if viewer is None or viewer.room != room:
        raise Refused(
            problem(404, "No such session", "the session has ended or never existed", headers)
        )
    return viewer


TheRelay = Annotated[Relay, Depends(the_relay)]
Viewer = Annotated[RelayViewer, Depends(relay_viewer)]


@routes.options("/relay/{room}")
@routes.options("/relay/{room}/{session_id}")
async def relay_options(headers: Headers) -> Response:
    return Response(status_code=204, headers=headers)


@routes.post("/relay/{room}")
async def relay_join(
    relay: TheRelay,
    room: Room,
    grant: PupilGrant,
    request: Request,
    service: Service,
    headers: Headers,
) -> Response:
    runtime = service.rooms[room]
    seat = admit(service, request, room, grant, headers)  # as WHEP
    if not isinstance(seat, joining.Seat):
        return seat
    try:
        viewer, room_relay = await relay.join(
            runtime, seat, user_agent=request.headers.get("user-agent", "")
        )
    except JanusError as exc:
        logger.warning("relay join in %s: %s", room, exc)
        return problem(
            503,
            "Relay unavailable",
            "Máy chủ phát lại đang bận, em thử lại sau ít phút.",
            {**headers, "Retry-After": "5"},
        )
    body = {
        "janus": relay.public_url,
        "mountpoint": room_relay.mountpoint.id,
        "token": viewer.token,
        "session": viewer.id,
        "ice_servers": [s.as_json() for s in service.ice_servers(f"{room}.relay")],
        "beat_seconds": relay.settings.beat_seconds,
    }
    return JSONResponse(
        body,
        status_code=201,
        headers={**headers, "Location": f"/relay/{room}/{viewer.id}", "Cache-Control": "no-store"},
    )


@routes.post("/relay/{room}/{session_id}")
async def relay_beat(
    relay: TheRelay,
    viewer: Viewer,
    service: Service,
    headers: Headers,
    janus: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """The page still watches (`?janus=`: in this Janus session)."""
    runtime = service.rooms.get(viewer.room)
    if runtime is None or not runtime.live:
        await relay.leave(viewer.id)
        return problem(404, "No such session", "the lesson has ended", headers)
    relay.beat(viewer.id, janus)
    return Response(status_code=204, headers=headers)


@routes.delete("/relay/{room}/{session_id}")
async def relay_leave(relay: TheRelay, viewer: Viewer, headers: Headers) -> Response:
    await relay.leave(viewer.id)
    return Response(status_code=204, headers=headers)
