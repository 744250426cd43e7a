"""The classroom channel of a pupil's page, whatever path its media takes, and a turn to
speak (WHIP).

- `POST /classroom/{room}` (the join link as the bearer, `?as=` on a class link, body
  `{"device": "..."}`, an id the page keeps for this tab): 201 `{"channel", "events"}`.
  WHEP's 401/403/404/409/429 otherwise.
- `GET /classroom/{room}/{channel}/events`: Server-Sent Events, each a JSON message
  (`hello`, `hand`, `sent`, `speak`, `removed`, `ended`); while it is open the pupil is
  present. A reconnect within `GRACE` seconds resumes the channel; after that, 404 and
  the page opens a new one.
- `POST /classroom/{room}/{channel}` (bearer): `{"type": "hand", "up": true}` or
  `{"type": "message", "text": "..."}`; `DELETE` leaves.
- `POST /whip/{room}?channel=...` (bearer, an SDP offer of one sending audio line): the
  microphone of the device the teacher allowed to speak, for that turn; 403 for anyone
  else. `DELETE /whip/{room}/{session}` ends it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from edge.access import joining
from edge.access.rules import problem
from edge.access.tokens import Grant
from edge.live.classroom import MESSAGE_CHARS, Channel
from edge.web.deps import Cors, PupilGrant, Refused, Room, Service, admit, json_body
from edge.web.whep import SDP, read_offer
from webrtc import OfferError

KEEPALIVE_SECONDS = 15.0

routes = APIRouter()


class Opening(BaseModel):
    """`{"device": "..."}`: the page's id for this tab, so a reopened channel is the
    same participant (a class link's pupil is one per device)."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field("", max_length=64, pattern=r"^([A-Za-z0-9_-]{8,64})?$")


class Said(BaseModel):
    """A page's message: a hand up or down, or a message to the teacher."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["hand", "message"]
    up: bool = False
    text: str = Field("", max_length=MESSAGE_CHARS * 4)


def page_channel(room: Room, channel_id: str, service: Service, headers: Cors) -> Channel:
    """The page's channel `channel_id` in `room`; 404 when it closed or never was."""
    channel = service.rooms[room].classroom.channels.get(channel_id)
    if channel is None or channel.implicit:
        raise Refused(
            problem(404, "No such channel", "the channel has closed; open a new one", headers)
        )
    return channel


PageChannel = Annotated[Channel, Depends(page_channel)]


def own_channel(channel: PageChannel, grant: PupilGrant, headers: Cors) -> Channel:
    """The page's channel, asked for with the link that opened it; 403 else."""
    if not _same_link(channel, grant):
        raise Refused(problem(403, "Forbidden", "this channel belongs to another link", headers))
    return channel


OwnChannel = Annotated[Channel, Depends(own_channel)]


def _same_link(channel: Channel, grant: Grant) -> bool:
    return channel.link == joining.link_of(grant)


@routes.post("/classroom/{room}")
async def open_channel(
    room: Room,
    grant: PupilGrant,
    wish: Annotated[Opening, Depends(json_body(Opening, 1024))],
    request: Request,
    service: Service,
    headers: Cors,
) -> Response:
    runtime = service.rooms[room]
    seat = admit(service, request, room, grant, headers)  # as WHEP
    if not isinstance(seat, joining.Seat):
        return seat
    classroom = runtime.classroom
    device = wish.device or secrets.token_urlsafe(12)
    key = seat.pupil_id if seat.verified and seat.pupil_id else f"device:{device}"
    pages = [c for c in classroom.channels.values() if not c.implicit]
    again = any(c.device == device and c.key == key for c in pages)
    crowded = joining.crowded(service, seat, [c.info() for c in pages], headers)
    if crowded is not None and not again:
        return crowded
    if len(pages) >= service.config.site.webrtc.max_viewers and not again:
        return problem(429, "Too many in the classroom", "Lớp học đã đầy.", headers)
    channel = classroom.reopen(
        Channel(
            id=secrets.token_urlsafe(16),
            key=key,
            room=room,
            class_name=grant.class_name,
            pupil_id=seat.pupil_id,
            verified=seat.verified,
            address=seat.address,
            link=seat.link,
            user_agent=request.headers.get("user-agent", "")[:300],
            device=device,
        )
    )
    events = f"/classroom/{room}/{channel.id}/events"
    return JSONResponse(
        {"channel": channel.id, "events": events, "grace_seconds": 20},
        status_code=201,
        headers={
            **headers,
            "Location": f"/classroom/{room}/{channel.id}",
            "Cache-Control": "no-store",
        },
    )


@routes.get("/classroom/{room}/{channel_id}/events")
async def channel_events(
    channel: PageChannel, room: Room, request: Request, service: Service, headers: Cors
) -> Response:
    classroom = service.rooms[room].classroom
    classroom.stream_opened(channel)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            quiet = 0.0
            while not await request.is_disconnected():
                while channel.outbox:
                    yield f"data: {json.dumps(channel.outbox.popleft(), ensure_ascii=False)}\n\n"
                if channel.closed:
                    return
                channel.arrived.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await channel.arrived.wait()
                    quiet = 0.0
                except TimeoutError:
                    quiet += 1.0
                    if quiet >= KEEPALIVE_SECONDS:
                        quiet = 0.0
                        yield ": still here\n\n"
        finally:
            classroom.stream_closed(channel)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={**headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@routes.post("/classroom/{room}/{channel_id}")
async def channel_said(
    channel: OwnChannel,
    room: Room,
    said: Annotated[Said, Depends(json_body(Said, 4096))],
    service: Service,
    headers: Cors,
) -> Response:
    if not service.rooms[room].classroom.message(channel, said.model_dump()):
        return problem(
            429, "Too many messages", "Em gửi nhanh quá, chờ một chút rồi gửi lại.",
            {**headers, "Retry-After": "10"},
        )  # fmt: skip
    return Response(status_code=204, headers=headers)


@routes.delete("/classroom/{room}/{channel_id}")
async def channel_leave(
    channel: OwnChannel, room: Room, service: Service, headers: Cors
) -> Response:
    service.rooms[room].classroom.leave(channel.id)
    return Response(status_code=204, headers=headers)


@routes.options("/classroom/{room}")
@routes.options("/classroom/{room}/{channel_id}")
@routes.options("/whip/{room}")
@routes.options("/whip/{room}/{session_id}")
async def channel_options(headers: Cors) -> Response:
    return Response(status_code=204, headers={**headers, "Accept-Post": SDP})


@routes.post("/whip/{room}")
async def whip_post(
    room: Room, grant: PupilGrant, request: Request, service: Service, headers: Cors
) -> Response:
    """A pupil's microphone for the turn the teacher gave their device."""
    classroom = service.rooms[room].classroom
    channel = classroom.channels.get(request.query_params.get("channel", ""))
    mine = channel is not None and not channel.implicit and _same_link(channel, grant)
    if channel is None or not mine or not classroom.may_talk(channel):
        return problem(403, "Not allowed to speak", "Em chưa được thầy cô mời phát biểu.", headers)
    offer = await read_offer(request, headers)
    if isinstance(offer, Response):
        return offer
    try:
        talk, answer = await service.start_talk(room, channel, offer)
    except OfferError as exc:
        return problem(exc.status, exc.title, exc.detail, headers)
    return Response(
        answer,
        status_code=201,
        media_type=SDP,
        headers={**headers, "Location": f"/whip/{room}/{talk.id}", "ETag": f'"{talk.id}"'},
    )


@routes.delete("/whip/{room}/{session_id}")
async def whip_delete(room: Room, session_id: str, service: Service, headers: Cors) -> Response:
    talk = service.talks.get(session_id)
    if talk is None or talk.room != room:
        return problem(404, "No such session", "the session has ended or never existed", headers)
    await service.end_talk(session_id)
    return Response(status_code=200, headers=headers)
