"""Timetables: CSV and iCalendar readers, their FILE:LINE problems, overlaps, excluded
subjects, the school calendar and the plan of a day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.school.timetable import (
    DEFAULT_EXCLUDED,
    BellSchedule,
    Period,
    Recurrence,
    SchoolCalendar,
    TimetableError,
    check_overlaps,
    is_excluded,
    make_period,
    number_by_start,
    parse_session,
    parse_weekday,
    plan_day,
    read_csv,
    read_ics,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "timetable"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "timetables"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
BELLS = BellSchedule(
    morning=(time(7, 0), time(7, 50), time(8, 45), time(9, 40), time(10, 30)),
    afternoon=(time(13, 30), time(14, 20), time(15, 15), time(16, 5)),
    period_minutes=45,
)
MONDAY = date(2025, 11, 17)
TEACHERS_DAY = date(2025, 11, 20)  # a Thursday


def csv_periods(path: Path) -> list[Period]:
    return read_csv(path, bells=BELLS, max_minutes=45)


def ics_periods(path: Path, class_name: str = "6A1") -> list[Period]:
    return read_ics(path, timezone=ZONE, bells=BELLS, max_minutes=45, class_name=class_name)


def find(
    periods: Sequence[Period], class_name: str, weekday: int, session: str, number: int
) -> Period:
    [found] = [
        p
        for p in periods
        if (p.class_name, p.weekday, p.session, p.number) == (class_name, weekday, session, number)
    ]
    return found


def dates(periods: Sequence[Period], subject: str, first: date, last: date) -> list[date]:
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [d for d in days if any(p.subject == subject and p.occurs_on(d) for p in periods)]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


# ---------------------------------------------------------------- fields


def test_bell_schedule_times() -> None:
    assert BELLS.times("morning", 1) == (time(7, 0), time(7, 45))
    assert BELLS.times("afternoon", 4) == (time(16, 5), time(16, 50))
    with pytest.raises(ValueError, match=r"^no period 6 in the morning \(expected 1\.\.5\)$"):
        BELLS.times("morning", 6)
    with pytest.raises(ValueError, match=r"^no period 0 in the afternoon \(expected 1\.\.4\)$"):
        BELLS.times("afternoon", 0)


@pytest.mark.parametrize(
    ("value", "weekday"),
    [
        ("2", 1),
        (2, 1),
        (7, 6),
        ("Thứ Hai", 1),
        ("thu hai", 1),
        ("THỨ BA", 2),
        ("Thứ Tư", 3),
        ("thứ năm", 4),
        ("Thứ 6", 5),
        (" Thứ  Bảy ", 6),
        ("T2", 1),
        ("t7", 6),
        ("Monday", 1),
        ("Wed", 3),
        ("Thu", 4),
        ("SATURDAY", 6),
    ],
)
def test_weekday_spellings(value: str | int, weekday: int) -> None:
    assert parse_weekday(value) == weekday


@pytest.mark.parametrize("value", ["Chủ nhật", "chu nhat", "CN", "Sunday", 8, "8"])
def test_no_lessons_on_sunday(value: str | int) -> None:
    with pytest.raises(ValueError) as raised:
        parse_weekday(value)
    assert str(raised.value) == "no lessons on Sunday (expected Thứ Hai..Thứ Bảy or 2..7)"


@pytest.mark.parametrize(
    ("value", "shown"), [("Thứ Tám", "Thứ Tám"), ("Thứ", "Thứ"), (1, "1"), ("x", "x")]
)
def test_unknown_weekday(value: str | int, shown: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_weekday(value)
    assert str(raised.value) == f"unknown weekday '{shown}' (expected Thứ Hai..Thứ Bảy or 2..7)"


@pytest.mark.parametrize(
    ("value", "session"),
    [
        ("Sáng", "morning"),
        ("sang", "morning"),
        ("S", "morning"),
        ("morning", "morning"),
        ("AM", "morning"),
        ("Chiều", "afternoon"),
        ("CHIỀU", "afternoon"),
        ("chieu", "afternoon"),
        ("c", "afternoon"),
        ("Afternoon", "afternoon"),
        ("PM", "afternoon"),
    ],
)
def test_session_spellings(value: str, session: str) -> None:
    assert parse_session(value) == session


def test_unknown_session() -> None:
    with pytest.raises(ValueError, match=r"^unknown session 'tối' \(expected Sáng or Chiều\)$"):
        parse_session("tối")


def period(**fields: object) -> Period:
    values: dict[str, object] = {
        "weekday": "Thứ Hai",
        "class_name": "6A1",
        "subject": "Toán",
        "teacher": "Nguyễn Thị Hoa",
        "source": "tkb.csv:2",
    }
    values.update(fields)
    return make_period(bells=BELLS, max_minutes=45, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("start", ["7:00", "07:00", "7h00", "7h", "07:00:00", time(7)])
def test_time_spellings(start: str | time) -> None:
    made = period(start=start, end="7:45")
    assert (made.start, made.end, made.session, made.number) == (
        time(7),
        time(7, 45),
        "morning",
        1,
    )


def test_make_period_from_bells_and_from_times() -> None:
    made = period(session="Chiều", number=2)
    assert (made.weekday, made.start, made.end, made.session, made.number) == (
        1,
        time(14, 20),
        time(15, 5),
        "afternoon",
        2,
    )
    assert made.recurrence is None and made.source == "tkb.csv:2"
    # start only: the end is a period later; session and number follow the start
    made = period(start="15:15")
    assert (made.end, made.session, made.number) == (time(16), "afternoon", 3)
    # off the bell schedule: number 0, for the reader to rank
    assert period(start="7:15", end="7:50").number == 0
    off = [period(start=start, end=end) for start, end in (("7:55", "8:30"), ("7:15", "7:50"))]
    off.append(period(start="7:50", weekday=3))
    assert [p.number for p in number_by_start(off)] == [2, 1, 2]
    # given numbers and sessions are kept
    made = period(session="S", number=6, start="11:20", end="12:00")
    assert (made.session, made.number) == ("morning", 6)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {},
            "no times and no session/period to look them up "
            "(expected Bắt đầu and Kết thúc, or Buổi and Tiết)",
        ),
        ({"session": "Sáng"}, "no times and no session/period"),
        ({"session": "Sáng", "number": 6}, "no period 6 in the morning (expected 1..5)"),
        (
            {"start": "7:00", "end": "7:50"},
            "period of 50 min is longer than 45 (expected at most 45 minutes)",
        ),
        ({"start": "8:00", "end": "8:00"}, "ends at 08:00, not after its start 08:00"),
        ({"start": "8:00", "end": "7:15"}, "ends at 07:15, not after its start 08:00"),
        ({"start": "24:00"}, "bad time '24:00' (expected HH:MM, e.g. 07:00 or 7h00)"),
        ({"start": "7:00", "subject": " "}, "no subject (expected Môn, e.g. Toán)"),
        ({"start": "7:00", "class_name": ""}, "no class (expected Lớp, e.g. 6A1)"),
        ({"start": "7:00", "weekday": "CN"}, "no lessons on Sunday"),
    ],
)
def test_make_period_problems(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        period(**fields)
    assert str(raised.value).startswith(message)
    assert str(raised.value).endswith(")")


# ---------------------------------------------------------------- CSV


def test_school_export_semicolons_bom_crlf() -> None:
    path = FIXTURES / "tkb-6a1.csv"
    periods = csv_periods(path)
    assert len(periods) == 71
    assert {p.class_name for p in periods} == {"6A1", "6A2"}
    assert {p.weekday for p in periods} == {1, 2, 3, 4, 5, 6}
    first = periods[0]
    assert (first.weekday, first.start, first.end, first.subject, first.teacher) == (
        1,
        time(7),
        time(7, 45),
        "Chào cờ",
        "Nguyễn Thị Hoa",
    )
    assert first.source == f"{path}:2"
    monday = [p for p in periods if p.class_name == "6A1" and p.weekday == 1]
    assert [(p.session, p.number) for p in monday] == [("morning", n) for n in range(1, 6)] + [
        ("afternoon", n) for n in range(1, 5)
    ]
    pe = find(periods, "6A1", 1, "afternoon", 2)
    assert (pe.subject, pe.teacher, pe.start, pe.end, pe.source) == (
        "Thể dục",
        "Vũ Văn Hùng",
        time(14, 20),
        time(15, 5),
        f"{path}:8",
    )
    assert find(periods, "6A1", 1, "afternoon", 4).subject == "Hoạt động trải nghiệm, hướng nghiệp"
    saturday = find(periods, "6A1", 6, "morning", 4)
    assert (saturday.subject, saturday.start, saturday.source) == (
        "Sinh hoạt lớp",
        time(9, 40),
        f"{path}:38",
    )
    # a blank row (;;;;;;) separates the classes: 6A2 starts on line 40
    other = find(periods, "6A2", 1, "morning", 1)
    assert (other.subject, other.teacher, other.source) == (
        "Chào cờ",
        "Lương Văn Khải",
        f"{path}:40",
    )
    gdtc = find(periods, "6A2", 4, "afternoon", 3)
    assert (gdtc.subject, gdtc.start, gdtc.end) == ("GDTC", time(15, 15), time(16))


def test_export_with_times_commas_english_headers() -> None:
    path = FIXTURES / "tkb-times.csv"
    periods = csv_periods(path)
    assert len(periods) == 64 and {p.class_name for p in periods} == {"4A", "4B"}
    assert {p.weekday for p in periods} == {1, 2, 3, 4, 5}
    monday = [p for p in periods if p.class_name == "4A" and p.weekday == 1]
    # off the bell schedule: numbered by start within the day and session
    assert [(p.session, p.number, p.start, p.end) for p in monday] == [
        ("morning", 1, time(7, 15), time(7, 50)),
        ("morning", 2, time(7, 55), time(8, 30)),
        ("morning", 3, time(8, 50), time(9, 25)),
        ("morning", 4, time(9, 30), time(10, 5)),
        ("afternoon", 1, time(14), time(14, 35)),
        ("afternoon", 2, time(14, 40), time(15, 15)),
    ]
    assert (monday[5].subject, monday[5].teacher, monday[5].source) == (
        "Giáo dục thể chất",
        "Hà Quang Vinh",
        f"{path}:7",
    )
    thursday = find(periods, "4B", 4, "afternoon", 3)
    assert (thursday.subject, thursday.teacher, thursday.start) == (
        "Tiếng Anh",
        "Đinh Thị Mỹ Linh",
        time(15, 30),
    )
    # "Phòng Tin học, tầng 2" is one quoted field of an ignored column
    assert find(periods, "4A", 2, "afternoon", 1).subject == "Tin học"


def test_shipped_room_timetable() -> None:
    periods = csv_periods(CONFIG / "p101.csv")
    assert len(periods) == 37 and {p.class_name for p in periods} == {"6A1"}
    assert len([p for p in periods if p.weekday == 1]) == 9
    assert [p.subject for p in periods if is_excluded(p.subject, DEFAULT_EXCLUDED)] == [
        "Thể dục",
        "Thể dục",
    ]


def test_csv_variants(tmp_path: Path) -> None:
    text = (
        "\n"
        "  LỚP ; Thu ;BUỔI;tiết;Môn học;GV;Ghi chú\r\n"
        "\r\n"
        '6A1;Thứ 2;S;1;"Toán";"Nguyễn Thị Hoa";"dòng một\r\ndòng hai"\r\n'
        "6A1;T3;C;4;Tin học;Đỗ Đức Anh;\r\n"
    )
    path = write(tmp_path, "tkb.csv", text)
    one, two = csv_periods(path)
    assert (one.weekday, one.subject, one.number, one.source) == (1, "Toán", 1, f"{path}:4")
    assert (two.weekday, two.start, two.session, two.source) == (
        2,
        time(16, 5),
        "afternoon",
        f"{path}:6",
    )


def test_header_only_is_empty(tmp_path: Path) -> None:
    assert csv_periods(write(tmp_path, "tkb.csv", "Thứ,Buổi,Tiết,Lớp,Môn,Giáo viên\n")) == []


def problems_of(path: Path) -> list[str]:
    with pytest.raises(TimetableError) as raised:
        if path.suffix == ".ics":
            ics_periods(path)
        else:
            csv_periods(path)
    assert str(raised.value) == "\n".join(raised.value.problems)
    return raised.value.problems


EXPECTED_WEEKDAY = "(expected Thứ Hai..Thứ Bảy or 2..7)"
OVERLAP = "(expected periods of one class not to overlap)"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bad-time.csv",
            [
                (3, "bad time '7:75' (expected HH:MM, e.g. 07:00 or 7h00)"),
                (5, "bad time 'bảy giờ' (expected HH:MM, e.g. 07:00 or 7h00)"),
                (6, "bad time '8h3' (expected HH:MM, e.g. 07:00 or 7h00)"),
            ],
        ),
        (
            "bad-weekday.csv",
            [
                (3, f"unknown weekday 'Thứ Tám' {EXPECTED_WEEKDAY}"),
                (4, f"unknown weekday 'Thứ Hia' {EXPECTED_WEEKDAY}"),
                (5, f"missing weekday {EXPECTED_WEEKDAY}"),
            ],
        ),
        (
            "sunday.csv",
            [(line, f"no lessons on Sunday {EXPECTED_WEEKDAY}") for line in (3, 4, 5)],
        ),
        (
            "overlap.csv",
            [
                (3, "overlaps {path}:2 (Thứ Hai 07:30–08:15, 6A1) " + OVERLAP),
                (5, "overlaps {path}:2 (Thứ Hai 07:00–07:45, 6a1) " + OVERLAP),
                (5, "overlaps {path}:3 (Thứ Hai 07:00–07:45, 6a1) " + OVERLAP),
            ],
        ),
        (
            "too-long.csv",
            [
                (3, "period of 50 min is longer than 45 (expected at most 45 minutes)"),
                (4, "ends at 08:30, not after its start 08:45 (expected the end after the start)"),
                (5, "no period 6 in the afternoon (expected 1..4)"),
                (6, "no subject (expected Môn, e.g. Toán)"),
            ],
        ),
        (
            "missing-column.csv",
            [(1, "missing column Môn (expected headers Thứ, Buổi, Tiết, Lớp, Môn, Giáo viên)")],
        ),
        ("not-utf8.csv", [(1, "not UTF-8 text (expected a CSV saved as UTF-8)")]),
        (
            "bad.ics",
            [
                (27, "bad DTSTART '20250908T7500' (expected e.g. 20250908T070000)"),
                (35, "RRULE FREQ=DAILY is not supported (expected FREQ=WEEKLY)"),
                (42, "no lessons on Sunday (expected events on Monday..Saturday)"),
                (46, "period of 50 min is longer than 45 (expected at most 45 minutes)"),
                (53, "no lessons on Sunday (expected events on Monday..Saturday)"),
                (
                    59,
                    "unknown time zone 'Asia/Hanoi_City' "
                    "(expected an IANA name, e.g. Asia/Ho_Chi_Minh)",
                ),
                (64, "overlaps {path}:19 (Thứ Hai 07:15–08:00, 6A1) " + OVERLAP),
            ],
        ),
    ],
)
def test_malformed_files(name: str, expected: list[tuple[int, str]]) -> None:
    path = FIXTURES / name
    assert problems_of(path) == [
        f"{path}:{line}: {message.format(path=path)}" for line, message in expected
    ]


def test_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "tkb.csv", "\nDay;Class;Teacher\n2;6A1;x\n")
    assert problems_of(path) == [
        f"{path}:2: missing column {column} (expected headers Thứ, Buổi, Tiết, Lớp, Môn, Giáo viên"
        + hint
        for column, hint in [
            ("Buổi", ", or Bắt đầu and Kết thúc instead of Buổi and Tiết)"),
            ("Tiết", ", or Bắt đầu and Kết thúc instead of Buổi and Tiết)"),
            ("Môn", ")"),
        ]
    ]
    # times instead of Buổi and Tiết
    path = write(
        tmp_path, "times.csv", "Thứ,Lớp,Môn,Giáo viên,Bắt đầu,Kết thúc\n2,6A1,Toán,,7:00,7:45\n"
    )
    [only] = csv_periods(path)
    assert (only.number, only.teacher) == (1, "")


def test_bad_period_number(tmp_path: Path) -> None:
    path = write(tmp_path, "tkb.csv", "Thứ;Buổi;Tiết;Lớp;Môn;Giáo viên\n2;Sáng;một;6A1;Toán;A\n")
    assert problems_of(path) == [
        f"{path}:2: bad period number 'một' (expected Tiết as a number, e.g. 1)"
    ]


# ---------------------------------------------------------------- iCalendar


def test_google_calendar_export() -> None:
    path = FIXTURES / "google.ics"
    periods = ics_periods(path)
    # the all-day opening ceremony and the cancelled club are not periods
    assert len(periods) == 10
    assert {p.class_name for p in periods} == {"6A1"}
    assert all(p.recurrence is not None for p in periods)

    [maths] = [p for p in periods if p.subject == "Toán" and p.weekday == 1]
    assert (maths.start, maths.end, maths.session, maths.number, maths.teacher) == (
        time(7, 50),
        time(8, 35),
        "morning",
        2,
        "Nguyễn Thị Hoa",
    )
    assert maths.source == f"{path}:35"
    assert maths.recurrence is not None and maths.recurrence.until == date(2026, 1, 16)
    mondays = dates(periods, "Toán", date(2025, 9, 1), date(2026, 2, 28))
    assert mondays[0] == date(2025, 9, 8) and mondays[-1] == date(2026, 1, 12)
    assert date(2025, 11, 3) not in mondays  # EXDATE
    assert date(2025, 12, 22) not in mondays  # moved to Tuesday (RECURRENCE-ID)
    assert date(2025, 12, 23) in mondays and len(mondays) == 19 - 2 + 1
    moved = find(periods, "6A1", 2, "morning", 1)
    assert (moved.subject, moved.start, moved.source) == ("Toán", time(7), f"{path}:133")

    english = sorted((p for p in periods if p.subject == "Tiếng Anh"), key=lambda p: p.weekday)
    assert [p.weekday for p in english] == [1, 3, 5]
    assert [p.recurrence.first for p in english if p.recurrence] == [
        date(2025, 9, 15),
        date(2025, 9, 10),
        date(2025, 9, 12),
    ]
    assert {(p.teacher, p.number, p.start) for p in english} == {("Lê Thu Trang", 4, time(9, 40))}

    # COUNT=5 over Tuesdays and Thursdays from a Thursday; the teacher is the organizer
    assert dates(periods, "Ngữ văn", date(2025, 9, 1), date(2025, 12, 31)) == [
        date(2025, 9, 11),
        date(2025, 9, 16),
        date(2025, 9, 18),
        date(2025, 9, 23),
        date(2025, 9, 25),
    ]
    assert {p.teacher for p in periods if p.subject == "Ngữ văn"} == {"Trần Văn Minh"}

    # every other Saturday, 45 minutes from a DURATION
    subject = "Hoạt động trải nghiệm, hướng nghiệp"
    assert dates(periods, subject, date(2025, 9, 1), date(2025, 10, 31)) == [
        date(2025, 9, 13),
        date(2025, 9, 27),
        date(2025, 10, 11),
        date(2025, 10, 25),
    ]
    activity = find(periods, "6A1", 6, "morning", 5)
    assert (activity.subject, activity.end, activity.teacher) == (
        subject,
        time(11, 15),
        "Nguyễn Thị Hoa",
    )

    pe = find(periods, "6A1", 4, "afternoon", 1)
    assert (pe.subject, pe.teacher, pe.end) == ("Thể dục", "Vũ Văn Hùng", time(14, 15))
    assert pe.recurrence is not None and pe.recurrence.last() is None

    # a one-off written in UTC: 07:20Z is 14:20 in Hà Nội
    revision = find(periods, "6A1", 6, "afternoon", 2)
    assert (revision.subject, revision.start, revision.end, revision.teacher) == (
        "Ôn tập Toán",
        time(14, 20),
        time(15, 5),
        "Nguyễn Thị Hoa",
    )
    assert dates(periods, "Ôn tập Toán", date(2025, 9, 1), date(2026, 6, 1)) == [date(2025, 10, 25)]


def test_class_from_summary_else_argument() -> None:
    periods = ics_periods(FIXTURES / "google.ics", class_name="6A9")
    assert {p.class_name for p in periods if p.subject == "Ngữ văn"} == {"6A9"}
    assert {p.class_name for p in periods if p.subject != "Ngữ văn"} == {"6A1"}


def test_shipped_example_calendar() -> None:
    periods = ics_periods(CONFIG / "example.ics")
    assert {p.class_name for p in periods} == {"6A1"} and len(periods) == 19
    day = date(2026, 3, 2)  # a Monday of Học kỳ II
    plan = plan_day(
        periods,
        day,
        class_name="6A1",
        timezone=ZONE,
        calendar=SchoolCalendar(),
        excluded=DEFAULT_EXCLUDED,
    )
    assert [(p.period.number, p.period.subject, p.streams) for p in plan] == [
        (1, "Chào cờ", True),
        (2, "Toán", True),
        (3, "Ngữ văn", True),
        (4, "Tiếng Anh", True),
        (1, "Tin học", True),
        (2, "Thể dục", False),
    ]
    tet = date(2026, 2, 16)  # Tết: every period of the week is an EXDATE
    assert (
        plan_day(
            periods, tet, class_name="6A1", timezone=ZONE, calendar=SchoolCalendar(), excluded=()
        )
        == []
    )


CALENDAR_HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"


def calendar_file(tmp_path: Path, *events: str) -> Path:
    """A calendar of `events` (their lines, without BEGIN/END) after a 3-line head."""
    lines = [
        line
        for event in events
        for line in ("BEGIN:VEVENT", *event.strip().splitlines(), "END:VEVENT")
    ]
    return write(tmp_path, "tkb.ics", CALENDAR_HEAD + "\r\n".join([*lines, "END:VCALENDAR\r\n"]))


def test_ics_folding_floating_times_and_until(tmp_path: Path) -> None:
    folded = "DESCRIPTION:GV: Nguyễn Văn B".encode()
    cut = folded.index("ễ".encode()) + 1  # a fold inside a UTF-8 sequence
    path = tmp_path / "tkb.ics"
    before = (
        CALENDAR_HEAD + "BEGIN:VEVENT\r\n"
        "DTSTART:20250915T075000\r\n"  # floating: the school's time
        "DTEND:20250915T083500\r\n"
        "RRULE:FREQ=WEEKLY;UNTIL=20251006\r\n"
    )
    after = (
        "\r\nSUMMARY:Toán\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\n"
        "DTSTART;TZID=Asia/Ho_Chi_Minh:20250916T075000\r\n"
        "DTEND;TZID=Asia/Ho_Chi_Minh:20250916T083500\r\n"
        "RRULE:FREQ=WEEKLY;UNTIL=20250930T003000Z\r\n"  # 07:30 on the 30th: before the bell
        "SUMMARY:Ngữ văn\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    path.write_bytes(before.encode() + folded[:cut] + b"\r\n " + folded[cut:] + after.encode())
    periods = ics_periods(path)
    maths = find(periods, "6A1", 1, "morning", 2)
    assert (maths.subject, maths.teacher) == ("Toán", "Nguyễn Văn B")
    assert dates(periods, "Toán", date(2025, 9, 1), date(2025, 12, 1)) == [
        date(2025, 9, 15),
        date(2025, 9, 22),
        date(2025, 9, 29),
        date(2025, 10, 6),
    ]
    assert dates(periods, "Ngữ văn", date(2025, 9, 1), date(2025, 12, 1)) == [
        date(2025, 9, 16),
        date(2025, 9, 23),
    ]


def test_ics_every_other_week_on_several_days(tmp_path: Path) -> None:
    # from a Wednesday, every other week (weeks start on Monday): the first Monday is in
    # the third week, not the next one
    path = calendar_file(
        tmp_path,
        """
