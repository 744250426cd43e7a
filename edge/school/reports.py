"""The daily attendance report (báo cáo điểm danh) homeroom teachers owe the principal's
board: per class and period the online count against those studying from home and the
class size, and every pupil of the roster with their status; a weekly summary.

CSV (UTF-8 with BOM, so Excel shows the diacritics; `;` between fields and decimal
commas, as Excel set to Vietnamese reads them), XLSX (openpyxl; real dates, times and
numbers) and printable HTML, all in Vietnamese.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.school.attendance import AttendanceStore, Presence
from edge.school.lessons import Lesson, LessonStore
from edge.school.roster import Pupil, RosterStore

STATUS = {"present": "Có mặt", "late": "Muộn", "left_early": "Về sớm", "absent": "Vắng"}
HELD = ("live", "closing", "recorded", "archived")
WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
SUMMARY_HEADERS = [
    "Lớp",
    "Ngày",
    "Tiết",
    "Môn",
    "Giáo viên",
    "Bắt đầu",
    "Kết thúc",
    "Sĩ số",
    "Học ở nhà",
    "Trực tuyến",
    "Tỉ lệ (%)",
    "Không rõ tên",
]
DETAIL_HEADERS = [
    "Lớp",
    "Ngày",
    "Tiết",
    "Môn",
    "Mã định danh",
    "Họ và tên",
    "Học ở nhà",
    "Trạng thái",
    "Vào lớp lúc",
    "Số phút",
    "Ghi chú",
]
WEEK_HEADERS = [
    "Lớp",
    "Thứ",
    "Ngày",
    "Số tiết",
    "Học ở nhà",
    "Trực tuyến (trung bình mỗi tiết)",
    "Tỉ lệ (%)",
]
UNVERIFIED = "chưa xác thực (link chung của lớp)"


@dataclass(frozen=True)
class Rules:
    present_share: float = 0.5  # of the period, to count as present
    late_minutes: float = 10.0  # a first join later than this after the bell is late


@dataclass(frozen=True)
class PupilRow:
    pupil: Pupil
    at_home: bool | None  # None: nobody marked who studies from home that day
    status: str
    first_join: dt.datetime | None
    minutes: float
    verified: bool | None  # None: never joined

    @property
    def note(self) -> str:
        return UNVERIFIED if self.verified is False else ""


@dataclass(frozen=True)
class PeriodRow:
    lesson: Lesson
    end: dt.datetime
    class_size: int
    expected: int | None
    online: int
    unnamed: int  # viewers of the class link who picked no name
    pupils: list[PupilRow]

    @property
    def percent(self) -> float | None:
        return round(100 * self.online / self.expected, 1) if self.expected else None


def _union_seconds(spans: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Seconds covered by any of `spans` (a pupil on two devices counts once)."""
    total = 0.0
    covered: dt.datetime | None = None
    for start, end in sorted(spans):
        if covered is not None:
            start = max(start, covered)
        if end > start:
            total += (end - start).total_seconds()
        covered = end if covered is None else max(covered, end)
    return total


def period_attendance(
    lesson: Lesson,
    pupils: Sequence[Pupil],
    sessions: Sequence[Presence],
    at_home: set[str] | None,
    rules: Rules,
    now: dt.datetime,
) -> PeriodRow:
    """Who watched `lesson`, from the sessions that overlap it. A pupil's own link
    counts alone when it was used: a name picked on the class link (unverified) never
    adds minutes to the pupil's own; it counts, noted as unverified, only for a pupil
    who did not join by their own link."""
    end = min(lesson.ends_at or lesson.end or now, now)
    length = max((end - lesson.start).total_seconds(), 1.0)
    spans: dict[tuple[str, bool], list[tuple[dt.datetime, dt.datetime]]] = {}
    unnamed: set[str] = set()
    for session in sessions:
        start = max(session.joined_at, lesson.start)
        stop = min(session.left_at or now, end)
        if stop <= start:
            continue
        if session.pupil_id is None:
            unnamed.add(session.session_id)
            continue
        spans.setdefault((session.pupil_id, session.verified), []).append((start, stop))
    rows = []
    for pupil in pupils:
        verified = (pupil.id, True) in spans
        own = spans.get((pupil.id, verified), [])
        home = None if at_home is None else pupil.id in at_home
        if not own:
            rows.append(PupilRow(pupil, home, "absent", None, 0.0, None))
            continue
        first = min(start for start, _ in own)
        seconds = _union_seconds(own)
        if (first - lesson.start).total_seconds() > rules.late_minutes * 60:
            status = "late"
        elif seconds < rules.present_share * length:
            status = "left_early"
        else:
            status = "present"
        rows.append(PupilRow(pupil, home, status, first, seconds / 60, verified))
    online = sum(1 for row in rows if row.status != "absent")
    expected = None if at_home is None else len(at_home & {p.id for p in pupils})
    return PeriodRow(lesson, end, len(pupils), expected, online, len(unnamed), rows)


