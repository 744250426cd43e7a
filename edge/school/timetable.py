"""Timetables (thời khóa biểu): weekly periods read from a school's CSV export or an
iCalendar file, checked for overlaps, and the plan of one class's day (which periods
stream, and why the others do not).

Every problem in a file is reported as ``FILE:LINE: problem (expected ...)``; readers
collect all of them and raise one `TimetableError`, returning nothing.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Session = Literal["morning", "afternoon"]

DEFAULT_EXCLUDED: tuple[str, ...] = ("Thể dục", "GDTC", "Giáo dục thể chất")

_WEEKDAY_NAMES = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
_NOON = time(12)
_EXPECTED_WEEKDAY = "(expected Thứ Hai..Thứ Bảy or 2..7)"


def _fold(text: str) -> str:
    """`text` without case, diacritics or extra whitespace: " Thể  DỤC" -> "the duc"."""
    text = text.replace("đ", "d").replace("Đ", "D")
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def _class_key(class_name: str) -> str:
    return _fold(class_name).replace(" ", "")


def _add_minutes(moment: time, minutes: int) -> time:
    return (datetime.combine(date.min, moment) + timedelta(minutes=minutes)).time()


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class BellSchedule:
    """Start times of each period per session; a period lasts period_minutes."""

    morning: tuple[time, ...]
    afternoon: tuple[time, ...]
    period_minutes: int = 45

    def times(self, session: Session, number: int) -> tuple[time, time]:
        """Start and end of tiết `number` of `session` (ValueError if there is none)."""
        starts = self.morning if session == "morning" else self.afternoon
        if not 1 <= number <= len(starts):
            expected = f"1..{len(starts)}" if starts else f"no {session} periods in the bells"
            raise ValueError(f"no period {number} in the {session} (expected {expected})")
        start = starts[number - 1]
        return start, _add_minutes(start, self.period_minutes)


@dataclass(frozen=True)
class Recurrence:
    """Which dates an iCalendar event occurs on: weekly from `first`, every `interval`
    weeks, until `until` (inclusive) or `count` occurrences, minus `exdates`."""

    first: date
    interval: int = 1
    until: date | None = None
    count: int | None = None
    exdates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval {self.interval} (expected 1 or more weeks)")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count {self.count} (expected 1 or more occurrences)")

    def occurs_on(self, day: date) -> bool:
        """Whether the event occurs on `day` (same weekday as `first`, in the rule)."""
        days = (day - self.first).days
        if days < 0 or days % 7:
            return False
        weeks, off_week = divmod(days // 7, self.interval)
        if off_week:
            return False
        if self.until is not None and day > self.until:
            return False
        if self.count is not None and weeks >= self.count:  # EXDATEs still count (RFC 5545)
            return False
        return day not in self.exdates

    def last(self) -> date | None:
        """The last date the rule allows (before exdates), None if it never ends."""
        ends = [] if self.until is None else [self.until]
        if self.count is not None:
            ends.append(self.first + timedelta(weeks=self.interval * (self.count - 1)))
        return min(ends) if ends else None


@dataclass(frozen=True)
class Period:
    """One weekly period (tiết) of one class."""

    weekday: int  # ISO: 1 = Monday (Thứ Hai) ... 6 = Saturday (Thứ Bảy)
    start: time
    end: time
    class_name: str
    subject: str
    teacher: str
    number: int  # tiết within its session, 1-based
    session: Session
    source: str  # "FILE:LINE" where it was defined
    recurrence: Recurrence | None = None  # ICS events; None = every week

    def __post_init__(self) -> None:
        if not 1 <= self.weekday <= 6:
            raise ValueError(f"weekday {self.weekday} (expected 1 = Monday .. 6 = Saturday)")
        if self.end <= self.start:
            raise ValueError(f"ends at {self.end} before it starts at {self.start}")
        if self.recurrence is not None and self.recurrence.first.isoweekday() != self.weekday:
            raise ValueError(f"recurrence starts on {self.recurrence.first:%A}, not the weekday")

    def occurs_on(self, day: date) -> bool:
        """Whether the period takes place on `day`."""
        if day.isoweekday() != self.weekday:
            return False
        return self.recurrence is None or self.recurrence.occurs_on(day)


class TimetableError(Exception):
    """A bad timetable; `problems` are 'FILE:LINE: problem (expected ...)' lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- fields

