"""Bell time on a manual clock: a whole school day (and a holiday) replayed in seconds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.school.clock import ManualClock
from edge.school.lessons import Lesson, LessonStore
from edge.school.scheduler import LessonConflict, RoomPlan, Rules, Scheduler
from edge.school.timetable import DEFAULT_EXCLUDED, BellSchedule, SchoolCalendar, make_period

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
BELLS = BellSchedule(
    morning=tuple(dt.time.fromisoformat(t) for t in ("07:00", "07:50", "08:45", "09:40", "10:30")),
    afternoon=tuple(dt.time.fromisoformat(t) for t in ("13:30", "14:20", "15:15", "16:05")),
)
WEDNESDAY = dt.date(2026, 11, 25)
HOLIDAY = WEDNESDAY + dt.timedelta(days=1)
DAY = [  # Thứ Tư (Wednesday) of 6A1: 5 morning and 4 afternoon periods, tiết 3 is PE
    ("morning", 1, "Toán", "Nguyễn Thị Lan"),
    ("morning", 2, "Ngữ văn", "Trần Văn Minh"),
    ("morning", 3, "Thể dục", "Lê Quang Huy"),
    ("morning", 4, "Tiếng Anh", "Phạm Thu Hà"),
    ("morning", 5, "Khoa học tự nhiên", "Đỗ Mai Anh"),
    ("afternoon", 1, "Lịch sử và Địa lí", "Vũ Đức Long"),
    ("afternoon", 2, "Tin học", "Hoàng Minh Tâm"),
    ("afternoon", 3, "Công nghệ", "Bùi Thị Hoa"),
    ("afternoon", 4, "Hoạt động trải nghiệm", "Nguyễn Thị Lan"),
]


def at(text: str, day: dt.date = WEDNESDAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(text), ZONE)


class RecordingDriver:
    """Stands in for the room: records what the scheduler did to it, and when."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.actions: list[tuple[str, str, str]] = []
        self.warm_now = False

    def _log(self, action: str, lesson: Lesson | None = None) -> None:
        moment = self.clock.now().astimezone(ZONE).strftime("%H:%M")
        self.actions.append((moment, action, lesson.subject if lesson else ""))

    async def warm(self) -> None:
        if not self.warm_now:
            self.warm_now = True
            self._log("warm")

    async def go_live(self, lesson: Lesson) -> None:
        self._log("live", lesson)

    async def close(self, lesson: Lesson, *, keep_viewers: bool) -> None:
        self._log("close, viewers stay" if keep_viewers else "close", lesson)

    async def cool(self) -> None:
        self.warm_now = False
        self._log("cool")


def scheduler_for(tmp_path: Path, clock: ManualClock) -> tuple[Scheduler, RecordingDriver]:
    periods = [
        make_period(
            weekday="Thứ Tư",
            class_name="6A1",
            subject=subject,
            teacher=teacher,
            source=f"test:{index}",
            bells=BELLS,
            max_minutes=45,
            session=session,
            number=number,
        )
        for index, (session, number, subject, teacher) in enumerate(DAY)
    ]
    driver = RecordingDriver(clock)
    scheduler = Scheduler(
        LessonStore(tmp_path / "lessons.db"),
        [RoomPlan("p101", "6A1", periods, DEFAULT_EXCLUDED)],
        {"p101": driver},
        clock=clock,
        zone=ZONE,
        calendar=SchoolCalendar(holidays=((HOLIDAY, HOLIDAY),)),
        rules=Rules(
            lead=dt.timedelta(minutes=2),
            grace=dt.timedelta(minutes=2),
            rollover=dt.timedelta(minutes=5),
        ),
    )
    return scheduler, driver


async def test_a_school_day_warms_goes_live_and_closes_on_time(tmp_path: Path) -> None:
    clock = ManualClock(at("06:00"))
    scheduler, driver = scheduler_for(tmp_path, clock)
    await scheduler.start()
    try:
        await clock.advance_to(at("12:00", HOLIDAY))
    finally:
        await scheduler.stop()
    assert driver.actions == [
        ("06:58", "warm", ""),
        ("07:00", "live", "Toán"),
        # a 5-minute break: Toán closes at the next bell and its viewers stay for Ngữ văn
        ("07:50", "close, viewers stay", "Toán"),
        ("07:50", "live", "Ngữ văn"),
        ("08:37", "close", "Ngữ văn"),  # the end (08:35) and the grace time
        ("08:37", "cool", ""),
        # 08:45 Thể dục (PE) is skipped: nothing happens until tiết 4 warms up
        ("09:38", "warm", ""),
        ("09:40", "live", "Tiếng Anh"),
        ("10:30", "close, viewers stay", "Tiếng Anh"),
        ("10:30", "live", "Khoa học tự nhiên"),
        ("11:17", "close", "Khoa học tự nhiên"),
        ("11:17", "cool", ""),
        ("13:28", "warm", ""),
        ("13:30", "live", "Lịch sử và Địa lí"),
        ("14:20", "close, viewers stay", "Lịch sử và Địa lí"),
        ("14:20", "live", "Tin học"),
        ("15:07", "close", "Tin học"),  # a 10-minute break: longer than the rollover
        ("15:07", "cool", ""),
        ("15:13", "warm", ""),
        ("15:15", "live", "Công nghệ"),
        ("16:05", "close, viewers stay", "Công nghệ"),
        ("16:05", "live", "Hoạt động trải nghiệm"),
        ("16:52", "close", "Hoạt động trải nghiệm"),
        ("16:52", "cool", ""),
        # the next day is a holiday: nothing at all
    ]
    store = scheduler.store
    lessons = store.lessons("p101", at("00:00"))
    assert [x.subject for x in lessons] == [s for _, _, s, _ in DAY if s != "Thể dục"]
    assert {x.state for x in lessons} == {"recorded"}
    first = lessons[0]
    assert first.id == "p101-20261125-0700" and first.teacher == "Nguyễn Thị Lan"
    assert [(m.astimezone(ZONE).strftime("%H:%M"), s) for m, s, _ in store.events(first.id)] == [
        ("06:58", "warming"),
        ("07:00", "live"),
        ("07:50", "closing"),
        ("07:50", "recorded"),
    ]
    assert store.lessons("p101", at("00:00", HOLIDAY)) == []


