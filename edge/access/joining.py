"""Who may join a room's live lesson, the same for WHEP (`web`) and the relay (`relay`):
a valid link for this room's class (refused links are throttled per address and per
link, valid ones never), the pupil a class link's page picked (never verified), the
teacher's removals, and the caps per pupil, per class link and per address."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response

from edge.access.rules import bearer, client_address, problem
from edge.access.tokens import Grant, TokenError

if TYPE_CHECKING:
    from edge.live.service import EdgeService

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seat:
    """A join that may go ahead: who, and how sure we are of it."""

    grant: Grant
    pupil_id: str | None  # the link's pupil, or the one a class link's page picked
    verified: bool  # the pupil's own link; a pick on the class link never is
    address: str
    link: str  # "pupil:ID" or "class:CLASS": what the caps count
    channel: str | None = None  # the page's classroom channel this media plays for

    def info(self) -> dict[str, object]:
        """What a session carries about its viewer (attendance, the console, the caps)."""
        return {
            "class_name": self.grant.class_name,
            "pupil_id": self.pupil_id,
            "verified": self.verified,
            "address": self.address,
            "link": self.link,
            "channel": self.channel,
        }


def _throttle_keys(request: Request, token: str | None) -> tuple[str, ...]:
    address = f"address:{client_address(request)}"
    if token is None:
        return (address,)
    return (address, "link:" + hashlib.sha256(token.encode()).hexdigest()[:24])


def link_wait(service: EdgeService, request: Request, token: str | None) -> float | None:
    """Seconds to wait when this address or this link (`token`) was refused too often
    lately, else None: the same keys `check_link` counts refusals under."""
    return service.throttle.wait(*_throttle_keys(request, token))


def throttled(service: EdgeService, request: Request, headers: dict[str, str]) -> Response | None:
    """A 429 when this address or the request's bearer link was refused too often."""
    wait = link_wait(service, request, bearer(request))
    if wait is None:
        return None
    return problem(
        429,
        "Too many attempts",
        "Có quá nhiều đường link sai từ máy này. Em thử lại sau ít phút.",
        {**headers, "Retry-After": str(int(wait))},
    )


def check_link(service: EdgeService, token: str, request: Request) -> Grant | None:
    """The grant of a valid link; a refused one is counted against the address and the
    link. A valid link is never throttled: someone else's bad links cannot lock it out."""
    try:
        return service.gate.admit(token)
    except TokenError as exc:
        logger.info("refused link from %s: %s", client_address(request), exc)
        service.throttle.refused(*_throttle_keys(request, token))
        return None


def grant_for_room(
    service: EdgeService, request: Request, room: str, headers: dict[str, str]
) -> Grant | Response:
    """The grant of the request's link for `room`, or the 429/401 to answer. A link for
    another room, or naming a class other than the room's, is refused like a bad one."""
    token = bearer(request)
    grant = None if token is None else check_link(service, token, request)
    if grant is not None and grant.room == room:
        if grant.class_name == service.config.rooms[room].class_name:
            return grant
        logger.info("refused a link of class %s for room %s", grant.class_name, room)
    if grant is not None:
        service.throttle.refused(*_throttle_keys(request, token))
    if (waiting := throttled(service, request, headers)) is not None:
        return waiting
    return problem(
        401,
        "Unauthorized",
        "the join link is invalid or has expired",
        {**headers, "WWW-Authenticate": 'Bearer realm="classroom-edge"'},
    )


def _holders(service: EdgeService) -> Iterator[dict[str, object]]:
    """The info of every viewer this mini-PC serves now, built-in and relayed."""
    for session in list(service.sessions.sessions.values()):
        yield session.info
    if service.relay is not None:
        for viewer in list(service.relay.viewers.values()):
            yield viewer.info


def link_of(grant: Grant) -> str:
    """What a grant's link is, for the caps and for telling whose a channel is:
    "pupil:ID" (a pupil's own link) or "class:CLASS" (the class link)."""
    return f"pupil:{grant.pupil_id}" if grant.pupil_id is not None else f"class:{grant.class_name}"


def seat(
    service: EdgeService, request: Request, room: str, grant: Grant, headers: dict[str, str]
) -> Seat | Response:
    """Who joins on `grant`, or the 403/429 to answer: removed by the teacher, or a cap
    reached (`[webrtc] max_per_pupil`, `max_per_class_link`, `max_per_address`)."""
    address = client_address(request)
    pupil_id, verified = grant.pupil_id, grant.pupil_id is not None
    if pupil_id is None and request.query_params.get("as"):  # picked on the class link
        picked = service.classmate(grant.class_name, request.query_params["as"])
        pupil_id = picked.id if picked is not None else None
    joining = Seat(grant, pupil_id, verified, address, link_of(grant))
    if service.rooms[room].classroom.refuses(pupil_id, verified, address):
        return problem(
            403, "Removed from the lesson", "Thầy cô đã mời em ra khỏi tiết học này.", headers
        )
    return crowded(service, joining, _holders(service), headers) or joining


def crowded(
    service: EdgeService, seat: Seat, holders: Iterable[dict[str, object]], headers: dict[str, str]
) -> Response | None:
    """The 429 when `holders` (the infos of what is open now: media sessions, or pages'
    channels) already fill `seat`'s link or address (`[webrtc] max_per_pupil`,
    `max_per_class_link`, `max_per_address`); None: room for one more."""
    limits = service.config.site.webrtc
    verified, link, address = seat.verified, seat.link, seat.address
    same_link = same_address = 0
    for info in holders:
        same_link += info.get("link") == link
        same_address += info.get("address") == address
    cap = limits.max_per_pupil if verified else limits.max_per_class_link
    if same_link >= cap:
        detail = (
            f"Đường link của em đang mở trên {same_link} thiết bị. "
            "Em hãy đóng bớt một thiết bị rồi vào lại."
            if verified
            else "Đường link của lớp đã có quá nhiều người xem. "
            "Em hãy dùng đường link riêng của mình."
        )
        return problem(429, "Too many sessions on this link", detail, headers)
    if same_address >= limits.max_per_address:
        return problem(
            429,
            "Too many sessions from this address",
            "Có quá nhiều người xem từ cùng một mạng. Em thử lại sau ít phút.",
            headers,
        )
    return None
