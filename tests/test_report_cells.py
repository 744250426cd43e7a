"""Report cells as the principal reads them: Vietnamese numbers, a blank rate that says
why, the always-live stream not passed off as a subject or an extra period."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from edge.school.attendance import Presence
from edge.school.lessons import Lesson
from edge.school.reports import (
    NO_RATE,
    NOT_MARKED,
    UNVERIFIED,
    DayReport,
    Rules,
    period_attendance,
    render_csv,
    render_html,
    render_xlsx,
    week_summary,
)
from edge.school.roster import Pupil

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = dt.date(2026, 12, 4)
START = dt.datetime(2026, 12, 4, 7, 0, tzinfo=ZONE)
PUPILS = [Pupil("0101000001", "Nguyễn Văn An", "6A1")]


def lesson(kind: str, subject: str, period: int | None) -> Lesson:
    return Lesson(
        id=f"r1-{kind}",
        room="r1",
        kind=kind,  # type: ignore[arg-type]
        class_name="6A1",
        subject=subject,
        teacher="",
        period=period,
        session="morning" if period else None,
        start=START,
        end=START + dt.timedelta(minutes=45),
        ends_at=None,
    )


def report() -> DayReport:
    now = START + dt.timedelta(hours=2)
    periods = [
        period_attendance(lesson("always", "Phát liên tục", None), PUPILS, [], None, Rules(), now),
        period_attendance(lesson("adhoc", "Tiết học thêm", None), PUPILS, [], None, Rules(), now),
    ]
    return DayReport("Trường Thử", DAY, periods)


def test_a_blank_rate_says_why_and_the_stream_is_no_subject() -> None:
    text = render_csv(report(), ZONE).decode("utf-8-sig")
    rows = [line.split(";") for line in text.splitlines()[2:4]]
    always, extra = rows
    assert always[2:4] == ["Phát liên tục", ""]  # Tiết, Môn
    assert extra[2:4] == ["Thêm", "Tiết học thêm"]
    assert always[8] == NOT_MARKED and always[10] == NO_RATE  # Học ở nhà, Tỉ lệ (%)
    page = render_html(report(), week_summary([report()]), ZONE)
    assert NO_RATE in page and "Phát liên tục" in page
    book = load_workbook(io.BytesIO(render_xlsx(report(), week_summary([report()]), ZONE)))
    summary = book["Tổng hợp"]
    assert summary["C2"].value == "Phát liên tục" and summary["D2"].value is None
    assert summary["K2"].value == NO_RATE
    week = book["Tuần"]
    assert week["F2"].value == 0.0 and week["G2"].value == NO_RATE


def test_a_name_picked_on_the_class_link_never_adds_to_the_pupils_own_minutes() -> None:
    """An watches 10 minutes by her own link while someone on the class link picks her
    name for 40; Bình is only ever picked on the class link (20 minutes)."""
    binh = Pupil("0101000002", "Trần Thị Bình", "6A1")

    def seen(session: str, pupil: str, verified: bool, start: int, stop: int) -> Presence:
        at = START + dt.timedelta(minutes=start)
        gone = START + dt.timedelta(minutes=stop)
        return Presence(session, "r1", "6A1", pupil, verified, at, gone)

    sessions = [
        seen("an-own", PUPILS[0].id, True, 0, 10),
        seen("an-picked", PUPILS[0].id, False, 2, 42),
        seen("binh-picked", binh.id, False, 5, 25),
    ]
    period = period_attendance(
        lesson("timetable", "Toán", 1),
        [*PUPILS, binh],
        sessions,
        None,
        Rules(),
        START + dt.timedelta(hours=1),
    )
    an, picked = period.pupils
    assert (an.minutes, an.verified, an.status, an.note) == (10.0, True, "left_early", "")
    assert (picked.minutes, picked.verified, picked.note) == (20.0, False, UNVERIFIED)
    assert picked.first_join == START + dt.timedelta(minutes=5)
