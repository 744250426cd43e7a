"""WHEP (RFC 9725 style) for the pupils' players: `POST /whep/{room}` with the join link
as the bearer and an SDP offer, then `/whep/{room}/{session}`: GET (what the viewer
gets now), PATCH (trickled candidates, or `{"save_data": …}`), DELETE (leave)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from edge.access import joining
from edge.access.rules import bounded_body, problem
from edge.web.deps import PupilGrant, Refused, Room, Service, admit, cors
from webrtc import MAX_OFFER_BYTES, OfferError, Viewer
from webrtc.client_json import parse_client_json

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
JSON = "application/json"
ACCEPT_PATCH = f"{SDPFRAG}, {JSON}"
JOIN_METHODS = "POST, OPTIONS"
SESSION_METHODS = "GET, PATCH, DELETE, OPTIONS"
VIDEO_LINES = ("camera", "board")  # the order of `Room.feeds().video`

routes = APIRouter()
JoinCors = Annotated[dict[str, str], Depends(cors(JOIN_METHODS))]
SessionCors = Annotated[dict[str, str], Depends(cors(SESSION_METHODS))]


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def viewer_session(room: str, session_id: str, service: Service, headers: SessionCors) -> Viewer:
    """The session `session_id` of `room`; 404 when it ended or never was."""
    session = service.sessions.sessions.get(session_id)
    if session is None or session.info.get("room") != room:
        raise Refused(
            problem(404, "No such session", "the session has ended or never existed", headers)
        )
    return session


Session = Annotated[Viewer, Depends(viewer_session)]


async def read_offer(request: Request, headers: dict[str, str]) -> str | Response:
    """The request's SDP offer (WHEP's, WHIP's), or the 415, 413 or 400 to answer."""
    if content_type(request) != SDP:
        return problem(
            415,
            "Unsupported media type",
            f"the offer must be sent as {SDP}",
            {**headers, "Accept-Post": SDP},
        )
    body = await bounded_body(request, MAX_OFFER_BYTES)
    if body is None:
        return problem(
            413, "Offer too large", f"an SDP offer is at most {MAX_OFFER_BYTES} bytes", headers
        )
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return problem(400, "Malformed SDP", "the offer is not UTF-8 text", headers)


@routes.options("/whep/{room}")
async def whep_options(headers: JoinCors) -> Response:
    return Response(status_code=204, headers={**headers, "Accept-Post": SDP})


@routes.post("/whep/{room}")
async def whep_post(
    room: Room, grant: PupilGrant, request: Request, service: Service, headers: JoinCors
) -> Response:
    offer = await read_offer(request, headers)
    if isinstance(offer, Response):
        return offer
    started = time.perf_counter()
    runtime = service.rooms[room]
    seat = admit(service, request, room, grant, headers)
    if not isinstance(seat, joining.Seat):
        return seat
    try:
        session, answer = await service.sessions.create(
            room,
            offer,
            save_data=request.query_params.get("save_data", "") in ("1", "true"),
            user_agent=request.headers.get("user-agent", ""),
            **seat.info(),
        )
    except OfferError as exc:
        return problem(exc.status, exc.title, exc.detail, headers)
    if seat.channel is not None:  # linked at once: a removal before it connects ends it too
        runtime.classroom.link_media(seat.channel, session.id, session)
    response = Response(
        answer,
        status_code=201,
        media_type=SDP,
        headers={
            **headers,
            "Location": f"/whep/{room}/{session.id}",
            "ETag": f'"{session.id}"',
            "Accept-Patch": ACCEPT_PATCH,
            "Server-Timing": server_timing(
                {"answer": (time.perf_counter() - started) * 1000, **session.answer_ms}
            ),
        },
    )
    for server in service.ice_servers(room):  # TURN credentials minted for this session
        for value in server.link_header():
            response.headers.append("Link", value)
    return response


def server_timing(durations: dict[str, float]) -> str:
    """`Server-Timing` (W3C): how long the answer took here, in ms (`answer`, of which
    `negotiate` and `gather`), for the page's own measures and bench/first_picture.py."""
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in durations.items())


@routes.options("/whep/{room}/{session_id}")
async def session_options(headers: SessionCors) -> Response:
    return Response(status_code=204, headers={**headers, "Accept-Patch": ACCEPT_PATCH})


@routes.get("/whep/{room}/{session_id}")
async def session_state(session: Session, headers: SessionCors) -> Response:
    """What the viewer gets now: renditions per video line, quality level, whether the
    link is poor, bytes sent (an extension of WHEP for the pupil's page)."""
    state = await session.status()
    if not state:
        return problem(404, "No such session", "the session has ended", headers)
    state["video"] = dict(zip(VIDEO_LINES, state["video"], strict=True))
    return JSONResponse(state, headers={**headers, "Cache-Control": "no-store"})


@routes.patch("/whep/{room}/{session_id}")
async def session_patch(
    session: Session, request: Request, service: Service, headers: SessionCors
) -> Response:
    """Trickled candidates (sdpfrag), or the viewer's wishes as JSON:
    `{"save_data": true}` caps the session at the cheapest renditions."""
    kind = content_type(request)
    if kind not in (SDPFRAG, JSON):
        return problem(
            415,
            "Unsupported media type",
            f"send candidates as {SDPFRAG} or wishes as {JSON}",
            {**headers, "Accept-Patch": ACCEPT_PATCH},
        )
    body = await bounded_body(request, MAX_OFFER_BYTES)
    if body is None:
        return problem(413, "Fragment too large", "the fragment is too large", headers)
    if kind == JSON:
        try:
            wishes = parse_client_json(body)
        except ValueError:
            wishes = None
        if not isinstance(wishes, dict) or not isinstance(wishes.get("save_data"), bool):
            return problem(400, "Malformed request", 'expected {"save_data": true|false}', headers)
        session.set_save_data(wishes["save_data"])
        return Response(status_code=204, headers=headers)
    try:
        await service.sessions.trickle(session.id, body.decode("utf-8", "replace"))
    except KeyError:
        return problem(404, "No such session", "the session has ended", headers)
    except OfferError as exc:
        return problem(exc.status, exc.title, exc.detail, headers)
    return Response(status_code=204, headers=headers)


@routes.delete("/whep/{room}/{session_id}")
async def session_delete(session: Session, service: Service, headers: SessionCors) -> Response:
    await service.sessions.delete(session.id)
    return Response(status_code=200, headers=headers)