async def test_a_restart_mid_lesson_resumes_it_with_the_same_id(tmp_path: Path) -> None:
    clock = ManualClock(at("07:10"))
    scheduler, driver = scheduler_for(tmp_path, clock)
    await scheduler.start()
    live = scheduler.current("p101")
    assert live is not None and live.id == "p101-20261125-0700" and live.state == "live"
    await scheduler.stop()
    scheduler.store.close()

    await clock.advance_to(at("07:20"))  # the process was down for ten minutes
    again, driver = scheduler_for(tmp_path, clock)
    await again.start()
    try:
        assert driver.actions == [("07:20", "warm", ""), ("07:20", "live", "Toán")]
        notes = [note for _, _, note in again.store.events(live.id)]
        assert notes[-1] == "resumed after a restart"
        assert again.current("p101") == live
    finally:
        await again.stop()


async def test_teachers_start_extend_and_end_lessons(tmp_path: Path) -> None:
    clock = ManualClock(at("11:40"))  # the lunch break
    scheduler, driver = scheduler_for(tmp_path, clock)
    await scheduler.start()
    try:
        extra = await scheduler.start_adhoc("p101", 30, subject="Ôn tập Toán")
        assert extra.state == "live" and extra.kind == "adhoc"
        with pytest.raises(LessonConflict):
            await scheduler.start_adhoc("p101", 10)
        longer = await scheduler.extend("p101", 10)
        assert longer.ends_at == at("12:20")
        await clock.advance_to(at("12:21"))
        assert driver.actions[-1] == ("11:40", "live", "Ôn tập Toán")  # ends 12:20, grace 2 min
        await clock.advance_to(at("12:23"))
        assert driver.actions[-2:] == [("12:22", "close", "Ôn tập Toán"), ("12:22", "cool", "")]

        await clock.advance_to(at("13:35"))
        ended = await scheduler.end_now("p101")
        assert ended.ends_at == at("13:35")
        assert driver.actions[-2:] == [
            ("13:35", "close", "Lịch sử và Địa lí"),
            ("13:35", "cool", ""),
        ]
        assert scheduler.current("p101") is None
        with pytest.raises(LessonConflict):
            await scheduler.extend("p101", 5)
        # an extension stops at the next period's bell
        await clock.advance_to(at("14:25"))
        capped = await scheduler.extend("p101", 60)
        assert capped.ends_at == at("15:15")
    finally:
        await scheduler.stop()


async def test_an_always_live_room_streams_on_as_hourly_lessons(tmp_path: Path) -> None:
    clock = ManualClock(at("09:00"))
    driver = RecordingDriver(clock)
    scheduler = Scheduler(
        LessonStore(tmp_path / "lessons.db"),
        [RoomPlan("hall", "6A1", [], DEFAULT_EXCLUDED, always_live=True)],
        {"hall": driver},
        clock=clock,
        zone=ZONE,
        calendar=SchoolCalendar(),
        rules=Rules(always_span=dt.timedelta(hours=1)),
    )
    await scheduler.start()
    try:
        await clock.advance_to(at("11:30"))
        with pytest.raises(LessonConflict):
            await scheduler.end_now("hall")
    finally:
        await scheduler.stop()
    assert driver.actions == [
        ("09:00", "warm", ""),
        ("09:00", "live", "Phát liên tục"),
        ("10:00", "close, viewers stay", "Phát liên tục"),  # the stream never stops
        ("10:00", "live", "Phát liên tục"),
        ("11:00", "close, viewers stay", "Phát liên tục"),
        ("11:00", "live", "Phát liên tục"),
    ]
    lessons = scheduler.store.lessons("hall", at("00:00"))
    assert [x.id for x in lessons] == [
        "hall-20261125-090000",
        "hall-20261125-100000",
        "hall-20261125-110000",
    ]
    assert [x.state for x in lessons] == ["recorded", "recorded", "live"]
