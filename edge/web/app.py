"""The HTTP face of the service: WHEP, the pupil's page, health."""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from edge.access import joining
from edge.access import rules as access
from edge.access.connections import BodyTimeout
from edge.access.rules import problem
from edge.access.tokens import Grant
from edge.live import outlook, relay
from edge.live.outlook import not_live
from edge.live.service import EdgeService
from edge.live.state import room_state
from edge.web import admin, console, lesson_commands, principal, rewatch
from edge.web.deps import Refused, Room, StaffOnly
from edge.web.metrics import CONTENT_TYPE, exposition
from edge.web.pages import STATIC, page
from webrtc import MAX_OFFER_BYTES, OfferError, ViewerSession
from webrtc.client_json import parse_client_json

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
JSON = "application/json"
ACCEPT_PATCH = f"{SDPFRAG}, {JSON}"
SESSION_METHODS = "GET, PATCH, DELETE, OPTIONS"
VIDEO_LINES = ("camera", "board")  # the order of `Room.feeds().video`


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def create_app(service: EdgeService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="classroom-edge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service  # for the dependencies (edge/web/deps.py)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return exc.response

    @app.exception_handler(BodyTimeout)
    async def body_timeout(request: Request, exc: BodyTimeout) -> JSONResponse:
        return problem(408, "Request timeout", str(exc), {"Connection": "close"})

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is left to read it; no traceback either

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(rewatch.router(service))
    app.include_router(console.router(service))
    app.include_router(principal.router(service))
    app.include_router(admin.router(service))
    app.include_router(relay.router(service))
    cors = service.config.site.http.cors_origins

    def cors_headers(request: Request, methods: str) -> dict[str, str]:
        return access.cors_headers(request, cors, methods)

    @app.options("/whep/{room}")
    async def whep_options(room: str, request: Request) -> Response:
        headers = cors_headers(request, "POST, OPTIONS")
        headers["Accept-Post"] = SDP
        return Response(status_code=204, headers=headers)

    @app.post("/whep/{room}")
    async def whep_post(room: str, request: Request) -> Response:
        headers = cors_headers(request, "POST, OPTIONS")
        runtime = service.rooms.get(room)
        if runtime is None:
            return problem(404, "Unknown room", f"there is no room {room!r} here", headers)
        grant = joining.grant_for_room(service, request, room, headers)
        if not isinstance(grant, Grant):
            return grant
        if _content_type(request) != SDP:
            return problem(
                415,
                "Unsupported media type",
                f"the offer must be sent as {SDP}",
                {**headers, "Accept-Post": SDP},
            )
        body = await access.bounded_body(request, MAX_OFFER_BYTES)
        if body is None:
            return problem(
                413, "Offer too large", f"an SDP offer is at most {MAX_OFFER_BYTES} bytes", headers
            )
        if not runtime.live:
            return not_live(service, room, headers)
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            return problem(400, "Malformed SDP", "the offer is not UTF-8 text", headers)
        seat = joining.seat(service, request, room, grant, headers)
        if not isinstance(seat, joining.Seat):
            return seat
        try:
            session, answer = await service.sessions.create(
                runtime.feeds(),
                offer,
                save_data=request.query_params.get("save_data", "") in ("1", "true"),
                room=room,
                user_agent=request.headers.get("user-agent", ""),
                **seat.info(),
            )
        except OfferError as exc:
            return problem(exc.status, exc.title, exc.detail, headers)
        location = f"/whep/{room}/{session.id}"
        response = Response(
            answer,
            status_code=201,
            media_type=SDP,
            headers={
                **headers,
                "Location": location,
                "ETag": f'"{session.id}"',
                "Accept-Patch": ACCEPT_PATCH,
            },
        )
        for server in service.ice_servers(room):  # TURN credentials minted for this session
            for value in server.link_header():
                response.headers.append("Link", value)
        return response

    def lesson_outlook(room: str, staff: bool = False) -> dict[str, object]:
        return outlook.lesson_outlook(service, room, staff)

    @app.get("/api/rooms/{room}/now")
    async def room_now(room: str, request: Request) -> Response:
        """The lesson live now, the next one and the one that ended, for the pupil's
        waiting room (a join token) or staff."""
        headers = cors_headers(request, "GET, OPTIONS")
        if room not in service.rooms:
            return problem(404, "Unknown room", f"there is no room {room!r} here", headers)
        if not is_staff(request):
            grant = joining.grant_for_room(service, request, room, headers)
            if not isinstance(grant, Grant):
                return grant
        return JSONResponse(lesson_outlook(room), headers={**headers, "Cache-Control": "no-store"})

    def is_staff(request: Request) -> bool:
        return access.is_staff(request, service.staff)

    async def lesson_command(
        room: str, command: lesson_commands.Command, wish: lesson_commands.LessonWish
    ) -> Response:
        lesson = await lesson_commands.run(service.scheduler, room, command, wish)
        if isinstance(lesson, JSONResponse):
            return lesson
        status = 201 if command == "start" else 200
        return JSONResponse(lesson.as_json(service.config.zone), status_code=status)

    @app.get("/api/rooms/{room}/lesson", dependencies=[StaffOnly])
    async def lesson_state(room: Room) -> Response:
        state = room_state(service, room)
        body = {
            **state.outlook(service.config.zone, staff=True),
            "recording": state.recording,
            "warnings": service.warnings(),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.post("/api/rooms/{room}/lesson", dependencies=[StaffOnly])
    async def lesson_start(room: Room, wish: lesson_commands.LessonBody) -> Response:
        """Start an extra lesson now: `{"minutes": 45, "subject": "", "teacher": ""}`."""
        return await lesson_command(room, "start", wish)

    @app.post("/api/rooms/{room}/lesson/end", dependencies=[StaffOnly])
    async def lesson_end(room: Room, wish: lesson_commands.LessonBody) -> Response:
        return await lesson_command(room, "end", wish)

    @app.post("/api/rooms/{room}/lesson/extend", dependencies=[StaffOnly])
    async def lesson_extend(room: Room, wish: lesson_commands.LessonBody) -> Response:
        """`{"minutes": 10}`: up to the next period's bell."""
        return await lesson_command(room, "extend", wish)

    @app.get("/control/{room}")
    async def control_page(room: str) -> Response:
        """The old teacher's page: the console does all it did (links keep working)."""
        return RedirectResponse(f"/console/{quote(room, safe='')}", status_code=301)

    def find_session(room: str, session_id: str) -> ViewerSession | None:
        session = service.sessions.sessions.get(session_id)
        return session if session is not None and session.info.get("room") == room else None

    def no_session(headers: dict[str, str]) -> Response:
        return problem(404, "No such session", "the session has ended or never existed", headers)

    @app.options("/whep/{room}/{session_id}")
    async def session_options(room: str, session_id: str, request: Request) -> Response:
        headers = cors_headers(request, SESSION_METHODS)
        headers["Accept-Patch"] = ACCEPT_PATCH
        return Response(status_code=204, headers=headers)

    @app.get("/whep/{room}/{session_id}")
    async def session_state(room: str, session_id: str, request: Request) -> Response:
        """What the viewer gets now: renditions per video line, quality level, whether
        the link is poor, bytes sent (an extension of WHEP for the pupil's page)."""
        headers = cors_headers(request, SESSION_METHODS)
        session = find_session(room, session_id)
        if session is None:
            return no_session(headers)
        state = session.describe()
        state["video"] = dict(zip(VIDEO_LINES, state["video"], strict=True))
        return JSONResponse(state, headers={**headers, "Cache-Control": "no-store"})

    @app.patch("/whep/{room}/{session_id}")
    async def session_patch(room: str, session_id: str, request: Request) -> Response:
        """Trickled candidates (sdpfrag), or the viewer's wishes as JSON:
        `{"save_data": true}` caps the session at the cheapest renditions."""
        headers = cors_headers(request, SESSION_METHODS)
        session = find_session(room, session_id)
        if session is None:
            return no_session(headers)
        content_type = _content_type(request)
        if content_type not in (SDPFRAG, JSON):
            return problem(
                415,
                "Unsupported media type",
                f"send candidates as {SDPFRAG} or wishes as {JSON}",
                {**headers, "Accept-Patch": ACCEPT_PATCH},
            )
        body = await access.bounded_body(request, MAX_OFFER_BYTES)
        if body is None:
            return problem(413, "Fragment too large", "the fragment is too large", headers)
        if content_type == JSON:
            try:
                wishes = parse_client_json(body)
            except ValueError:
                wishes = None
            if not isinstance(wishes, dict) or not isinstance(wishes.get("save_data"), bool):
                return problem(
                    400, "Malformed request", 'expected {"save_data": true|false}', headers
                )
            session.set_save_data(wishes["save_data"])
            return Response(status_code=204, headers=headers)
        try:
            await service.sessions.trickle(session_id, body.decode("utf-8", "replace"))
        except KeyError:
            return no_session(headers)
        except OfferError as exc:
            return problem(exc.status, exc.title, exc.detail, headers)
        return Response(status_code=204, headers=headers)

    @app.delete("/whep/{room}/{session_id}")
    async def session_delete(room: str, session_id: str, request: Request) -> Response:
        headers = cors_headers(request, SESSION_METHODS)
        if find_session(room, session_id) is None:
            return no_session(headers)
        await service.sessions.delete(session_id)
        return Response(status_code=200, headers=headers)

    @app.get("/join", response_class=HTMLResponse)
    @app.get("/join/", response_class=HTMLResponse)
    async def join_without_token() -> Response:
        return HTMLResponse(_link_error_page(), status_code=404)

    @app.get("/join/{token}", response_class=HTMLResponse)
    async def join_page(token: str, request: Request) -> Response:
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

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(exposition(service), media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def healthz(detail: bool = False) -> JSONResponse:
        health = service.health()
        if detail:
            health["process"] = service.process_counts()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    return app


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