@dataclass(frozen=True)
class DayReport:
    school: str
    day: dt.date
    periods: list[PeriodRow]


def day_report(
    school: str,
    day: dt.date,
    rooms: Sequence[str],
    *,
    lessons: LessonStore,
    roster: RosterStore,
    attendance: AttendanceStore,
    zone: dt.tzinfo,
    rules: Rules,
    now: dt.datetime,
) -> DayReport:
    since = dt.datetime.combine(day, dt.time(), zone)
    until = since + dt.timedelta(days=1)
    periods = []
    for room in rooms:
        for lesson in lessons.lessons(room, since, until):
            if lesson.state not in HELD or lesson.start > now:
                continue
            sessions = attendance.presence(lesson.class_name, lesson.start, until)
            home = attendance.at_home(day, lesson.class_name)
            pupils = roster.pupils(lesson.class_name)
            periods.append(period_attendance(lesson, pupils, sessions, home, rules, now))
    periods.sort(key=lambda p: (p.lesson.class_name, p.lesson.start))
    return DayReport(school, day, periods)


def day_and_week(
    school: str,
    day: dt.date,
    rooms: Sequence[str],
    *,
    lessons: LessonStore,
    roster: RosterStore,
    attendance: AttendanceStore,
    zone: dt.tzinfo,
    rules: Rules,
    now: dt.datetime,
) -> tuple[DayReport, list[WeekRow]]:
    """The day's report and the summary of its school week (Monday to Saturday)."""

    def one(on: dt.date) -> DayReport:
        return day_report(
            school,
            on,
            rooms,
            lessons=lessons,
            roster=roster,
            attendance=attendance,
            zone=zone,
            rules=rules,
            now=now,
        )

    monday = day - dt.timedelta(days=day.weekday())
    week = [one(monday + dt.timedelta(days=n)) for n in range(6)]
    report = week[day.weekday()] if day.weekday() < 6 else one(day)
    return report, week_summary(week)


# ------------------------------------------------------------------ rendering

NOT_MARKED = "chưa đánh dấu"
"""In "Học ở nhà" when nobody marked who studies from home that day."""
NO_RATE = "(chưa đánh dấu HS học ở nhà)"
"""In "Tỉ lệ (%)" for the same reason: the rate is online over those studying from home."""

Cell = str | int | float | dt.date | dt.time | None
"""A report cell as a value: XLSX keeps it (dates, times and numbers Excel can sort and
filter), CSV and HTML write it the Vietnamese way (`vietnamese`)."""


