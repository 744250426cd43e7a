"""Joining through the Janus relay (`[relay]`): `POST /relay/{room}` with the join link as
the bearer (`?save_data=1` as WHEP) gives the page Janus's address, the mountpoint and a
token. The session resource `/relay/{room}/{session}` then works like WHEP's: `GET` says
what the viewer gets (and which Janus substream of each video mid to ask for), `PATCH`
`{"save_data": …}`, `POST` beats (with `{"link": …}`, what the page measured, it answers
the state as `GET` does), `DELETE` leaves."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.access import joining
from edge.access.rules import problem
from edge.live.relay import Relay, RelayViewer
from edge.web.deps import PupilGrant, Refused, Room, Service, admit, cors, json_body
from webrtc import PageReport
from webrtc.relay import JanusError

logger = logging.getLogger(__name__)

routes = APIRouter()
Headers = Annotated[dict[str, str], Depends(cors("GET, POST, PATCH, DELETE, OPTIONS"))]


class LinkMeasure(BaseModel):
    """What the page's `getStats` showed since its last report."""

    model_config = ConfigDict(extra="forbid")
    interval: float = Field(ge=0.2, le=60, description="seconds covered")
    bytes: int = Field(ge=0, le=10**9, description="media bytes received")
    packets: int = Field(ge=0, le=10**7, description="video packets received")
    lost: int = Field(ge=0, le=10**7, description="video packets lost")
    rtt: float | None = Field(None, ge=0, le=60, description="candidate pair's round trip, s")


class BeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link: LinkMeasure


class Wishes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    save_data: bool


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
            runtime,
            seat,
            user_agent=request.headers.get("user-agent", ""),
            save_data=request.query_params.get("save_data", "") in ("1", "true"),
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
        "state": viewer.state(),
    }
    return JSONResponse(
        body,
        status_code=201,
        headers={**headers, "Location": f"/relay/{room}/{viewer.id}", "Cache-Control": "no-store"},
    )


def _state(viewer: RelayViewer, headers: dict[str, str]) -> Response:
    return JSONResponse(viewer.state(), headers={**headers, "Cache-Control": "no-store"})


@routes.get("/relay/{room}/{session_id}")
async def relay_state(viewer: Viewer, headers: Headers) -> Response:
    """What the viewer gets now (as WHEP's session resource), and Janus's substreams."""
    return _state(viewer, headers)


@routes.patch("/relay/{room}/{session_id}")
async def relay_wishes(
    viewer: Viewer, wishes: Annotated[Wishes, Depends(json_body(Wishes, 1024))], headers: Headers
) -> Response:
    """`{"save_data": true}` caps the viewer at the cheapest renditions."""
    viewer.choice.set_save_data(wishes.save_data)
    return Response(status_code=204, headers=headers)


@routes.post("/relay/{room}/{session_id}")
async def relay_beat(
    relay: TheRelay,
    viewer: Viewer,
    service: Service,
    request: Request,
    headers: Headers,
    janus: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """The page still watches (`?janus=`: in this Janus session); with a JSON body
    `{"link": …}` it also says what it measured, and gets the state back."""
    runtime = service.rooms.get(viewer.room)
    if runtime is None or not runtime.live:
        await relay.leave(viewer.id)
        return problem(404, "No such session", "the lesson has ended", headers)
    relay.beat(viewer.id, janus)
    if request.headers.get("content-type") is None:
        return Response(status_code=204, headers=headers)
    body = await json_body(BeatBody, 1024)(request)
    link = body.link
    relay.report(viewer, PageReport(link.interval, link.bytes, link.packets, link.lost, link.rtt))
    return _state(viewer, headers)


@routes.delete("/relay/{room}/{session_id}")
async def relay_leave(relay: TheRelay, viewer: Viewer, headers: Headers) -> Response:
    await relay.leave(viewer.id)
    return Response(status_code=204, headers=headers)
