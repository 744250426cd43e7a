"""The hub's rooms view from heartbeats alone: red when a bell passed by more than the
grace and the room was not live since, or when it went silent; what to look at."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from edge.school.hub import Beat
from edge.school.overview import room_line

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
BELL = dt.datetime(2026, 11, 25, 7, 0, tzinfo=ZONE)
GRACE = dt.timedelta(seconds=30)
LOST = dt.timedelta(seconds=90)
LESSON = {
    "start": BELL.isoformat(),
    "end": (BELL + dt.timedelta(minutes=45)).isoformat(),
    "subject": "Toán",
    "period": 1,
    "session": "morning",
}
DRILL = {"started": "2026-09-01T08:00:00+07:00", "passed": True}


def beat(at: str, **body: Any) -> Beat:
    received = dt.datetime.combine(BELL.date(), dt.time.fromisoformat(at), ZONE)
    return Beat("p1", {"state": "idle", "drill": DRILL, **body}, received)


def line(b: Beat | None, at: str) -> tuple[str, list[str]]:
    now = dt.datetime.combine(BELL.date(), dt.time.fromisoformat(at), ZONE)
    found = room_line("p1", "6A1", b, now, zone=ZONE, grace=GRACE, lost_after=LOST)
    return found.level, found.problems


def test_a_room_warming_at_its_bell_turns_red_after_the_grace() -> None:
    warming = beat("07:00:10", state="warming", due=LESSON)
    assert line(warming, "07:00:25") == ("ok", [])
    assert line(warming, "07:00:31") == ("bad", ["Không lên sóng lúc 07:00 (tiết đến 07:45)"])
    live = beat("07:00:20", state="live", due=LESSON)
    assert line(live, "07:00:40") == ("ok", [])


def test_a_room_gone_silent_before_its_bell_is_red_at_the_bell() -> None:
    before = beat("06:59:50", state="warming", next=LESSON)
    level, problems = line(before, "07:00:35")
    assert level == "bad" and problems == ["Không lên sóng lúc 07:00 (tiết đến 07:45)"]
    level, problems = line(before, "07:01:30")
    assert level == "bad" and "Không nhận được tín hiệu từ 06:59" in problems


def test_what_to_look_at_in_a_live_room() -> None:
    troubled = beat(
        "07:10:00",
        state="live",
        due=LESSON,
        missing=["camera"],
        mic_silent=True,
        disk_low=True,
        disk_free_mb=800,
        archive_waiting=3,
        archive_oldest_seconds=200_000,
        drill={"started": "2025-09-01T08:00:00+07:00", "passed": True},
    )
    level, problems = line(troubled, "07:10:05")
    assert level == "warn"
    assert problems == [
        "Không có hình camera",
        "Không có tiếng",
        "Ổ đĩa sắp đầy (còn 800 MB)",
        "Lưu trữ chậm: 3 bài chờ gửi lên thư viện, lâu nhất 2 ngày",
        "Diễn tập chưa đạt hoặc đã quá một năm",
    ]
    assert line(None, "07:10:05") == ("bad", [])  # never heard from