def vietnamese(value: Cell) -> str:
    """`66,7`, `25/11/2026`, `07:15`: numbers, dates and times as Vietnamese write them."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}".replace(".", ",")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def _clock(moment: dt.datetime | None, zone: dt.tzinfo) -> dt.time | None:
    if moment is None:
        return None
    return moment.astimezone(zone).time().replace(second=0, microsecond=0, tzinfo=None)


def _period_label(lesson: Lesson) -> str:
    if lesson.kind == "always":
        return "Phát liên tục"
    if lesson.period is None:
        return "Thêm"
    return f"{lesson.period} ({'chiều' if lesson.session == 'afternoon' else 'sáng'})"


def _subject(lesson: Lesson) -> str:
    return "" if lesson.kind == "always" else lesson.subject  # no subject: not a period


def _home(value: bool | None) -> str:
    return NOT_MARKED if value is None else ("có" if value else "không")


def summary_rows(report: DayReport, zone: dt.tzinfo) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for period in report.periods:
        lesson = period.lesson
        rows.append(
            [
                lesson.class_name,
                report.day,
                _period_label(lesson),
                _subject(lesson),
                lesson.teacher,
                _clock(lesson.start, zone),
                _clock(period.end, zone),
                period.class_size,
                NOT_MARKED if period.expected is None else period.expected,
                period.online,
                NO_RATE if period.percent is None else period.percent,
                period.unnamed,
            ]
        )
    return rows


def detail_rows(report: DayReport, zone: dt.tzinfo) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for period in report.periods:
        lesson = period.lesson
        for row in period.pupils:
            rows.append(
                [
                    lesson.class_name,
                    report.day,
                    _period_label(lesson),
                    _subject(lesson),
                    row.pupil.id,
                    row.pupil.name,
                    _home(row.at_home),
                    STATUS[row.status],
                    _clock(row.first_join, zone),
                    round(row.minutes),
                    row.note,
                ]
            )
    return rows


@dataclass(frozen=True)
class PeriodCells:
    """One period of a report as cells: its summary row and its pupils' rows, with what
    the week's summary needs. What a room sends the school hub, and all the hub keeps."""

    class_name: str
    day: dt.date
    start: dt.datetime
    expected: int | None
    online: int
    summary: list[Cell]
    details: list[list[Cell]]

    def as_json(self) -> dict[str, object]:
        return {
            "class": self.class_name,
            "day": self.day.isoformat(),
            "start": self.start.isoformat(),
            "expected": self.expected,
            "online": self.online,
            "summary": [cell_json(c) for c in self.summary],
            "details": [[cell_json(c) for c in row] for row in self.details],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeriodCells:
        """The cells `as_json` wrote; ValueError, TypeError or KeyError when malformed."""
        expected = data["expected"]
        if expected is not None and not isinstance(expected, int):
            raise TypeError("expected: a number or null")
        summary = [cell_value(c) for c in data["summary"]]
        details = [[cell_value(c) for c in row] for row in data["details"]]
        if len(summary) != len(SUMMARY_HEADERS) or any(
            len(row) != len(DETAIL_HEADERS) for row in details
        ):
            raise ValueError("cells: not the report's columns")
        start = dt.datetime.fromisoformat(str(data["start"]))
        if start.tzinfo is None:
            raise ValueError("start: a time with its offset")
        return cls(
            class_name=str(data["class"]),
            day=dt.date.fromisoformat(str(data["day"])),
            start=start,
            expected=expected,
            online=int(data["online"]),
            summary=summary,
            details=details,
        )


def cell_json(value: Cell) -> object:
    """A cell as JSON keeping its type: dates and times tagged, floats apart from ints."""
    if isinstance(value, dt.time):
        return {"time": value.strftime("%H:%M")}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, float):
        return {"float": value}
    return value


def cell_value(data: object) -> Cell:
    """The cell `cell_json` wrote; ValueError when it is none."""
    if (
        data is None
        or isinstance(data, str)
        or (isinstance(data, int) and not isinstance(data, bool))
    ):
        return data
    if isinstance(data, dict) and len(data) == 1:
        ((tag, value),) = data.items()
        if tag == "time" and isinstance(value, str):
            return dt.time.fromisoformat(value)
        if tag == "date" and isinstance(value, str):
            return dt.date.fromisoformat(value)
        if tag == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    raise ValueError(f"not a report cell: {data!r}")


def period_cells(report: DayReport, zone: dt.tzinfo) -> list[PeriodCells]:
    """Each period of `report` as cells, in the report's order."""
    found = []
    for period in report.periods:
        one = DayReport(report.school, report.day, [period])
        found.append(
            PeriodCells(
                class_name=period.lesson.class_name,
                day=report.day,
                start=period.lesson.start,
                expected=period.expected,
                online=period.online,
                summary=summary_rows(one, zone)[0],
                details=detail_rows(one, zone),
            )
        )
    return found


