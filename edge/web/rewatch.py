"""Re-watching recorded lessons: `GET /recordings/{class}` for holders of a valid class or
pupil link of that class (and staff).

The page asks `GET /api/recordings/{class}` (its join token as the bearer) for the
class's recent lessons; every file comes with a signed URL under `/media/` that expires
after a few hours, so a `<video>` can play it (with HTTP range requests) without the
token in each request. Recordings are never public: no valid link, no list, no file.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from edge.access.rules import bearer, is_staff, problem
from edge.access.tokens import Grant, TokenError
from edge.recording.recordings import LessonRecord, MediaFile
from edge.web.deps import Refused, Service
from edge.web.pages import page

if TYPE_CHECKING:
    from edge.live.service import EdgeService

URL_SECONDS = 6 * 3600  # a media URL works this long
LISTED_DAYS = 60  # lessons listed, the newest first
LESSON_DAY = re.compile(r"-(\d{8})-\d{4,6}$")
FILE_NAME = re.compile(r"^(presenter|presentation|lesson)(-\d{1,3})?\.mp4$")


routes = APIRouter()


def grant_for(service: EdgeService, token: str | None) -> Grant | None:
    if not token:
        return None
    try:
        return service.gate.admit(token)
    except TokenError:
        return None


def listing(service: EdgeService, class_name: str) -> list[dict[str, object]]:
    zone = service.config.zone
    today = service.clock.now().astimezone(zone).date()
    since = (today - dt.timedelta(days=LISTED_DAYS)).strftime("%Y%m%d")
    expires = int(time.time()) + URL_SECONDS

    def media_url(lesson_id: str, media: MediaFile, expires: int) -> str:
        path = f"{lesson_id}/{media.name}"
        signature = service.signer.sign(f"{path}:{expires}")
        return f"/media/{path}?e={expires}&s={signature}"

    found: list[tuple[dt.datetime, dict[str, object]]] = []
    for lesson_id in service.recordings.lesson_ids():
        day = LESSON_DAY.search(lesson_id)
        if day is None or day.group(1) < since:
            continue
        record = service.recordings.read(lesson_id)
        if record is None or record.class_name != class_name or record.state != "complete":
            continue
        folder = service.recordings.folder(lesson_id)
        if not any((folder / f.name).is_file() for f in record.media()):
            continue  # its local copy is gone (the library keeps it)
        found.append((record.planned_start, _entry(record, expires, media_url, zone)))
    return [entry for _, entry in sorted(found, key=lambda x: x[0], reverse=True)]


def class_viewer(class_name: str, request: Request, service: Service) -> Grant | None:
    """The bearer's link, when it is of `class_name` (401, 403 else); None: staff."""
    token = bearer(request)
    if is_staff(request, service.staff) and token is None:
        return None
    grant = grant_for(service, token)
    if grant is None:
        raise Refused(problem(401, "Unauthorized", "a valid class or pupil link is needed"))
    if grant.class_name != class_name:
        raise Refused(problem(403, "Forbidden", "this link is for another class"))
    return grant


ClassViewer = Depends(class_viewer)


@routes.get("/api/recordings/{class_name}", dependencies=[ClassViewer])
async def recordings_list(class_name: str, service: Service) -> Response:
    body: dict[str, object] = {"class": class_name, "school": service.config.site.school}
    body["lessons"] = listing(service, class_name)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@routes.get("/recordings/{class_name}", response_class=HTMLResponse)
async def recordings_page(
    service: Service, class_name: str, request: Request, t: str = ""
) -> Response:
    grant = grant_for(service, t)
    if grant is None and not is_staff(request, service.staff):
        return HTMLResponse(_page_error(401), status_code=401)
    if grant is not None and grant.class_name != class_name:
        return HTMLResponse(_page_error(403), status_code=403)
    return page(
        "recordings.html",
        {"class": class_name, "token": t, "school": service.config.site.school},
    )


@routes.get("/media/{lesson_id}/{name}")
async def media(service: Service, lesson_id: str, name: str, e: int = 0, s: str = "") -> Response:
    if not FILE_NAME.match(name) or e < time.time():
        return problem(403, "Forbidden", "this address has expired; open the list again")
    if not service.signer.signed(f"{lesson_id}/{name}:{e}", s):
        return problem(403, "Forbidden", "not a valid address")
    try:
        path = service.recordings.folder(lesson_id) / name
    except ValueError:
        return problem(404, "Not found", "no such recording")
    if not path.is_file():
        return problem(404, "Not found", "this recording is no longer kept on this machine")
    return FileResponse(
        path,
        media_type="video/mp4",
        headers={"Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes"},
    )


def _entry(
    record: LessonRecord,
    expires: int,
    media_url: Callable[[str, MediaFile, int], str],
    zone: dt.tzinfo,
) -> dict[str, object]:
    parts = []
    for part in record.parts:
        files = {}
        for media in part.files:
            if media.size:
                files[media.kind] = {
                    "url": media_url(record.lesson, media, expires),
                    "offset": media.offset,
                    "duration": media.duration,
                }
        if files:
            parts.append({"number": part.number, **files})
    composed = record.composed
    return {
        "lesson": record.lesson,
        "subject": record.subject,
        "teacher": record.teacher,
        "period": record.period,
        "session": record.session,
        "start": record.planned_start.astimezone(zone).isoformat(),
        "duration": round(record.duration),
        "parts": parts,
        "download": media_url(record.lesson, composed, expires) if composed else None,
    }


def _page_error(status: int) -> str:
    message = (
        "Đường link này là của lớp khác."
        if status == 403
        else "Đường link không còn hiệu lực. Em hãy xin thầy cô đường link mới."
    )
    return (
        "<!doctype html><html lang='vi'><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Xem lại bài giảng</title><body style='font-family:sans-serif;padding:2rem'>"
        f"<h1>Xem lại bài giảng</h1><p>{message}</p></body></html>"
    )
