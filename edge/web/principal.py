"""The principal's page (`/reports`, staff login): the day's attendance per class and
period, every pupil's detail, the week; downloads as CSV and XLSX. And the staff login
itself (`/login`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from edge.access.rules import bounded_body, client_address, is_staff, problem
from edge.access.staff import COOKIE, SESSION_SECONDS, HashingBusy, check_password_off_loop
from edge.school.reports import (
    DayReport,
    Rules,
    WeekRow,
    day_and_week,
    render_csv,
    render_html,
    render_xlsx,
)
from edge.web.deps import Service

if TYPE_CHECKING:
    from edge.live.service import EdgeService

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LOGIN_BODY_LIMIT = 4096  # a password and where to go next


def reports_for(
    service: EdgeService, day: dt.date, room: str | None
) -> tuple[DayReport, list[WeekRow]]:
    """The day's report and its school week's summary, from the running service."""
    site = service.config.site
    return day_and_week(
        site.school,
        day,
        [room] if room else sorted(service.config.rooms),
        lessons=service.store,
        roster=service.roster,
        attendance=service.attendance,
        zone=service.config.zone,
        rules=Rules(site.attendance.present_share, site.attendance.late_minutes),
        now=service.clock.now(),
    )


def _report_day(text: str) -> dt.date:
    # ValueError for a day too near the calendar's ends too: its week overflows datetime
    day = dt.date.fromisoformat(text)
    if not dt.date(1900, 1, 1) <= day <= dt.date(2999, 12, 31):
        raise ValueError(f"{text}: not a day of the years 1900 to 2999")
    return day


routes = APIRouter()


def today(service: EdgeService) -> dt.date:
    return service.clock.now().astimezone(service.config.zone).date()


def sorry(status: int, title: str, text: str) -> HTMLResponse:
    """A page that says, in Vietnamese, what was wrong with the address the principal
    opened, with the way back to today's report."""
    return HTMLResponse(
        '<!doctype html><html lang="vi"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<body style="font-family:sans-serif;max-width:30em;margin:3em auto;padding:0 1em">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        '<p><a href="/reports">Xem báo cáo hôm nay</a></p></body></html>',
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/reports")
async def reports_page(
    service: Service, request: Request, date: str = "", room: str = ""
) -> Response:
    if not is_staff(request, service.staff):
        return RedirectResponse("/login?next=/reports", status_code=303)
    try:
        day = _report_day(date) if date else today(service)
    except ValueError:
        return sorry(400, "Ngày không hợp lệ", f"“{date}” không phải là một ngày (năm-tháng-ngày).")
    if room and room not in service.config.rooms:
        return sorry(404, "Không có phòng này", f"Trường không có phòng “{room}”.")
    zone = service.config.zone
    body = await asyncio.to_thread(
        lambda: render_html(*reports_for(service, day, room or None), zone)
    )  # SQLite reads and building: never on the event loop, where the media runs
    query = f"date={day.isoformat()}" + (f"&room={quote(room)}" if room else "")
    rooms = "".join(
        f'<option value="{html.escape(r)}"{" selected" if r == room else ""}>{html.escape(r)}'
        "</option>"
        for r in sorted(service.config.rooms)
    )
    tools = (
        '<form method="get" style="margin:1em 0" class="no-print">'
        f'Ngày <input type="date" name="date" value="{day.isoformat()}"> '
        f'Phòng <select name="room"><option value="">tất cả</option>{rooms}</select> '
        "<button>Xem</button> "
        f'<a href="/reports/export?{query}&format=xlsx">Tải Excel (.xlsx)</a> · '
        f'<a href="/reports/export?{query}&format=csv">Tải CSV</a> · '
        '<a href="javascript:print()">In</a></form>'
        "<style>@media print { .no-print { display: none; } }</style>"
    )
    return HTMLResponse(
        body.replace("<body>", "<body>" + tools, 1), headers={"Cache-Control": "no-store"}
    )


@routes.get("/reports/export")
async def reports_export(
    service: Service, request: Request, date: str = "", room: str = "", format: str = "csv"
) -> Response:
    if not is_staff(request, service.staff):
        return problem(403, "Staff only", "log in at /login")
    try:
        day = _report_day(date) if date else today(service)
    except ValueError:
        return problem(400, "Malformed request", "date: YYYY-MM-DD")
    report, week = await asyncio.to_thread(reports_for, service, day, room or None)
    zone = service.config.zone
    name = f"diem-danh-{day.isoformat()}{'-' + room if room else ''}"
    if format == "xlsx":
        return Response(
            await asyncio.to_thread(render_xlsx, report, week, zone),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    if format == "csv":
        return Response(
            render_csv(report, zone),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return problem(400, "Malformed request", "format: csv or xlsx")


def login_form(
    service: EdgeService, target: str, message: str = "", status: int = 200
) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><html lang="vi"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Đăng nhập · classroom-edge</title>"
        '<body style="font-family:sans-serif;max-width:24em;margin:3em auto">'
        f"<h1>Đăng nhập</h1><p>{html.escape(service.config.site.school)}</p>{message}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{html.escape(target)}">'
        '<label>Mật khẩu cán bộ <input type="password" name="password" autofocus required>'
        "</label> <button>Vào</button></form></body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/login")
async def login_page(service: Service, next: str = "/reports", failed: int = 0) -> Response:
    target = next if next.startswith("/") and not next.startswith("//") else "/reports"
    return login_form(service, target, '<p style="color:#b00">Sai mật khẩu.</p>' if failed else "")


@routes.post("/login")
async def login(service: Service, request: Request) -> Response:
    address = client_address(request)
    wait = service.throttle.wait(address)
    if wait is not None:
        minutes = max(1, round(wait / 60))
        refused = login_form(
            service,
            "/reports",
            '<p style="color:#b00">Sai mật khẩu quá nhiều lần. '
            f"Hãy thử lại sau {minutes} phút.</p>",
            429,
        )
        refused.headers["Retry-After"] = str(int(wait))
        return refused
    # counted before anything is awaited, taken back if the password is right: guesses
    # sent at once cannot pass the limit together
    service.throttle.refused(address)
    body = await bounded_body(request, LOGIN_BODY_LIMIT)
    if body is None:
        return problem(413, "Too large", f"at most {LOGIN_BODY_LIMIT} bytes")
    form = parse_qs(body.decode(errors="replace"))
    password = form.get("password", [""])[0]
    target = form.get("next", ["/reports"])[0]
    if not target.startswith("/") or target.startswith("//"):
        target = "/reports"
    try:
        right = await check_password_off_loop(service.config.site.data_dir, password)
    except HashingBusy:
        service.throttle.forgive(address)  # not checked: not counted
        busy = login_form(
            service,
            target,
            '<p style="color:#b00">Máy chủ đang bận. Hãy thử lại sau ít giây.</p>',
            503,
        )
        busy.headers["Retry-After"] = "2"
        return busy
    if not right:
        return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
    service.throttle.forgive(address)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        service.staff.sessions.open(),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@routes.post("/logout")
async def logout(service: Service, request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie is not None:
        service.staff.sessions.end(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