@dataclass(frozen=True)
class WeekRow:
    class_name: str
    day: dt.date
    periods: int
    expected: int | None
    online_mean: float
    percent: float | None


def week_summary(reports: Sequence[DayReport]) -> list[WeekRow]:
    return week_of_cells(
        [
            PeriodCells(p.lesson.class_name, r.day, p.lesson.start, p.expected, p.online, [], [])
            for r in reports
            for p in r.periods
        ]
    )


def week_of_cells(periods: Sequence[PeriodCells]) -> list[WeekRow]:
    """Per day and class: periods held, those at home, online per period on average."""
    rows = []
    for day in sorted({p.day for p in periods}):
        that_day = [p for p in periods if p.day == day]
        for class_name in sorted({p.class_name for p in that_day}):
            held = sorted(
                (p for p in that_day if p.class_name == class_name), key=lambda p: p.start
            )
            expected = held[0].expected
            mean = sum(p.online for p in held) / len(held)
            percent = round(100 * mean / expected, 1) if expected else None
            rows.append(WeekRow(class_name, day, len(held), expected, round(mean, 1), percent))
    return rows


def week_cells(week: Sequence[WeekRow]) -> list[list[Cell]]:
    return [
        [
            w.class_name,
            WEEKDAYS[w.day.weekday()],
            w.day,
            w.periods,
            NOT_MARKED if w.expected is None else w.expected,
            w.online_mean,
            NO_RATE if w.percent is None else w.percent,
        ]
        for w in week
    ]


def _csv_writer(out: io.StringIO) -> Any:
    # ";" between fields: Excel set to Vietnamese (decimal comma) splits columns there
    return csv.writer(out, delimiter=";", lineterminator="\r\n")


def render_csv(report: DayReport, zone: dt.tzinfo) -> bytes:
    """Two tables in one file: the summary, a blank line, the per-pupil detail."""
    return render_cells_csv(report.school, report.day, period_cells(report, zone))


def render_cells_csv(school: str, day: dt.date, periods: Sequence[PeriodCells]) -> bytes:
    """The CSV of `render_csv` from periods' cells: a room's own, or the school hub's
    from every room's (the same bytes for the same periods)."""
    out = io.StringIO()
    writer = _csv_writer(out)
    writer.writerow(
        [f"Báo cáo điểm danh học trực tuyến · {school} · {WEEKDAYS[day.weekday()]} {day:%d/%m/%Y}"]
    )
    writer.writerow(SUMMARY_HEADERS)
    writer.writerows([vietnamese(c) for c in p.summary] for p in periods)
    writer.writerow([])
    writer.writerow(DETAIL_HEADERS)
    writer.writerows([vietnamese(c) for c in row] for p in periods for row in p.details)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def render_week_csv(week: Sequence[WeekRow]) -> bytes:
    out = io.StringIO()
    writer = _csv_writer(out)
    writer.writerow(WEEK_HEADERS)
    writer.writerows([vietnamese(c) for c in row] for row in week_cells(week))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


XLSX_FORMATS: dict[type, str] = {
    dt.date: "DD/MM/YYYY",
    dt.time: "HH:MM",
    float: "0.0",
}


def render_xlsx(report: DayReport, week: Sequence[WeekRow], zone: dt.tzinfo) -> bytes:
    sheets = [
        ("Tổng hợp", [(SUMMARY_HEADERS, summary_rows(report, zone))]),
        ("Chi tiết", [(DETAIL_HEADERS, detail_rows(report, zone))]),
        ("Tuần", [(WEEK_HEADERS, week_cells(week))]),
    ]
    return workbook(report.school, f"Điểm danh {report.day:%d/%m/%Y}", sheets)