DTSTART;TZID=Asia/Ho_Chi_Minh:20250910T131500
DURATION:PT40M
RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=5
EXDATE;TZID=Asia/Ho_Chi_Minh:20250922T131500,20251006T131500
EXDATE;VALUE=DATE:20251008
SUMMARY:Tin học - 6a1
""",
    )
    periods = ics_periods(path)
    assert {(p.weekday, p.number, p.session, p.class_name) for p in periods} == {
        (1, 1, "afternoon", "6A1"),  # off the bells: first by start on its day
        (3, 1, "afternoon", "6A1"),
    }
    # five occurrences: We 10/9, Mo 22/9, We 24/9, Mo 6/10, We 8/10; three excluded
    assert dates(periods, "Tin học", date(2025, 9, 1), date(2025, 12, 31)) == [
        date(2025, 9, 10),
        date(2025, 9, 24),
    ]


def test_ics_ordinal_numbers_off_the_bells(tmp_path: Path) -> None:
    events = [
        f"DTSTART:20250908T{start}00\r\nDURATION:PT35M\r\nRRULE:FREQ=WEEKLY\r\nSUMMARY:{subject}"
        for start, subject in (("0755", "Toán"), ("0715", "Tiếng Việt"), ("1400", "Đạo đức"))
    ]
    periods = ics_periods(calendar_file(tmp_path, *events))
    assert [(p.subject, p.session, p.number) for p in periods] == [
        ("Toán", "morning", 2),
        ("Tiếng Việt", "morning", 1),
        ("Đạo đức", "afternoon", 1),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("RRULE:FREQ=WEEKLY;BYMONTH=9", "RRULE BYMONTH is not supported"),
        ("RRULE:FREQ=MONTHLY", "RRULE FREQ=MONTHLY is not supported (expected FREQ=WEEKLY)"),
        ("RRULE:FREQ=WEEKLY;INTERVAL=0", "bad RRULE INTERVAL '0'"),
        ("RRULE:FREQ=WEEKLY;BYDAY=1MO", "bad RRULE BYDAY '1MO'"),
        ("RRULE:FREQ=WEEKLY;UNTIL=2025", "bad RRULE UNTIL '2025'"),
        ("EXDATE:20251340T070000", "bad EXDATE '20251340T070000'"),
        ("RDATE:20251001T070000", "RDATE is not supported"),
    ],
)
def test_ics_rule_problems(tmp_path: Path, lines: str, message: str) -> None:
    event = f"DTSTART:20250908T070000\nDTEND:20250908T074500\n{lines}\nSUMMARY:Toán"
    path = calendar_file(tmp_path, event)
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:7: {message}")


def test_ics_event_problems(tmp_path: Path) -> None:
    path = calendar_file(
        tmp_path,
        "DTSTART:20250908T070000\nSUMMARY:Toán",
        "DTEND:20250908T074500\nSUMMARY:Toán",
        "DTSTART:20250909T230000\nDTEND:20250910T000500\nSUMMARY:Toán",
        "DTSTART:20250910T070000\nDTEND:20250910T074500\nSUMMARY:",
    )
    assert problems_of(path) == [
        f"{path}:4: VEVENT without DTEND or DURATION (expected the period's end)",
        f"{path}:8: VEVENT without DTSTART (expected the period's start)",
        f"{path}:14: ends on another day (expected a period within one day)",
        f"{path}:17: no subject (expected Môn, e.g. Toán)",
    ]


def test_ics_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tkb.ics"
    path.write_bytes(CALENDAR_HEAD.encode() + "SUMMARY:Toán\r\n".encode("cp1258"))
    assert problems_of(path) == [
        f"{path}:4: not UTF-8 text (expected an iCalendar file saved as UTF-8)"
    ]


# ---------------------------------------------------------------- overlaps and recurrence


def weekly(start: time, end: time, recurrence: Recurrence | None, line: int) -> Period:
    return Period(
        weekday=1,
        start=start,
        end=end,
        class_name="6A1",
        subject="Toán",
        teacher="",
        number=1,
        session="morning",
        source=f"tkb.ics:{line}",
        recurrence=recurrence,
    )


def test_recurrence_dates() -> None:
    rule = Recurrence(
        first=date(2025, 9, 8), interval=2, count=3, exdates=frozenset({date(2025, 9, 22)})
    )
    days = [date(2025, 9, 8) + timedelta(days=n) for n in range(70)]
    # EXDATEs still count towards COUNT
    assert [d for d in days if rule.occurs_on(d)] == [date(2025, 9, 8), date(2025, 10, 6)]
    assert rule.last() == date(2025, 10, 6)
    assert not Recurrence(first=date(2025, 9, 8)).occurs_on(date(2025, 9, 9))
    until = Recurrence(first=date(2025, 9, 8), until=date(2025, 9, 15))
    assert until.occurs_on(date(2025, 9, 15)) and not until.occurs_on(date(2025, 9, 22))
    with pytest.raises(ValueError):
        Recurrence(first=date(2025, 9, 8), interval=0)


def test_overlaps_take_recurrence_into_account() -> None:
    term_one = Recurrence(first=date(2025, 9, 8), until=date(2026, 1, 12))
    term_two = Recurrence(first=date(2026, 1, 19), until=date(2026, 5, 25))
    odd_weeks = Recurrence(first=date(2025, 9, 8), interval=2)
    even_weeks = Recurrence(first=date(2025, 9, 15), interval=2)
    every_fourth = Recurrence(first=date(2025, 9, 29), interval=4)
    a, b = time(7), time(7, 45)
    assert check_overlaps([weekly(a, b, term_one, 1), weekly(a, b, term_two, 2)]) == []
    assert check_overlaps([weekly(a, b, odd_weeks, 1), weekly(a, b, even_weeks, 2)]) == []
    assert check_overlaps([weekly(a, b, even_weeks, 1), weekly(a, b, every_fourth, 2)]) != []
    assert check_overlaps([weekly(a, b, term_one, 1), weekly(a, b, odd_weeks, 2)]) != []
    assert check_overlaps(
        [weekly(a, b, None, 1), weekly(time(7, 44), time(8, 29), term_two, 2)]
    ) == [
        "tkb.ics:2: overlaps tkb.ics:1 (Thứ Hai 07:44–08:29, 6A1) (expected periods of one "
        "class not to overlap)"
    ]
    # back to back is not an overlap; another class or weekday neither
    assert check_overlaps([weekly(a, b, None, 1), weekly(b, time(8, 30), None, 2)]) == []
    one_off = Recurrence(first=date(2025, 11, 3), count=1)
    excluded = Recurrence(
        first=date(2025, 9, 8), exdates=frozenset({date(2025, 11, 3)}), until=date(2025, 12, 1)
    )
    assert check_overlaps([weekly(a, b, excluded, 1), weekly(a, b, one_off, 2)]) == []


# ---------------------------------------------------------------- the day


@pytest.mark.parametrize(
    "subject",
    ["Thể dục", "GDTC", "Giáo dục thể chất", "the duc", "THỂ DỤC", " giáo  dục thể chất "],
)
def test_pe_is_excluded(subject: str) -> None:
    assert is_excluded(subject, DEFAULT_EXCLUDED)


@pytest.mark.parametrize("subject", ["Toán", "Thể dục thể thao", "GDCD", "Tin học"])
def test_other_subjects_are_not(subject: str) -> None:
    assert not is_excluded(subject, DEFAULT_EXCLUDED)


def test_excluded_list_is_folded_too() -> None:
    assert is_excluded("Chào cờ", ["CHAO CO"]) and is_excluded("Đạo đức", ["dao duc"])
    assert not is_excluded("Thể dục", [])


def test_school_calendar_reasons() -> None:
    calendar = SchoolCalendar(
        terms=((date(2025, 9, 5), date(2026, 1, 16)), (date(2026, 1, 19), date(2026, 5, 29))),
        holidays=((TEACHERS_DAY, TEACHERS_DAY), (date(2026, 2, 14), date(2026, 2, 22))),
    )
    assert calendar.closed_reason(MONDAY) is None
    assert calendar.closed_reason(TEACHERS_DAY) == "ngày nghỉ"
    assert calendar.closed_reason(date(2026, 2, 16)) == "ngày nghỉ"
    assert calendar.closed_reason(date(2026, 1, 17)) == "ngoài học kỳ"  # a Saturday between terms
    assert calendar.closed_reason(date(2026, 7, 1)) == "ngoài học kỳ"
    assert calendar.closed_reason(date(2025, 11, 16)) == "Chủ nhật"
    assert SchoolCalendar().closed_reason(date(2030, 7, 1)) is None
    with pytest.raises(ValueError):
        SchoolCalendar(holidays=((date(2026, 2, 22), date(2026, 2, 14)),))


def plan(
    day: date, calendar: SchoolCalendar | None = None, class_name: str = "6A1"
) -> list[tuple[object, ...]]:
    periods = csv_periods(FIXTURES / "tkb-6a1.csv")
    return [
        (p.period.subject, p.start.time(), p.streams, p.reason)
        for p in plan_day(
            periods,
            day,
            class_name=class_name,
            timezone=ZONE,
            calendar=calendar or SchoolCalendar(),
            excluded=DEFAULT_EXCLUDED,
        )
    ]


def test_plan_of_a_monday_skips_pe() -> None:
    day = plan(MONDAY)
    assert len(day) == 9
    assert [start for _, start, _, _ in day] == [*BELLS.morning, *BELLS.afternoon]
    assert day[6] == ("Thể dục", time(14, 20), False, "Thể dục: không học trực tuyến (GDTC)")
    assert all(streams for subject, _, streams, _ in day if subject != "Thể dục")
    assert plan(MONDAY, class_name="6a1") == day
    other = plan(date(2025, 11, 20), class_name="6A2")  # Thursday: GDTC in the afternoon
    assert other[-1] == ("GDTC", time(15, 15), False, "GDTC: không học trực tuyến (GDTC)")


def test_plan_of_closed_days_lists_every_period() -> None:
    holiday = SchoolCalendar(holidays=((TEACHERS_DAY, TEACHERS_DAY),))
    day = plan(TEACHERS_DAY, holiday)
    assert len(day) == 5 and {(streams, reason) for _, _, streams, reason in day} == {
        (False, "ngày nghỉ 2025-11-20")
    }
    summer = SchoolCalendar(terms=((date(2025, 9, 5), date(2026, 5, 29)),))
    day = plan(date(2026, 7, 6), summer)
    assert len(day) == 9 and {(s, r) for _, _, s, r in day} == {(False, "ngoài học kỳ")}
    assert plan(date(2025, 11, 16)) == []  # Sunday: no periods at all
    assert plan(MONDAY, class_name="7A1") == []


def test_planned_period_as_json() -> None:
    periods = csv_periods(FIXTURES / "tkb-6a1.csv")
    [first, *_] = plan_day(
        periods,
        MONDAY,
        class_name="6A1",
        timezone=ZONE,
        calendar=SchoolCalendar(),
        excluded=DEFAULT_EXCLUDED,
    )
    assert first.as_json() == {
        "start": "2025-11-17T07:00:00+07:00",
        "end": "2025-11-17T07:45:00+07:00",
        "period": 1,
        "session": "morning",
        "class": "6A1",
        "subject": "Chào cờ",
        "teacher": "Nguyễn Thị Hoa",
        "streams": True,
        "reason": None,
    }


def test_period_invariants() -> None:
    with pytest.raises(ValueError):
        weekly(time(8), time(7), None, 1)
    with pytest.raises(ValueError):
        Period(7, time(7), time(8), "6A1", "Toán", "", 1, "morning", "x:1")
    with pytest.raises(ValueError):  # a recurrence on another weekday
        weekly(time(7), time(8), Recurrence(first=date(2025, 9, 9)), 1)
