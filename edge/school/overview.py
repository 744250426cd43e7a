"""What the school hub makes of its rooms' reports: the day's periods of every class
(streamed, skipped and why, not live at the bell, not reported yet), each room's state
from its last heartbeat, and the week per grade (khối) for the district office."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.school.hub import Beat, HeldLesson
from edge.school.reports import Cell

SUMMARY_NUMBERS = slice(7, 11)  # Sĩ số, Học ở nhà, Trực tuyến, Tỉ lệ (%) of a summary row


@dataclass(frozen=True)
class PeriodLine:
    """One period of one class on the hub's day table."""

    room: str
    class_name: str
    start: dt.datetime | None
    end: dt.datetime | None
    label: str  # the period, as the report writes it
    subject: str
    teacher: str
    status: str  # in Vietnamese
    level: str  # ok | info | warn | bad
    numbers: list[Cell]  # the report's Sĩ số, Học ở nhà, Trực tuyến, Tỉ lệ; empty if none


def _moment(text: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _period_label(period: Mapping[str, Any]) -> str:
    number = period.get("period")
    session = "chiều" if period.get("session") == "afternoon" else "sáng"
    return f"{number} ({session})" if number is not None else "Thêm"


def day_lines(
    rooms: Mapping[str, str],
    day: dt.date,
    lessons: Sequence[HeldLesson],
    plans: Mapping[tuple[str, dt.date], list[Any]],
    beats: Mapping[str, Beat],
    now: dt.datetime,
    grace: dt.timedelta,
) -> tuple[list[PeriodLine], list[str]]:
    """Every class's periods on `day` (`rooms`: room -> class) and the rooms that have
    sent nothing for that day yet (their pupils are not counted absent)."""
    lines: list[PeriodLine] = []
    silent: list[str] = []
    for room, class_name in sorted(rooms.items(), key=lambda item: (item[1], item[0])):
        own = [held for held in lessons if held.room == room and held.cells.day == day]
        plan = plans.get((room, day))
        beat = beats.get(room)
        if not own and plan is None:
            silent.append(room)
            continue
        matched: set[str] = set()
        for period in plan or []:
            start, end = _moment(period.get("start")), _moment(period.get("end"))
            held = next((h for h in own if start is not None and h.cells.start == start), None)
            base: dict[str, Any] = {
                "room": room,
                "class_name": class_name,
                "start": start,
                "end": end,
                "label": _period_label(period),
                "subject": str(period.get("subject", "")),
                "teacher": str(period.get("teacher", "")),
            }
            if held is not None:
                matched.add(held.lesson_id)
                lines.append(_held_line(held, base))
            elif not period.get("streams"):
                reason = str(period.get("reason") or "không học trực tuyến")
                lines.append(
                    PeriodLine(**base, status=f"Không phát: {reason}", level="info", numbers=[])
                )
            elif start is None or now < start + grace:
                lines.append(PeriodLine(**base, status="Chưa đến giờ", level="info", numbers=[]))
            elif beat is not None and beat.received_at >= start + grace:
                lines.append(
                    PeriodLine(**base, status="Không lên sóng được", level="bad", numbers=[])
                )
            else:
                lines.append(
                    PeriodLine(**base, status="Phòng chưa gửi báo cáo", level="warn", numbers=[])
                )
        for held in own:
            if held.lesson_id in matched:
                continue
            summary = held.cells.summary
            lines.append(
                _held_line(
                    held,
                    {
                        "room": room,
                        "class_name": class_name,
                        "start": held.cells.start,
                        "end": None,
                        "label": str(summary[2] or ""),
                        "subject": str(summary[3] or ""),
                        "teacher": str(summary[4] or ""),
                    },
                )
            )
    lines.sort(key=lambda line: (line.class_name, line.start or now))
    return lines, silent


def _held_line(held: HeldLesson, base: dict[str, Any]) -> PeriodLine:
    status = {
        "live": "Đang phát trực tiếp",
        "closing": "Đang kết thúc",
        "recorded": "Đã phát, đã ghi hình",
        "ended": "Đã phát xong (phòng không ghi hình)",
        "archived": "Đã phát, đã lưu vào thư viện",
    }.get(held.state, "Đã phát")
    return PeriodLine(
        **base,
        status=status,
        level="ok",
        numbers=list(held.cells.summary[SUMMARY_NUMBERS]),
    )


# ------------------------------------------------------------------ rooms view

STATE_WORDS = {"live": "Đang phát", "warming": "Đang khởi động", "idle": "Nghỉ"}


@dataclass(frozen=True)
class RoomLine:
    room: str
    class_name: str
    level: str  # ok | warn | bad
    state: str  # in Vietnamese
    problems: list[str]
    heard: dt.datetime | None  # last heartbeat
    next_bell: str
    drill: str


def _clock_text(moment: dt.datetime | None, zone: dt.tzinfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M") if moment else ""


def room_line(
    room: str,
    class_name: str,
    beat: Beat | None,
    now: dt.datetime,
    *,
    zone: dt.tzinfo,
    grace: dt.timedelta,
    lost_after: dt.timedelta,
) -> RoomLine:
    """Room `room` now, from its last heartbeat: red when a bell has passed by more than
    `grace` and the room was not live since, or when it has gone silent."""
    if beat is None:
        return RoomLine(room, class_name, "bad", "Chưa từng liên lạc", [], None, "", "")
    body = beat.body
    problems: list[str] = []
    state = str(body.get("state", "idle"))
    due, upcoming = body.get("due"), body.get("next")
    bell: dt.datetime | None = None
    bell_end: dt.datetime | None = None
    for lesson in (due, upcoming):
        if isinstance(lesson, dict):
            start, end = _moment(lesson.get("start")), _moment(lesson.get("end"))
            if start is not None and start + grace <= now and (end is None or now < end):
                bell, bell_end = start, end
                break
    lost = now - beat.received_at > lost_after
    level = "ok"
    words = STATE_WORDS.get(state, state)
    if bell is not None and not (state == "live" and beat.received_at >= bell):
        level = "bad"
        problems.append(
            f"Không lên sóng lúc {_clock_text(bell, zone)} (tiết đến {_clock_text(bell_end, zone)})"
        )
    if lost:
        level = "bad"
        words = "Mất liên lạc"
        problems.append(f"Không nhận được tín hiệu từ {_clock_text(beat.received_at, zone)}")
    missing = [str(m) for m in body.get("missing", [])]
    if "camera" in missing:
        problems.append("Không có hình camera")
    if "board" in missing:
        problems.append("Không có hình bảng")
    if "mic" in missing or body.get("mic_silent"):
        problems.append("Không có tiếng")
    if body.get("disk_low"):
        problems.append(f"Ổ đĩa sắp đầy (còn {body.get('disk_free_mb', 0)} MB)")
    oldest = body.get("archive_oldest_seconds") or 0
    if isinstance(oldest, int | float) and oldest > 86400:
        problems.append(
            f"Lưu trữ chậm: {body.get('archive_waiting', 0)} bài chờ gửi lên thư viện, "
            f"lâu nhất {oldest / 86400:.0f} ngày"
        )
    if problems and level == "ok":
        level = "warn"
    nxt = upcoming if isinstance(upcoming, dict) else None
    next_bell = ""
    if nxt is not None:
        start = _moment(nxt.get("start"))
        next_bell = f"{_clock_text(start, zone)} · {nxt.get('subject', '')}"
    drill = body.get("drill")
    drill_text = "Chưa diễn tập"
    if isinstance(drill, dict):
        when = _moment(drill.get("started"))
        done = when.astimezone(zone).strftime("%d/%m/%Y") if when else "?"
        drill_text = f"{done}: {'đạt' if drill.get('passed') else 'KHÔNG ĐẠT'}"
        if not drill.get("passed") or (when is not None and now - when > dt.timedelta(days=365)):
            problems.append("Diễn tập chưa đạt hoặc đã quá một năm")
            level = "bad" if level == "bad" else "warn"
    else:
        problems.append("Chưa diễn tập lần nào")
        level = "bad" if level == "bad" else "warn"
    return RoomLine(
        room, class_name, level, words, problems, beat.received_at, next_bell, drill_text
    )


# ------------------------------------------------------------------ district

GRADE = re.compile(r"^(\d+)")

DISTRICT_HEADERS = [
    "Khối",
    "Số lớp",
    "Tiết phát trực tuyến",
    "Tiết đã ghi hình",
    "Tiết không lên sóng",
    "Lượt HS học ở nhà",
    "Lượt HS trực tuyến",
    "Tỉ lệ tham gia (%)",
    "Lý do không lên sóng",
]


def grade_of(class_name: str) -> str:
    match = GRADE.match(class_name)
    return match.group(1) if match else class_name


def district_rows(
    lines_by_day: Sequence[list[PeriodLine]], lessons: Sequence[HeldLesson]
) -> list[list[Cell]]:
    """The week per grade: periods streamed and recorded, failed and why, pupils at home
    and online (summed over periods), the rate."""
    grades: dict[str, dict[str, Any]] = {}
    for lines in lines_by_day:
        for line in lines:
            entry = grades.setdefault(
                grade_of(line.class_name),
                {"classes": set(), "failed": 0, "reasons": {}},
            )
            entry["classes"].add(line.class_name)
            if line.level == "bad":
                entry["failed"] += 1
                entry["reasons"][line.status] = entry["reasons"].get(line.status, 0) + 1
    for held in lessons:
        entry = grades.setdefault(
            grade_of(held.cells.class_name), {"classes": set(), "failed": 0, "reasons": {}}
        )
        entry["classes"].add(held.cells.class_name)
        entry["held"] = entry.get("held", 0) + 1
        if held.state in ("recorded", "archived"):
            entry["recorded"] = entry.get("recorded", 0) + 1
        if held.cells.expected is not None:
            entry["home"] = entry.get("home", 0) + held.cells.expected
            entry["online"] = entry.get("online", 0) + held.cells.online
    rows: list[list[Cell]] = []
    for grade in sorted(grades, key=lambda g: (len(g), g)):
        entry = grades[grade]
        home, online = entry.get("home", 0), entry.get("online", 0)
        reasons = "; ".join(f"{why} ({count})" for why, count in sorted(entry["reasons"].items()))
        rows.append(
            [
                f"Khối {grade}",
                len(entry["classes"]),
                entry.get("held", 0),
                entry.get("recorded", 0),
                entry["failed"],
                home,
                online,
                round(100 * online / home, 1) if home else None,
                reasons,
            ]
        )
    return rows
