"""The pupil's page, `/join/{token}`: the link a pupil opens (their own, or the class's
with a name to pick). A bad link is a page in Vietnamese, never JSON."""

from __future__ import annotations

import html
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from edge.access import joining
from edge.web.deps import Service
from edge.web.pages import page

routes = APIRouter()


@routes.get("/join", response_class=HTMLResponse)
@routes.get("/join/", response_class=HTMLResponse)
async def join_without_token() -> Response:
    return HTMLResponse(_link_error_page(), status_code=404)


@routes.get("/join/{token}", response_class=HTMLResponse)
async def join_page(token: str, request: Request, service: Service) -> Response:
    clean = token.rstrip(LINK_TRAILERS)
    if clean != token and clean:  # a chat app took the "." or ")" after the link along
        return RedirectResponse(f"/join/{quote(clean)}", status_code=303)
    grant = joining.check_link(service, token, request)
    room = service.rooms.get(grant.room) if grant is not None else None
    if grant is None or room is None or grant.class_name != room.settings.class_name:
        if (wait := joining.link_wait(service, request, token)) is not None:
            return HTMLResponse(
                _link_error_page(TOO_MANY_ATTEMPTS),
                status_code=429,
                headers={"Retry-After": str(int(wait))},
            )
        return HTMLResponse(_link_error_page(), status_code=401 if grant is None else 404)
    pupil = service.gate.pupil(grant)
    classmates = (
        [
            {"key": service.pick_key(p), "name": p.name}
            for p in service.roster.pupils(grant.class_name)
        ]
        if pupil is None
        else []
    )
    config = {
        "whep": f"{service.base_url}/whep/{grant.room}",
        "classroom": f"{service.base_url}/classroom/{grant.room}",  # the classroom channel
        "whip": f"{service.base_url}/whip/{grant.room}",  # the microphone, when allowed
        "token": token,
        "room": grant.room,
        "class": grant.class_name,
        "school": service.config.site.school,
        "pupil": {"id": pupil.id, "name": pupil.name} if pupil else None,
        "classmates": classmates,  # a class link: the pupil picks their name
        "lang": "vi",
        "relay": service.relay is not None,  # play from Janus: POST /relay/{room}
        "ice_servers": [s.as_json() for s in service.ice_servers(grant.room)],
        "recordings": f"/recordings/{quote(grant.class_name)}?t={quote(token)}"
        if any(room.recorder is not None for room in service.rooms.values())
        else None,
    }
    return page("join.html", config)


LINK_TRAILERS = ".,;:!?)]}>'\"’”"
"""What may follow a link in a message and be copied with it; a token never ends so."""


LINK_NOT_VALID = (
    "Đường link không còn hiệu lực. Em hãy xin thầy cô đường link mới.",
    "This link is no longer valid. Please ask your teacher for a new one.",
)
TOO_MANY_ATTEMPTS = (
    "Có quá nhiều đường link sai từ máy này. Em chờ vài phút rồi mở lại đường link thầy cô gửi.",
    "Too many invalid links from this device. Wait a few minutes, then open the link "
    "your teacher sent again.",
)


def _link_error_page(message: tuple[str, str] = LINK_NOT_VALID) -> str:
    vietnamese, english = message
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Link không hợp lệ</title></head>"
        '<body style="font-family:sans-serif;padding:2rem;font-size:1.2rem">'
        f"<h1>Không vào được lớp học</h1><p>{html.escape(vietnamese)}</p>"
        f'<p lang="en" style="color:#555">{html.escape(english)}</p></body></html>'
    )