_WEEKDAY_WORDS = (
    ("hai", "monday", "mon"),
    ("ba", "tuesday", "tue", "tues"),
    ("tu", "wednesday", "wed"),
    ("nam", "thursday", "thu", "thur", "thurs"),
    ("sau", "friday", "fri"),
    ("bay", "saturday", "sat"),
)
_WEEKDAYS: dict[str, int] = {}  # Vietnamese, folded and without spaces: "thuhai", "thu2", "t2", "2"
_ENGLISH_WEEKDAYS: dict[str, int] = {}  # only for ASCII input: "Thu" is Thursday, "Thứ" is not
for _iso, (_word, *_english) in enumerate(_WEEKDAY_WORDS, start=1):
    _digit = str(_iso + 1)
    _WEEKDAYS.update(dict.fromkeys(("thu" + _word, "thu" + _digit, "t" + _digit, _digit), _iso))
    _ENGLISH_WEEKDAYS.update(dict.fromkeys(_english, _iso))
_SUNDAY = {"chunhat", "cn", "sunday", "sun", "8", "thu8", "t8"}


def parse_weekday(value: str | int) -> int:
    """ISO weekday (1 = Monday .. 6 = Saturday) of a Vietnamese or English day name or
    of its Vietnamese number (Thứ 2 = Monday .. Thứ 7 = Saturday)."""
    if isinstance(value, str):
        key = _fold(value).replace(" ", "").removesuffix(".")
        if not key:
            raise ValueError(f"missing weekday {_EXPECTED_WEEKDAY}")
    else:
        key = "" if isinstance(value, bool) else str(value)
    if key in _SUNDAY:
        raise ValueError(f"no lessons on Sunday {_EXPECTED_WEEKDAY}")
    english = _ENGLISH_WEEKDAYS if str(value).isascii() else {}
    if key not in _WEEKDAYS and key not in english:
        shown = value.strip() if isinstance(value, str) else value
        raise ValueError(f"unknown weekday '{shown}' {_EXPECTED_WEEKDAY}")
    return _WEEKDAYS.get(key) or english[key]


_SESSIONS: dict[str, Session] = {
    **dict.fromkeys(("sang", "s", "buoisang", "morning", "am"), "morning"),
    **dict.fromkeys(("chieu", "c", "buoichieu", "afternoon", "pm"), "afternoon"),
}


def parse_session(value: str) -> Session:
    """The session of a Buổi value: Sáng/S/morning/AM or Chiều/C/afternoon/PM (any case,
    with or without diacritics)."""
    key = _fold(value).replace(" ", "").removesuffix(".")
    if key not in _SESSIONS:
        raise ValueError(f"unknown session '{value.strip()}' (expected Sáng or Chiều)")
    return _SESSIONS[key]


_TIME = re.compile(r"(\d{1,2})(?::(\d{2})(?::(\d{2}))?|[hHgG](\d{2})?)")


def _parse_time(value: str | time) -> time:
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    match = _TIME.fullmatch(value.strip())
    if match is not None:
        hour, minute = int(match[1]), int(match[2] or match[4] or 0)
        second = int(match[3] or 0)
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second)
    raise ValueError(f"bad time '{value.strip()}' (expected HH:MM, e.g. 07:00 or 7h00)")


def _parse_number(value: str) -> int:
    match = re.fullmatch(r"(?:tiet\s*)?(\d{1,2})", _fold(value))
    if match is None:
        raise ValueError(f"bad period number '{value.strip()}' (expected Tiết as a number, e.g. 1)")
    return int(match[1])


def make_period(
    *,
    weekday: str | int,
    class_name: str,
    subject: str,
    teacher: str,
    source: str,
    bells: BellSchedule,
    max_minutes: int,
    session: str | None = None,
    number: int | None = None,
    start: str | time | None = None,
    end: str | time | None = None,
) -> Period:
    """One weekly period from its fields as written; times absent come from `bells`.

    Raises ValueError("problem (expected ...)"); callers prefix "FILE:LINE: ".
    A `number` left out is the bell-schedule period starting at `start`, else 0: the
    readers then number such periods by start (`number_by_start`).
    """
    iso_weekday = parse_weekday(weekday)
    class_name = " ".join(class_name.split())
    subject = " ".join(subject.split())
    if not class_name:
        raise ValueError("no class (expected Lớp, e.g. 6A1)")
    if not subject:
        raise ValueError("no subject (expected Môn, e.g. Toán)")
    part = parse_session(session) if session is not None and session.strip() else None
    if number is not None and number < 1:
        raise ValueError(f"period {number} (expected Tiết 1 or more)")
    first = _parse_time(start) if start is not None and start != "" else None
    last = _parse_time(end) if end is not None and end != "" else None
    if first is None:
        if part is None or number is None:
            raise ValueError(
                "no times and no session/period to look them up "
                "(expected Bắt đầu and Kết thúc, or Buổi and Tiết)"
            )
        first, bell_end = bells.times(part, number)
        last = bell_end if last is None else last
    elif last is None:
        last = _add_minutes(first, bells.period_minutes)
    if part is None:
        part = "morning" if first < _NOON else "afternoon"
    if number is None:
        starts = bells.morning if part == "morning" else bells.afternoon
        number = starts.index(first) + 1 if first in starts else 0
    if last <= first:
        raise ValueError(
            f"ends at {last:%H:%M}, not after its start {first:%H:%M} "
            "(expected the end after the start)"
        )
    seconds = _seconds(last) - _seconds(first)
    if seconds > max_minutes * 60:
        raise ValueError(
            f"period of {math.ceil(seconds / 60)} min is longer than {max_minutes} "
            f"(expected at most {max_minutes} minutes)"
        )
    return Period(
        weekday=iso_weekday,
        start=first,
        end=last,
        class_name=class_name,
        subject=subject,
        teacher=" ".join(teacher.split()),
        number=number,
        session=part,
        source=source,
    )