def render_school_xlsx(
    school: str, days: Sequence[tuple[dt.date, Sequence[PeriodCells]]], week: Sequence[WeekRow]
) -> bytes:
    """The school hub's workbook: a sheet per day (the summary, then every pupil, in the
    per-room report's columns) and the week's summary."""
    sheets: list[tuple[str, list[tuple[list[str], list[list[Cell]]]]]] = [
        (
            f"{WEEKDAYS[day.weekday()]} {day:%d-%m}",
            [
                (SUMMARY_HEADERS, [p.summary for p in periods]),
                (DETAIL_HEADERS, [row for p in periods for row in p.details]),
            ],
        )
        for day, periods in days
    ]
    sheets.append(("Tổng hợp tuần", [(WEEK_HEADERS, week_cells(week))]))
    first = days[0][0] if days else None
    title = f"Điểm danh toàn trường từ {first:%d/%m/%Y}" if first else "Điểm danh toàn trường"
    return workbook(school, title, sheets)


def workbook(
    school: str, title: str, sheets: Sequence[tuple[str, list[tuple[list[str], list[list[Cell]]]]]]
) -> bytes:
    """Sheets of tables (headers, rows), a blank row between two tables of one sheet.
    Written as it goes (openpyxl's write-only mode: a school's week is ~10^6 cells)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")
    top = Alignment(wrap_text=True, vertical="top")
    for name, tables in sheets:
        sheet = book.create_sheet(name)
        widths: dict[int, int] = {}
        for headers, rows in tables:
            for column, header in enumerate(headers, start=1):
                longest = max((len(vietnamese(r[column - 1])) for r in rows), default=0)
                width = min(max(longest, len(header)) + 2, 40)
                widths[column] = max(widths.get(column, 0), width)
        for column, width in widths.items():  # before any row, in write-only mode
            sheet.column_dimensions[get_column_letter(column)].width = width
        sheet.freeze_panes = "A2"
        for number, (headers, rows) in enumerate(tables):
            if number:
                sheet.append([])
            heads = []
            for header in headers:
                cell = WriteOnlyCell(sheet, value=header)
                cell.font, cell.fill, cell.alignment = bold, fill, top
                heads.append(cell)
            sheet.append(heads)
            for row in rows:
                cells: list[object] = []
                for value in row:
                    form = XLSX_FORMATS.get(type(value))
                    if form is None:
                        cells.append(value)
                    else:
                        cell = WriteOnlyCell(sheet, value=value)
                        cell.number_format = form
                        cells.append(cell)
                sheet.append(cells)
    book.properties.title = title
    book.properties.creator = school
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], marks: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(vietnamese(v))}</td>" for v in row) + "</tr>"
        for row in rows
    )
    table = f'<table class="{marks}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls on a phone, not the page


HTML_STYLE = """
@page { size: A4 landscape; margin: 10mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #111; }
h1 { font-size: 14pt; } h2 { font-size: 12pt; margin-top: 6mm; }
table { border-collapse: collapse; width: 100%; margin-bottom: 4mm; }
th, td { border: 1px solid #999; padding: 2px 5px; text-align: left; }
th { background: #ddebf7; } tr { break-inside: avoid; }
.empty { color: #666; }
.scroll { overflow-x: auto; }
@media print { .scroll { overflow: visible; } }
"""


def render_html(report: DayReport, week: Sequence[WeekRow], zone: dt.tzinfo) -> str:
    title = (
        f"Báo cáo điểm danh học trực tuyến · {WEEKDAYS[report.day.weekday()]} {report.day:%d/%m/%Y}"
    )
    parts = [
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(report.school)}</p>"
    ]
    if not report.periods:
        parts.append('<p class="empty">Không có tiết học trực tuyến nào trong ngày.</p>')
    else:
        parts.append("<h2>Tổng hợp theo tiết</h2>")
        parts.append(_table(SUMMARY_HEADERS, summary_rows(report, zone)))
        parts.append("<h2>Chi tiết từng học sinh</h2>")
        parts.append(_table(DETAIL_HEADERS, detail_rows(report, zone)))
    if week:
        parts.append("<h2>Tổng hợp tuần</h2>")
        parts.append(_table(WEEK_HEADERS, week_cells(week)))
    parts.append("</body></html>")
    return "".join(parts)
