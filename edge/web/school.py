"""The school hub (`[school_hub]`): what the rooms send (`POST /api/school/lessons`,
`/api/school/beat`, signed with each room's key) and what the principal and the IT staff
read (staff login): `/school` the day's periods of every class with the week, as CSV and
XLSX too (`/school/export`); `/school/rooms` every room now; `/school/district` the
week per grade for the district office. 404 on a process that is not the hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from edge.access.hubkey import sent_at, verify
from edge.access.rules import bounded_body, is_staff, problem
from edge.config.settings import SchoolHubSettings
from edge.school.hub import HeldLesson, HubStore
from edge.school.overview import (
    DISTRICT_HEADERS,
    PeriodLine,
    day_lines,
    district_rows,
    room_line,
)
from edge.school.reports import (
    DETAIL_HEADERS,
    HTML_STYLE,
    WEEK_HEADERS,
    WEEKDAYS,
    Cell,
    PeriodCells,
    render_cells_csv,
    render_school_xlsx,
    vietnamese,
    week_cells,
    week_of_cells,
    workbook,
)
from edge.web.deps import Service
from edge.web.principal import XLSX, _report_day, sorry, today
from webrtc.client_json import parse_client_json

if TYPE_CHECKING:
    from edge.live.service import EdgeService

REPORT_LIMIT = 262_144  # one lesson of one class: 60 pupils' rows are ~15 kB
BEAT_LIMIT = 65_536
REFRESH_SECONDS = 15  # the rooms view reloads itself this often

routes = APIRouter()


def _hub(service: EdgeService) -> tuple[HubStore, SchoolHubSettings] | None:
    settings = service.config.site.school_hub
    if service.hub is None or settings is None:
        return None
    return service.hub, settings


def _hub_for_staff(
    service: EdgeService, request: Request, *, download: bool = False
) -> tuple[HubStore, SchoolHubSettings] | Response:
    """The hub, for a staff page: else a Vietnamese 404 page on a mini-PC that is not the
    hub, or the login page (back to this page after) for a visitor; a download: 403."""
    hub = _hub(service)
    if hub is None:
        return sorry(
            404, "Không phải máy chủ của trường", "Máy này không tổng hợp báo cáo toàn trường."
        )
    if not is_staff(request, service.staff):
        if download:
            return problem(403, "Staff only", "log in at /login")
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return hub


async def _signed(
    service: EdgeService, request: Request, limit: int
) -> tuple[str, Any, dt.datetime] | Response:
    """The room that signed the request and its JSON body, or the problem to answer."""
    hub = _hub(service)
    if hub is None:
        return problem(404, "Not found", "this mini-PC is not the school hub")
    body = await bounded_body(request, limit)
    if body is None:
        return problem(413, "Too large", f"at most {limit} bytes")
    settings = hub[1]
    signer = verify(
        service.hub_keys,
        dict(request.headers),
        body,
        service.clock.now(),
        settings.max_skew_seconds,
    )
    if isinstance(signer, tuple):
        return problem(signer[0], "Forbidden" if signer[0] == 403 else "Unauthorized", signer[1])
    try:
        data = parse_client_json(body)
    except ValueError as exc:
        return problem(400, "Malformed request", f"send a JSON object ({exc})")
    if not isinstance(data, dict):
        return problem(400, "Malformed request", "send a JSON object")
    if data.get("room") != signer:
        return problem(
            403, "Forbidden", f"room {signer} cannot write room {data.get('room')!r}'s rows"
        )
    return signer, data, sent_at(dict(request.headers))


@routes.post("/api/school/lessons")
async def receive_lesson(service: Service, request: Request) -> Response:
    got = await _signed(service, request, REPORT_LIMIT)
    if isinstance(got, Response):
        return got
    room, data, sent = got
    try:
        cells = PeriodCells.from_json(data["cells"])
        lesson, state, roster = str(data["lesson"]), str(data["state"]), str(data["roster"])
    except (KeyError, TypeError, ValueError) as exc:
        return problem(400, "Malformed request", f"cells: {exc}")
    if state in ("recorded", "archived") and data.get("records") is False:
        state = "ended"  # the room does not record: the lesson is over, there is no video
    if not lesson or len(lesson) > 200:
        return problem(400, "Malformed request", "lesson: an id of 1 to 200 characters")
    expected = service.config.site.school_hub
    assert expected is not None and service.hub is not None
    if cells.class_name != expected.rooms[room].class_name:
        return problem(
            403,
            "Forbidden",
            f"room {room} teaches {expected.rooms[room].class_name}, not {cells.class_name}",
        )
    await asyncio.to_thread(
        service.hub.put_lesson, room, lesson, state, roster, cells, service.clock.now(), sent
    )
    return Response(status_code=204)


@routes.post("/api/school/beat")
async def receive_beat(service: Service, request: Request) -> Response:
    got = await _signed(service, request, BEAT_LIMIT)
    if isinstance(got, Response):
        return got
    room, data, sent = got
    assert service.hub is not None
    plan = data.get("plan")
    periods: list[Any] | None = None
    day: dt.date | None = None
    if isinstance(plan, dict) and isinstance(plan.get("periods"), list):
        try:
            day = dt.date.fromisoformat(str(plan.get("day")))
        except ValueError:
            return problem(400, "Malformed request", "plan.day: YYYY-MM-DD")
        periods = [p for p in plan["periods"] if isinstance(p, dict)]
    now = service.clock.now()

    def store() -> None:
        assert service.hub is not None
        service.hub.put_beat(room, data, now, sent)
        if day is not None and periods is not None:
            service.hub.put_plan(room, day, periods)

    await asyncio.to_thread(store)
    return Response(status_code=204)


# ------------------------------------------------------------------ pages

PAGE_STYLE = (
    HTML_STYLE
    + """