def number_by_start(periods: Sequence[Period]) -> list[Period]:
    """`periods` with each number 0 (a start off the bell schedule) replaced by its rank
    among the distinct start times of its class, weekday and session."""
    starts: dict[tuple[str, int, Session], set[time]] = {}
    for period in periods:
        key = (_class_key(period.class_name), period.weekday, period.session)
        starts.setdefault(key, set()).add(period.start)
    ranks = {key: {t: i for i, t in enumerate(sorted(times), 1)} for key, times in starts.items()}
    return [
        replace(p, number=ranks[(_class_key(p.class_name), p.weekday, p.session)][p.start])
        if p.number == 0
        else p
        for p in periods
    ]


def _line_of(source: str) -> int:
    line = source.rpartition(":")[2]
    return int(line) if line.isdigit() else 0


def _raise_if(problems: list[str]) -> None:
    if problems:
        problems.sort(key=lambda problem: _line_of(problem.split(": ", 1)[0]))
        raise TimetableError(problems)


# ---------------------------------------------------------------- overlaps

_FAR = 1100  # occurrences walked at most when comparing recurrences (20 years weekly)


def _dates(recurrence: Recurrence) -> Iterator[date] | None:
    """The dates of a recurrence that ends (None if it never does, or only far away)."""
    last = recurrence.last()
    if last is None or (last - recurrence.first).days > 7 * recurrence.interval * _FAR:
        return None
    step = timedelta(weeks=recurrence.interval)
    days = (recurrence.first + step * k for k in range(_FAR + 1))
    return (d for d in days if d <= last and recurrence.occurs_on(d))