body { max-width: 78rem; margin: 0 auto; padding: 0 0.8rem; }
nav a { margin-right: 1em; }
.bad td, td.bad { background: #f8d0d0; } .warn td, td.warn { background: #fff1c2; }
.ok td.state { color: #075e07; } .info td.state { color: #555; }
.dot { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%;
       vertical-align: middle; margin-right: 0.3em; }
.dot.bad { background: #c00; } .dot.warn { background: #e0a000; } .dot.ok { background: #2a2; }
.late { border: 1px solid #e0a000; background: #fff8e0; padding: 0.4em 0.6em; }
@media print { .no-print { display: none; } body { max-width: none; } }
@media (max-width: 640px) {  /* a phone: each room a card, each cell with its name */
  .rooms thead { display: none; }
  .rooms tr { display: block; border: 1px solid #999; margin-bottom: 0.6em; }
  .rooms td { display: block; border: none; padding: 2px 6px; }
  .rooms td[data-label]::before { content: attr(data-label) ": "; font-weight: bold; }
}
"""
)


def _page(service: EdgeService, title: str, body: str, refresh: int | None = None) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return HTMLResponse(
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        '<nav class="no-print"><a href="/school">Báo cáo trong ngày</a>'
        '<a href="/school/rooms">Tình trạng các phòng</a>'
        '<a href="/school/district">Báo cáo tuần gửi Phòng GD&amp;ĐT</a></nav>'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(service.config.site.school)}</p>"
        f"{body}</body></html>",
        headers={"Cache-Control": "no-store"},
    )


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{classes[i] if i < len(classes) else ""}">'
        + "".join(f"<td>{html.escape(vietnamese(v))}</td>" for v in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _week(day: dt.date) -> tuple[dt.date, dt.date]:
    monday = day - dt.timedelta(days=day.weekday())
    return monday, monday + dt.timedelta(days=5)


def _day_or_sorry(service: EdgeService, date: str) -> dt.date | HTMLResponse:
    try:
        return _report_day(date) if date else today(service)
    except ValueError:
        return sorry(400, "Ngày không hợp lệ", f"“{date}” không phải là một ngày (năm-tháng-ngày).")


def _lines(
    service: EdgeService, store: HubStore, settings: SchoolHubSettings, day: dt.date
) -> tuple[list[PeriodLine], list[str], list[HeldLesson]]:
    """The day's lines, the rooms silent that day, and the week's lessons (a thread)."""
    first, last = _week(day)
    lessons = store.lessons(min(first, day), max(last, day))
    plans = store.plans(day, day)
    rooms = {name: room.class_name for name, room in settings.rooms.items()}
    lines, silent = day_lines(
        rooms,
        day,
        lessons,
        plans,
        store.beats(),
        service.clock.now(),
        dt.timedelta(seconds=settings.bell_grace_seconds),
    )
    return lines, silent, lessons


DAY_HEADERS = [
    "Lớp",
    "Phòng",
    "Tiết",
    "Môn",
    "Giáo viên",
    "Giờ",
    "Tình trạng",
    "Sĩ số",
    "Học ở nhà",
    "Trực tuyến",
    "Tỉ lệ (%)",
]


@routes.get("/school")
async def school_page(service: Service, request: Request, date: str = "") -> Response:
    hub = _hub_for_staff(service, request)
    if isinstance(hub, Response):
        return hub
    day = _day_or_sorry(service, date)
    if isinstance(day, HTMLResponse):
        return day
    store, settings = hub
    lines, silent, lessons = await asyncio.to_thread(_lines, service, store, settings, day)
    zone = service.config.zone
    rows: list[list[Cell]] = []
    for line in lines:
        when = ""
        if line.start is not None:
            when = line.start.astimezone(zone).strftime("%H:%M")
            if line.end is not None:
                when += "–" + line.end.astimezone(zone).strftime("%H:%M")
        numbers = line.numbers or ["", "", "", ""]
        rows.append(
            [
                line.class_name,
                line.room,
                line.label,
                line.subject,
                line.teacher,
                when,
                line.status,
                *numbers,
            ]
        )
    held = [h for h in lessons if h.cells.day == day]
    names = {name: room.class_name for name, room in settings.rooms.items()}
    parts = [
        '<form method="get" class="no-print" style="margin:1em 0">'
        f'Ngày <input type="date" name="date" value="{day.isoformat()}"> <button>Xem</button> '
        f'<a href="/school/export?date={day.isoformat()}&format=xlsx">'
        "Tải Excel cả tuần (.xlsx)</a> · "
        f'<a href="/school/export?date={day.isoformat()}&format=csv">Tải CSV trong ngày</a> · '
        '<a href="javascript:print()">In</a></form>'
    ]
    monday = _week(day)[0]
    days = []
    for n in range(6):
        each = monday + dt.timedelta(days=n)
        label = f"{WEEKDAYS[n]} {each:%d/%m}"
        days.append(
            f"<b>{label}</b>" if each == day else f'<a href="/school?date={each}">{label}</a>'
        )
    parts.append(f'<p class="no-print">Các ngày trong tuần: {" · ".join(days)}</p>')
    if silent:
        listed = ", ".join(f"phòng {r} (lớp {names[r]})" for r in silent)
        parts.append(
            f'<p class="late">Chưa nhận được báo cáo của {len(silent)} phòng: '
            f"{html.escape(listed)}. "
            "Học sinh các lớp này không bị tính là vắng; số liệu sẽ hiện khi phòng gửi lên.</p>"
        )
    parts.append(f"<h2>Các tiết học {WEEKDAYS[day.weekday()]} {day:%d/%m/%Y}</h2>")
    if rows:
        parts.append(_table(DAY_HEADERS, rows, [line.level for line in lines]))
    else:
        parts.append('<p class="empty">Chưa có tiết học nào trong ngày.</p>')
    if held:
        parts.append("<h2>Chi tiết từng học sinh</h2>")
        parts.append(_table(DETAIL_HEADERS, [r for h in held for r in h.cells.details]))
    week = week_of_cells([h.cells for h in lessons])
    if week:
        parts.append("<h2>Tổng hợp tuần</h2>")
        parts.append(_table(WEEK_HEADERS, week_cells(week)))
    title = f"Báo cáo học trực tuyến toàn trường · {WEEKDAYS[day.weekday()]} {day:%d/%m/%Y}"
    return _page(service, title, "".join(parts))


@routes.get("/school/export")
async def school_export(
    service: Service, request: Request, date: str = "", format: str = "csv"
) -> Response:
    hub = _hub(service)
    if hub is None:
        return problem(404, "Not found", "this mini-PC is not the school hub")
    if not is_staff(request, service.staff):
        return problem(403, "Staff only", "log in at /login")
    try:
        day = _report_day(date) if date else today(service)
    except ValueError:
        return problem(400, "Malformed request", "date: YYYY-MM-DD")
    if format not in ("csv", "xlsx"):
        return problem(400, "Malformed request", "format: csv or xlsx")
    store = hub[0]
    school = service.config.site.school
    first, last = _week(day)
    lessons = await asyncio.to_thread(store.lessons, min(first, day), max(last, day))
    if format == "csv":
        cells = sorted(
            (h.cells for h in lessons if h.cells.day == day),
            key=lambda c: (c.class_name, c.start),
        )
        return Response(
            render_cells_csv(school, day, cells),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="toan-truong-{day}.csv"'},
        )
    days = sorted({h.cells.day for h in lessons} | {day})
    by_day = [
        (
            each,
            sorted(
                (h.cells for h in lessons if h.cells.day == each),
                key=lambda c: (c.class_name, c.start),
            ),
        )
        for each in days
    ]
    week = week_of_cells([h.cells for h in lessons])
    book = await asyncio.to_thread(render_school_xlsx, school, by_day, week)
    return Response(
        book,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="toan-truong-tuan-{first}.xlsx"'},
    )


ROOM_LABELS = ["", "Lớp", "Tình trạng", "Cần xử lý", "Tiết tiếp theo", "Diễn tập", "Liên lạc"]
ROOM_HEADERS = [
    "Phòng",
    "Lớp",
    "Tình trạng",
    "Cần xử lý",
    "Tiết tiếp theo",
    "Diễn tập gần nhất",
    "Liên lạc lần cuối",
]


@routes.get("/school/rooms")
async def rooms_page(service: Service, request: Request) -> Response:
    hub = _hub_for_staff(service, request)
    if isinstance(hub, Response):
        return hub
    store, settings = hub
    beats = await asyncio.to_thread(store.beats)
    now = service.clock.now()
    zone = service.config.zone
    lines = [
        room_line(
            name,
            room.class_name,
            beats.get(name),
            now,
            zone=zone,
            grace=dt.timedelta(seconds=settings.bell_grace_seconds),
            lost_after=dt.timedelta(seconds=settings.lost_after_seconds),
        )
        for name, room in sorted(settings.rooms.items(), key=lambda i: (i[1].class_name, i[0]))
    ]
    lines.sort(key=lambda line: ({"bad": 0, "warn": 1}.get(line.level, 2), line.class_name))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ROOM_HEADERS)
    body = ""
    for line in lines:
        heard = line.heard.astimezone(zone).strftime("%H:%M:%S %d/%m") if line.heard else "—"
        problems = "<br>".join(html.escape(p) for p in line.problems) or "—"
        cells = [
            f'<span class="dot {line.level}"></span>Phòng {html.escape(line.room)}',
            html.escape(line.class_name),
            html.escape(line.state),
            problems,
            html.escape(line.next_bell or "—"),
            html.escape(line.drill),
            heard,
        ]
        body += (
            f'<tr class="{line.level}" data-room="{html.escape(line.room)}">'
            + "".join(
                f'<td class="state" data-label="{label}">{cell}</td>'
                if label == "Tình trạng"
                else (f'<td data-label="{label}">{cell}</td>' if label else f"<td>{cell}</td>")
                for label, cell in zip(ROOM_LABELS, cells, strict=True)
            )
            + "</tr>"
        )
    red = sum(1 for line in lines if line.level == "bad")
    heed = sum(1 for line in lines if line.level == "warn")
    summary = (
        f'<p class="late">{red} phòng cần xử lý ngay.</p>'
        if red
        else "<p>Không có phòng nào cần xử lý ngay.</p>"
    )
    if heed:
        summary += f"<p>{heed} phòng có việc cần lưu ý (màu vàng).</p>"
    table = (
        f'<div class="scroll"><table class="rooms"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
    stamp = (
        f"<p>Cập nhật lúc {now.astimezone(zone):%H:%M:%S}; "
        f"trang tự tải lại sau {REFRESH_SECONDS} giây.</p>"
    )
    return _page(service, "Tình trạng các phòng học", summary + table + stamp, REFRESH_SECONDS)


@routes.get("/school/district")
async def district_page(
    service: Service, request: Request, date: str = "", format: str = "html"
) -> Response:
    hub = _hub_for_staff(service, request, download=format == "xlsx")
    if isinstance(hub, Response):
        return hub
    day = _day_or_sorry(service, date)
    if isinstance(day, HTMLResponse):
        return day
    store, settings = hub
    first, last = _week(day)

    def build() -> tuple[list[list[Cell]], int]:
        per_day = []
        lessons: list[HeldLesson] = []
        for n in range(6):
            each = first + dt.timedelta(days=n)
            lines, _, week_lessons = _lines(service, store, settings, each)
            per_day.append(lines)
            lessons = week_lessons
        return district_rows(per_day, lessons), len(lessons)

    rows, _ = await asyncio.to_thread(build)
    title = f"Báo cáo tiến độ học trực tuyến tuần {first:%d/%m}–{last:%d/%m/%Y}"
    if format == "xlsx":
        book = await asyncio.to_thread(
            workbook,
            service.config.site.school,
            title,
            [("Theo khối", [(DISTRICT_HEADERS, rows)])],
        )
        return Response(
            book,
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="bao-cao-phong-{first}.xlsx"'},
        )
    tools = (
        '<form method="get" class="no-print" style="margin:1em 0">'
        f'Tuần có ngày <input type="date" name="date" value="{day.isoformat()}"> '
        "<button>Xem</button> "
        f'<a href="/school/district?date={day.isoformat()}&format=xlsx">Tải Excel (.xlsx)</a> · '
        '<a href="javascript:print()">In</a></form>'
    )
    body = tools + (
        _table(DISTRICT_HEADERS, rows)
        if rows
        else '<p class="empty">Chưa có tiết học nào trong tuần.</p>'
    )
    body += "<p>Kính gửi: Phòng Giáo dục và Đào tạo.</p>"
    return _page(service, title, body)