def _can_share_a_date(one: Recurrence | None, other: Recurrence | None) -> bool:
    if one is None and other is None:
        return True
    for finite, rest in ((one, other), (other, one)):
        dates = None if finite is None else _dates(finite)
        if dates is not None:
            return any(rest is None or rest.occurs_on(d) for d in dates)
    if one is None or other is None:
        return True
    days = (other.first - one.first).days
    return days % 7 == 0 and (days // 7) % math.gcd(one.interval, other.interval) == 0


def check_overlaps(periods: Sequence[Period]) -> list[str]:
    """Problems for periods of one class that overlap on some day (each pair once, at
    the later-listed period)."""
    groups: dict[tuple[str, int], list[Period]] = {}
    for period in periods:
        groups.setdefault((_class_key(period.class_name), period.weekday), []).append(period)
    found: list[tuple[int, str]] = []
    index = {id(p): i for i, p in enumerate(periods)}
    for group in groups.values():
        for j, later in enumerate(group):
            for earlier in group[:j]:
                if not (earlier.start < later.end and later.start < earlier.end):
                    continue
                if not _can_share_a_date(earlier.recurrence, later.recurrence):
                    continue
                where = (
                    f"{_WEEKDAY_NAMES[later.weekday - 1]} "
                    f"{later.start:%H:%M}–{later.end:%H:%M}, {later.class_name}"
                )
                found.append(
                    (
                        index[id(later)],
                        f"{later.source}: overlaps {earlier.source} ({where}) "
                        "(expected periods of one class not to overlap)",
                    )
                )
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


# ---------------------------------------------------------------- CSV

_COLUMNS: dict[str, tuple[str, ...]] = {
    "Thứ": ("thu", "ngay trong tuan", "day", "weekday"),
    "Buổi": ("buoi", "buoi hoc", "session"),
    "Tiết": ("tiet", "tiet hoc", "tiet thu", "period"),
    "Lớp": ("lop", "ten lop", "class"),
    "Môn": ("mon", "mon hoc", "subject"),
    "Giáo viên": ("giao vien", "gv", "giao vien day", "teacher"),
    "Bắt đầu": ("bat dau", "gio bat dau", "start", "start time"),
    "Kết thúc": ("ket thuc", "gio ket thuc", "end", "end time"),
}
_HEADERS = "headers Thứ, Buổi, Tiết, Lớp, Môn, Giáo viên"


def _read_text(path: Path, kind: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TimetableError(
            [f"{path}:1: cannot read: {exc.strerror} (expected a {kind})"]
        ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TimetableError(
            [f"{path}:1: not UTF-8 text (expected a {kind} saved as UTF-8)"]
        ) from None


def read_csv(path: Path, *, bells: BellSchedule, max_minutes: int) -> list[Period]:
    """Every period of every class in a CSV export (`Thứ, Buổi, Tiết, Lớp, Môn, Giáo viên`,
    optionally `Bắt đầu, Kết thúc`; or the English names); UTF-8 with or without BOM,
    `,` or `;` separated. Raises TimetableError listing every bad row and overlap."""
    text = _read_text(path, "CSV")
    lines = text.splitlines()
    header_line = next((i for i, line in enumerate(lines, 1) if line.strip()), 0)
    if header_line == 0:
        raise TimetableError([f"{path}:1: no header line (expected {_HEADERS})"])
    header_text = lines[header_line - 1]
    delimiter = max((",", ";", "\t"), key=header_text.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[str] = []
    periods: list[Period] = []
    columns: dict[str, int] | None = None
    line = 0
    try:
        for row in reader:
            line, row_line = reader.line_num, line + 1
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = _columns(row)
                missing = _missing_columns(columns)
                if missing:
                    raise TimetableError([f"{path}:{row_line}: {m}" for m in missing])
                continue
            try:
                source = f"{path}:{row_line}"
                periods.append(_row_period(row, columns, source, bells, max_minutes))
            except ValueError as exc:
                problems.append(f"{path}:{row_line}: {exc}")
    except csv.Error as exc:
        problems.append(f"{path}:{line + 1}: {exc} (expected CSV fields, quotes closed)")
    periods = number_by_start(periods)
    problems += check_overlaps(periods)
    _raise_if(problems)
    return periods


def _row_period(
    row: list[str], columns: dict[str, int], source: str, bells: BellSchedule, max_minutes: int
) -> Period:
    def cell(label: str) -> str:
        index = columns.get(label)
        return row[index].strip() if index is not None and index < len(row) else ""

    number = cell("Tiết")
    return make_period(
        weekday=cell("Thứ"),
        class_name=cell("Lớp"),
        subject=cell("Môn"),
        teacher=cell("Giáo viên"),
        source=source,
        bells=bells,
        max_minutes=max_minutes,
        session=cell("Buổi") or None,
        number=_parse_number(number) if number else None,
        start=cell("Bắt đầu") or None,
        end=cell("Kết thúc") or None,
    )


def _columns(header: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        folded = _fold(name).rstrip(":")
        for label, aliases in _COLUMNS.items():
            if folded in aliases and label not in columns:
                columns[label] = index
    return columns


def _missing_columns(columns: dict[str, int]) -> list[str]:
    required = ["Thứ", "Lớp", "Môn", "Giáo viên"]
    if "Bắt đầu" not in columns:
        required[1:1] = ["Buổi", "Tiết"]
    return [
        f"missing column {label} (expected {_HEADERS}"
        + (
            ", or Bắt đầu and Kết thúc instead of Buổi and Tiết)"
            if label in ("Buổi", "Tiết")
            else ")"
        )
        for label in required
        if label not in columns
    ]


# ---------------------------------------------------------------- iCalendar


class _LineError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class _Property:
    name: str
    params: dict[str, str]
    value: str
    line: int


@dataclass
class _Event:
    line: int
    properties: dict[str, list[_Property]] = field(default_factory=dict)

    def get(self, name: str) -> _Property | None:
        found = self.properties.get(name)
        return found[0] if found else None

    def text(self, name: str) -> str:
        found = self.get(name)
        return "" if found is None else _unescape(found.value)


_WINDOWS_ZONES = {"SE Asia Standard Time": "Asia/Ho_Chi_Minh"}
_ICS_DAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_RRULE_PARTS = {"FREQ", "INTERVAL", "BYDAY", "UNTIL", "COUNT", "WKST"}


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m[1] in "nN" else m[1], value)


def _logical_lines(data: bytes, path: Path) -> list[tuple[int, str]]:
    """Unfolded content lines with the number of their first physical line (unfolding is
    done on bytes: a fold may split a UTF-8 sequence)."""
    folded: list[tuple[int, bytearray]] = []
    for number, raw in enumerate(re.split(rb"\r\n|\n|\r", data.removeprefix(b"\xef\xbb\xbf")), 1):
        if raw[:1] in (b" ", b"\t") and folded:
            folded[-1][1].extend(raw[1:])
        elif raw.strip():
            folded.append((number, bytearray(raw)))
    lines = []
    for number, raw in folded:
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            message = "not UTF-8 text (expected an iCalendar file saved as UTF-8)"
            raise TimetableError([f"{path}:{number}: {message}"]) from None
    return lines


def _split_property(text: str, line: int) -> _Property:
    quoted = False
    cuts: list[int] = []
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == ";":
            cuts.append(index)
        elif not quoted and char == ":":
            head, value = text[:index], text[index + 1 :]
            break
    else:
        raise _LineError(line, f"no ':' in '{text[:40]}' (expected NAME:VALUE content lines)")
    pieces = [head[a + 1 : b] for a, b in zip([-1, *cuts], [*cuts, len(head)], strict=True)]
    params = {}
    for piece in pieces[1:]:
        key, _, param = piece.partition("=")
        params[key.strip().upper()] = param.strip().strip('"')
    return _Property(pieces[0].strip().upper(), params, value, line)


def _zone(name: str, line: int) -> tzinfo:
    name = _WINDOWS_ZONES.get(name, name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _LineError(
            line, f"unknown time zone '{name}' (expected an IANA name, e.g. Asia/Ho_Chi_Minh)"
        ) from None


def _moment(
    text: str, params: dict[str, str], line: int, what: str, floating: tzinfo
) -> date | datetime:
    """A DATE or an aware DATE-TIME (in its own zone: TZID, UTC, else `floating`)."""
    text = text.strip()
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?", text)
    try:
        if match is None:
            raise ValueError
        day = date(int(match[1]), int(match[2]), int(match[3]))
        if match[4] is None:
            return day
        naive = datetime.combine(day, time(int(match[4]), int(match[5]), int(match[6])))
    except ValueError:
        raise _LineError(line, f"bad {what} '{text}' (expected e.g. 20250908T070000)") from None
    if match[7]:
        return naive.replace(tzinfo=UTC)
    if "TZID" in params:
        return naive.replace(tzinfo=_zone(params["TZID"], line))
    return naive.replace(tzinfo=floating)


def _duration(prop: _Property) -> timedelta:
    match = re.fullmatch(
        r"\+?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", prop.value.strip()
    )
    if match is None or not any(match.groups()):
        raise _LineError(prop.line, f"bad DURATION '{prop.value}' (expected e.g. PT45M)")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True)
class _Rule:
    interval: int
    days: tuple[int, ...]  # Python weekdays (0 = Monday), empty: DTSTART's
    until: date | datetime | None
    count: int | None
    week_start: int


def _rule(prop: _Property, floating: tzinfo) -> _Rule:
    parts: dict[str, str] = {}
    for item in prop.value.strip().split(";"):
        key, equals, value = item.partition("=")
        if not equals:
            raise _LineError(prop.line, f"bad RRULE part '{item}' (expected KEY=VALUE)")
        parts[key.strip().upper()] = value.strip()
    freq = parts.get("FREQ", "")
    if freq.upper() != "WEEKLY":
        shown = f"FREQ={freq}" if freq else "without FREQ"
        raise _LineError(prop.line, f"RRULE {shown} is not supported (expected FREQ=WEEKLY)")
    for key in parts:
        if key not in _RRULE_PARTS:
            raise _LineError(
                prop.line,
                f"RRULE {key} is not supported (expected FREQ=WEEKLY with INTERVAL, BYDAY, "
                "UNTIL or COUNT)",
            )

    def whole(key: str, what: str) -> int | None:
        if key not in parts:
            return None
        if not parts[key].isdigit() or int(parts[key]) < 1:
            raise _LineError(prop.line, f"bad RRULE {key} '{parts[key]}' (expected {what})")
        return int(parts[key])

    def days(key: str) -> tuple[int, ...]:
        names = [d.strip().upper() for d in parts.get(key, "").split(",") if d.strip()]
        bad = [d for d in names if d not in _ICS_DAYS]
        if bad:
            raise _LineError(
                prop.line, f"bad RRULE {key} '{parts[key]}' (expected days like MO,WE,FR)"
            )
        return tuple(dict.fromkeys(_ICS_DAYS[d] for d in names))

    until = None
    if "UNTIL" in parts:
        until = _moment(parts["UNTIL"], {}, prop.line, "RRULE UNTIL", floating)
    week_start = days("WKST")
    return _Rule(
        interval=whole("INTERVAL", "a whole number of weeks, 1 or more") or 1,
        days=days("BYDAY"),
        until=until,
        count=whole("COUNT", "a whole number of occurrences, 1 or more"),
        week_start=week_start[0] if week_start else 0,
    )


def _teacher(event: _Event) -> str:
    description = event.text("DESCRIPTION")
    description = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", description)
    description = html.unescape(re.sub(r"<[^>]*>", "", description))
    for line in description.splitlines():
        key, colon, value = line.partition(":")
        if colon and _fold(key) in ("giao vien", "gv", "gvbm", "giao vien bo mon", "teacher"):
            return value.strip()
    organizer = event.get("ORGANIZER")
    return "" if organizer is None else organizer.params.get("CN", "")


_CLASS = re.compile(r"(?:lớp|lop|class)?\s*(\d{1,2}\s*[A-ZĐ]\s*\d{0,2}|\d{1,2}/\d{1,2})", re.I)


def _subject_and_class(summary: str) -> tuple[str, str | None]:
    """'Toán - 6A1', '6A1: Toán', 'Toán (6A1)' -> ('Toán', '6A1'); else (summary, None)."""
    summary = " ".join(summary.split())
    bracketed = re.fullmatch(r"(.+?)\s*\((.+)\)", summary)
    if bracketed and _CLASS.fullmatch(bracketed[2].strip()):
        return bracketed[1], _class_of(bracketed[2])
    for separator in (" - ", " – ", " — ", ": ", " | "):
        head, found, tail = summary.rpartition(separator)
        if found and _CLASS.fullmatch(tail.strip()):
            return head.strip(), _class_of(tail)
        head, found, tail = summary.partition(separator)
        if found and _CLASS.fullmatch(head.strip()):
            return tail.strip(), _class_of(head)
    return summary, None


def _class_of(text: str) -> str:
    match = _CLASS.fullmatch(text.strip())
    assert match is not None
    return match[1].replace(" ", "").upper()


def _local_date(moment: date | datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date() if isinstance(moment, datetime) else moment


def _events(lines: list[tuple[int, str]], path: Path, problems: list[str]) -> list[_Event]:
    events: list[_Event] = []
    stack: list[str] = []
    current: _Event | None = None
    for line, text in lines:
        try:
            prop = _split_property(text, line)
        except _LineError as exc:
            problems.append(f"{path}:{line}: {exc}")
            continue
        if not stack and prop.name != "BEGIN":
            raise TimetableError([f"{path}:{line}: not iCalendar (expected BEGIN:VCALENDAR)"])
        if prop.name == "BEGIN":
            stack.append(prop.value.strip().upper())
            if stack[-1] == "VEVENT":
                current = _Event(line)
        elif prop.name == "END":
            name = prop.value.strip().upper()
            if not stack or stack[-1] != name:
                open_name = stack[-1] if stack else "nothing"
                raise TimetableError(
                    [f"{path}:{line}: END:{name} closes {open_name} (expected END:{open_name})"]
                )
            stack.pop()
            if name == "VEVENT" and current is not None:
                events.append(current)
                current = None
        elif current is not None and stack[-1] == "VEVENT":
            current.properties.setdefault(prop.name, []).append(prop)
    if stack:
        last = lines[-1][0] if lines else 1
        raise TimetableError([f"{path}:{last}: {stack[-1]} not closed (expected END:{stack[-1]})"])
    return events


def read_ics(
    path: Path,
    *,
    timezone: ZoneInfo,
    bells: BellSchedule,
    max_minutes: int,
    class_name: str,
) -> list[Period]:
    """The periods of an iCalendar export (e.g. Google Calendar), one per event and
    weekday, with their recurrence; times in `timezone`.

    Supported: DTSTART/DTEND or DURATION, weekly RRULE (INTERVAL, BYDAY, UNTIL, COUNT,
    WKST), EXDATE, RECURRENCE-ID overrides and STATUS:CANCELLED; all-day events are
    skipped (they are not periods). SUMMARY is the subject, with its class split out
    when it reads 'Toán - 6A1' or '6A1: Toán' (else the class is `class_name`); the
    teacher is 'Giáo viên: X' / 'GV: X' / 'Teacher: X' in DESCRIPTION, else ORGANIZER's
    CN. With several BYDAY days, COUNT counts their occurrences together, exactly.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TimetableError([f"{path}:1: cannot read: {exc.strerror} (expected a file)"]) from exc
    problems: list[str] = []
    events = _events(_logical_lines(data, path), path, problems)
    moved: dict[str, set[date]] = {}  # UID -> dates whose occurrence an override replaces
    for event in events:
        uid, original = event.get("UID"), event.get("RECURRENCE-ID")
        if uid is not None and original is not None:
            try:
                day = _moment(
                    original.value, original.params, original.line, "RECURRENCE-ID", timezone
                )
            except _LineError as exc:
                problems.append(f"{path}:{exc.line}: {exc}")
                continue
            moved.setdefault(uid.value.strip(), set()).add(_local_date(day, timezone))
    periods: list[Period] = []
    for event in events:
        if event.text("STATUS").strip().upper() == "CANCELLED":
            continue
        uid = event.get("UID")
        overridden = (
            set()
            if event.get("RECURRENCE-ID") or uid is None
            else moved.get(uid.value.strip(), set())
        )
        try:
            periods += _event_periods(
                event,
                path=path,
                zone=timezone,
                bells=bells,
                max_minutes=max_minutes,
                class_name=class_name,
                overridden=overridden,
            )
        except _LineError as exc:
            problems.append(f"{path}:{exc.line}: {exc}")
    periods = number_by_start(periods)
    problems += check_overlaps(periods)
    _raise_if(problems)
    return periods


def _event_periods(
    event: _Event,
    *,
    path: Path,
    zone: ZoneInfo,
    bells: BellSchedule,
    max_minutes: int,
    class_name: str,
    overridden: set[date],
) -> list[Period]:
    begin = event.get("DTSTART")
    if begin is None:
        raise _LineError(event.line, "VEVENT without DTSTART (expected the period's start)")
    start = _moment(begin.value, begin.params, begin.line, "DTSTART", zone)
    if not isinstance(start, datetime):
        return []  # an all-day event: a note in the calendar, not a period
    finish, duration_prop = event.get("DTEND"), event.get("DURATION")
    if finish is not None:
        end = _moment(finish.value, finish.params, finish.line, "DTEND", zone)
        if not isinstance(end, datetime):
            raise _LineError(finish.line, f"bad DTEND '{finish.value}' (expected a date and time)")
        duration, end_line = end - start, finish.line
    elif duration_prop is not None:
        duration, end_line = _duration(duration_prop), duration_prop.line
    else:
        raise _LineError(event.line, "VEVENT without DTEND or DURATION (expected the period's end)")
    rule_prop = event.get("RRULE")
    rule = _rule(rule_prop, start.tzinfo or zone) if rule_prop is not None else None
    excluded = set(overridden)
    for prop in event.properties.get("EXDATE", []):
        for value in prop.value.split(","):
            excluded.add(_local_date(_moment(value, prop.params, prop.line, "EXDATE", zone), zone))
    if event.get("RDATE") is not None:
        rdate = event.properties["RDATE"][0]
        raise _LineError(rdate.line, "RDATE is not supported (expected RRULE and EXDATE)")
    subject, summary_class = _subject_and_class(event.text("SUMMARY"))
    teacher = _teacher(event)
    source = f"{path}:{event.line}"

    firsts = _firsts(start, rule)  # the first date of each weekday, in DTSTART's zone
    periods = []
    for first, count in firsts:
        local_start = datetime.combine(first, start.timetz()).astimezone(zone)
        local_end = (datetime.combine(first, start.timetz()) + duration).astimezone(zone)
        if local_start.isoweekday() == 7:
            by_rule = rule_prop is not None and rule is not None and rule.days
            line = rule_prop.line if by_rule and rule_prop is not None else begin.line
            raise _LineError(line, "no lessons on Sunday (expected events on Monday..Saturday)")
        if local_end.date() != local_start.date():
            raise _LineError(end_line, "ends on another day (expected a period within one day)")
        shift = local_start.date() - first
        until = None
        if rule is not None and rule.until is not None:
            until = _last_date(rule.until, start) + shift
        recurrence = Recurrence(
            first=local_start.date(),
            interval=rule.interval if rule is not None else 1,
            until=until,
            count=count,
            exdates=frozenset(d for d in excluded if d.weekday() == local_start.weekday()),
        )
        try:
            period = make_period(
                weekday=local_start.isoweekday() + 1,
                class_name=summary_class or class_name,
                subject=subject,
                teacher=teacher,
                source=source,
                bells=bells,
                max_minutes=max_minutes,
                start=local_start.time(),
                end=local_end.time(),
            )
        except ValueError as exc:
            raise _LineError(event.line, str(exc)) from None
        periods.append(replace(period, recurrence=recurrence))
    return periods


def _last_date(until: date | datetime, start: datetime) -> date:
    """The last date (in DTSTART's zone) whose occurrence starts by `until`."""
    if not isinstance(until, datetime):
        return until
    local = until.astimezone(start.tzinfo)
    return local.date() if local.time() >= start.time() else local.date() - timedelta(days=1)


def _firsts(start: datetime, rule: _Rule | None) -> list[tuple[date, int | None]]:
    """(first date, count) per weekday of the rule; count None when the rule has none."""
    day = start.date()
    if rule is None:
        return [(day, 1)]
    week = day - timedelta(days=(day.weekday() - rule.week_start) % 7)
    firsts = []
    for weekday in rule.days or (day.weekday(),):
        first = week + timedelta(days=(weekday - rule.week_start) % 7)
        firsts.append(first if first >= day else first + timedelta(weeks=rule.interval))
    if rule.count is None:
        return [(first, None) for first in sorted(firsts)]
    last = None if rule.until is None else _last_date(rule.until, start)
    step = timedelta(weeks=rule.interval)
    occurrences = sorted(f + step * k for f in firsts for k in range(rule.count))
    counted = [d for d in occurrences if last is None or d <= last][: rule.count]
    counts = [sum(1 for d in counted if d.weekday() == f.weekday()) for f in firsts]
    return [(f, n) for f, n in sorted(zip(firsts, counts, strict=True)) if n]


# ---------------------------------------------------------------- the day


def _folded_names(names: Iterable[str]) -> set[str]:
    return {_fold(name) for name in names}


def is_excluded(subject: str, excluded: Iterable[str]) -> bool:
    """Whether `subject` is one of `excluded`, compared without case, diacritics
    or extra whitespace ("THỂ DỤC" is "Thể dục")."""
    return _fold(subject) in _folded_names(excluded)


@dataclass(frozen=True)
class SchoolCalendar:
    """School terms and holidays, inclusive date ranges; no terms: always in term."""

    terms: tuple[tuple[date, date], ...] = ()
    holidays: tuple[tuple[date, date], ...] = ()

    def __post_init__(self) -> None:
        for first, last in (*self.terms, *self.holidays):
            if last < first:
                raise ValueError(
                    f"range {first}..{last} ends before it starts (expected FIRST..LAST)"
                )

    def closed_reason(self, day: date) -> str | None:
        """None if lessons run on `day`, else why not: "Chủ nhật", "ngày nghỉ" or
        "ngoài học kỳ"."""
        if day.isoweekday() == 7:
            return "Chủ nhật"
        if any(first <= day <= last for first, last in self.holidays):
            return "ngày nghỉ"
        if self.terms and not any(first <= day <= last for first, last in self.terms):
            return "ngoài học kỳ"
        return None


@dataclass(frozen=True)
class PlannedPeriod:
    """One period of one day: when it runs, and whether it streams (if not, why)."""

    period: Period
    start: datetime  # aware, in the school's timezone
    end: datetime
    streams: bool
    reason: str | None

    def as_json(self) -> dict[str, object]:
        """The planned period as JSON-ready values."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "period": self.period.number,
            "session": self.period.session,
            "class": self.period.class_name,
            "subject": self.period.subject,
            "teacher": self.period.teacher,
            "streams": self.streams,
            "reason": self.reason,
        }


def plan_day(
    periods: Sequence[Period],
    day: date,
    *,
    class_name: str,
    timezone: ZoneInfo,
    calendar: SchoolCalendar,
    excluded: Iterable[str],
) -> list[PlannedPeriod]:
    """The class's periods on `day`, by start; on a closed day all are listed, none
    streaming, with the calendar's reason; excluded subjects (PE) do not stream."""
    closed = calendar.closed_reason(day)
    if closed == "ngày nghỉ":
        closed = f"ngày nghỉ {day.isoformat()}"
    skipped = _folded_names(excluded)
    key = _class_key(class_name)
    planned = []
    for period in periods:
        if _class_key(period.class_name) != key or not period.occurs_on(day):
            continue
        reason = closed
        if reason is None and _fold(period.subject) in skipped:
            reason = f"{period.subject}: không học trực tuyến"
            if is_excluded(period.subject, DEFAULT_EXCLUDED):
                reason += " (GDTC)"
        planned.append(
            PlannedPeriod(
                period=period,
                start=datetime.combine(day, period.start, tzinfo=timezone),
                end=datetime.combine(day, period.end, tzinfo=timezone),
                streams=reason is None,
                reason=reason,
            )
        )
    return sorted(planned, key=lambda p: (p.start, p.end, p.period.number))
