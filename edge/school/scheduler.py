"""Bell time: each room's lessons go warming → live → closing → recorded by themselves.

The scheduler plans each room's day from its timetable (and the ad-hoc lessons teachers
start), works out when each lesson warms up, goes live and closes, and brings the
persisted lifecycle (`LessonStore`) and the room (`RoomDriver`) to where they should
be now. It owns one task; all waiting is on an injectable clock, so a test replays a
school day in seconds. After a restart the same step resumes the lesson that should
be live, with the id it had.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

from capture.supervise import cancel_all, supervised
from edge.school.clock import Clock
from edge.school.lessons import Lesson, LessonStore, State
from edge.school.timetable import Period, SchoolCalendar, plan_day

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger(__name__)

LONGEST_WAIT = dt.timedelta(hours=1)  # re-plan at least this often (timetable edits, midnight)
ALWAYS_SUBJECT = "Phát liên tục"


class LessonConflict(RuntimeError):
    """A manual command that does not fit what the room is doing; the message says why, in
    Vietnamese (teachers read it on the board's console)."""


class RoomDriver(Protocol):
    """What the scheduler does to a room; the service implements it."""

    async def warm(self) -> None:
        """Open the devices and start the encoders (idempotent)."""

    async def go_live(self, lesson: Lesson) -> None:
        """Let viewers in: `lesson` is live."""

    async def close(self, lesson: Lesson, *, keep_viewers: bool) -> None:
        """`lesson` has ended; viewers stay only when the next lesson follows at once."""

    async def cool(self) -> None:
        """Release the devices (idempotent)."""


@dataclass(frozen=True)
class RoomPlan:
    """What the scheduler needs to know of one room."""

    name: str
    class_name: str
    periods: Sequence[Period]
    excluded: Sequence[str]
    always_live: bool = False


@dataclass(frozen=True)
class Rules:
    lead: dt.timedelta = dt.timedelta(minutes=2)
    grace: dt.timedelta = dt.timedelta(minutes=2)
    rollover: dt.timedelta = dt.timedelta(minutes=10)
    always_span: dt.timedelta = dt.timedelta(hours=1)  # one lesson of an always-live room


@dataclass(frozen=True)
class Slot:
    """A lesson with the moments it changes state."""

    lesson: Lesson
    warm_at: dt.datetime
    close_at: dt.datetime | None  # None: open-ended
    rolls_over: bool  # closes as the next lesson goes live, viewers kept

    def desired(self, now: dt.datetime) -> State:
        if self.close_at is not None and now >= self.close_at:
            return "recorded"
        if now >= self.lesson.start:
            return "live"
        return "warming" if now >= self.warm_at else "idle"

    def moments(self) -> list[dt.datetime]:
        found = [self.warm_at, self.lesson.start]
        return found + ([self.close_at] if self.close_at is not None else [])


def lesson_id(room: str, start: dt.datetime, zone: dt.tzinfo, *, seconds: bool = False) -> str:
    local = start.astimezone(zone)
    return f"{room}-{local:%Y%m%d-%H%M%S}" if seconds else f"{room}-{local:%Y%m%d-%H%M}"


class Scheduler:
    """Drives every room's lessons; `start()` resumes what should be live, `stop()`
    leaves the lessons as they are (a restart picks them up)."""

    def __init__(
        self,
        store: LessonStore,
        rooms: Sequence[RoomPlan],
        drivers: dict[str, RoomDriver],
        *,
        clock: Clock,
        zone: ZoneInfo,
        calendar: SchoolCalendar,
        rules: Rules,
    ) -> None:
        self.store = store
        self.rooms = {room.name: room for room in rooms}
        self.drivers = drivers
        self.clock = clock
        self.zone = zone
        self.calendar = calendar
        self.rules = rules
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._live: dict[str, str] = {}  # room -> id of the lesson its driver has live
        self._warm: set[str] = set()
        self.steps = 0

    def replan(self, plan: RoomPlan) -> None:
        """A room's timetable or rules changed: plan from `plan` from the next step on."""
        self.rooms[plan.name] = plan
        self._changed.set()

    async def start(self) -> None:
        await self.step()
        self._task = supervised("scheduler", self._run)

    async def _write(self, write: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A write to lessons.db, in a thread: a slow disk (each commit is synced) or the
        CLI holding the write lock never holds up the event loop, where the media runs."""
        return await asyncio.to_thread(write, *args, **kwargs)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            wake = self.next_moment(self.clock.now())
            self._changed.clear()
            sleeper = asyncio.create_task(self.clock.sleep_until(wake))
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, changed):
                    task.cancel()
                await asyncio.gather(sleeper, changed, return_exceptions=True)
            try:
                await self.step()
            except Exception:  # a bad step must not end bell time for the day
                logger.exception("scheduler step failed; trying again at the next moment")

    # ------------------------------------------------------------ planning

    def slots(self, room: str, now: dt.datetime) -> list[Slot]:
        """The room's lessons around `now` (today and tomorrow, and any still open)."""
        plan = self.rooms[room]
        today = now.astimezone(self.zone).date()
        lessons: dict[str, Lesson] = {}
        if plan.always_live:
            # an open-ended stream, recorded as back-to-back lessons of `always_span` each:
            # each closes as the next goes live (viewers stay), so each can be archived
            current = [x for x in self.store.open_lessons(room) if x.kind == "always"]
            lesson = current[0] if current else self._always(plan, now)
            lessons[lesson.id] = lesson
            end = lesson.ends_at or lesson.end
            if end is not None:
                following = self._always(plan, end)
                lessons[following.id] = self.store.get(following.id) or following
        for day in (today, today + dt.timedelta(days=1)):
            for planned in plan_day(
                plan.periods,
                day,
                class_name=plan.class_name,
                timezone=self.zone,
                calendar=self.calendar,
                excluded=plan.excluded,
            ):
                if not planned.streams:
                    continue
                period = planned.period
                lesson = Lesson(
                    id=lesson_id(room, planned.start, self.zone),
                    room=room,
                    kind="timetable",
                    class_name=period.class_name,
                    subject=period.subject,
                    teacher=period.teacher,
                    period=period.number,
                    session=period.session,
                    start=planned.start,
                    end=planned.end,
                    ends_at=None,
                )
                lessons[lesson.id] = self.store.get(lesson.id) or lesson
        since = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(), self.zone)
        for stored in self.store.lessons(room, since):
            if stored.kind == "adhoc" or stored.open:
                lessons[stored.id] = stored
        ordered = sorted(lessons.values(), key=lambda x: (x.start, x.id))
        return [self._slot(lesson, ordered[i + 1 :]) for i, lesson in enumerate(ordered)]

    def _always(self, plan: RoomPlan, start: dt.datetime) -> Lesson:
        return Lesson(
            id=lesson_id(plan.name, start, self.zone, seconds=True),
            room=plan.name,
            kind="always",
            class_name=plan.class_name,
            subject=ALWAYS_SUBJECT,
            teacher="",
            period=None,
            session=None,
            start=start,
            end=start + self.rules.always_span,
            ends_at=None,
        )

    def _slot(self, lesson: Lesson, later: Sequence[Lesson]) -> Slot:
        warm_at = lesson.start if lesson.kind == "adhoc" else lesson.start - self.rules.lead
        end = lesson.ends_at or lesson.end
        if end is None:
            return Slot(lesson, warm_at, None, False)
        ended_early = lesson.ends_at is not None and lesson.end is not None and end < lesson.end
        close_at = end if ended_early else end + self.rules.grace
        following = next((x for x in later if x.start >= lesson.start), None)
        rolls_over = False
        if following is not None:
            if not ended_early and following.start - end <= self.rules.rollover:
                close_at, rolls_over = following.start, True
            close_at = min(close_at, following.start)
        # a lesson never closes before it starts (ended before the bell: it closes then)
        close_at = max(close_at, min(lesson.start, end))
        return Slot(lesson, warm_at, close_at, rolls_over)

    def next_moment(self, now: dt.datetime) -> dt.datetime:
        """When something changes next in any room (or a re-plan is due)."""
        local = now.astimezone(self.zone)
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), self.zone)
        candidates = [now + LONGEST_WAIT, midnight]
        for room in self.rooms:
            for slot in self.slots(room, now):
                candidates += [m for m in slot.moments() if m > now]
        return min(candidates)

    # ------------------------------------------------------------ acting

    async def step(self) -> None:
        """Bring every room's lessons and devices to where they should be now."""
        async with self._lock:
            now = self.clock.now()
            for room in self.rooms:
                await self._step_room(room, now)
            self.steps += 1

    async def _step_room(self, room: str, now: dt.datetime) -> None:
        driver = self.drivers[room]
        slots = self.slots(room, now)
        today = now.astimezone(self.zone).date()
        planned_ids = {slot.lesson.id for slot in slots}
        for stale in self.store.open_lessons(room):
            if stale.id not in planned_ids:  # the timetable changed under an open lesson
                await self._close(driver, stale, now, keep_viewers=False, note="not planned")
        for index, slot in enumerate(slots):
            lesson = slot.lesson
            desired = slot.desired(now)
            if self.store.get(lesson.id) is None:
                if desired == "idle" and lesson.start.astimezone(self.zone).date() != today:
                    continue  # tomorrow's lessons are listed once their day comes
                if desired == "recorded":
                    continue  # missed entirely (the service was down): nothing to close
                lesson = await self._write(self.store.add, lesson, now)
            lesson = self.store.get(lesson.id) or lesson
            if desired in ("warming", "live") and lesson.state == "idle":
                lesson = await self._write(self.store.move, lesson, "warming", now)
                await driver.warm()
                self._warm.add(room)
            if desired == "live" and lesson.state == "warming":
                lesson = await self._write(self.store.move, lesson, "live", now)
            if desired == "live" and self._live.get(room) != lesson.id:
                if lesson.state == "live" and self.steps == 0:
                    await self._write(self.store.note, lesson, now, "resumed after a restart")
                await driver.warm()
                self._warm.add(room)
                await driver.go_live(lesson)
                self._live[room] = lesson.id
            if desired == "recorded" and lesson.open:
                following = slots[index + 1] if index + 1 < len(slots) else None
                keep = (
                    slot.rolls_over and following is not None and following.desired(now) == "live"
                )
                await self._close(driver, lesson, now, keep_viewers=keep)
        busy = any(s.desired(now) in ("warming", "live") for s in slots)
        if not busy and room in self._warm:
            await driver.cool()
            self._warm.discard(room)

    async def _close(
        self,
        driver: RoomDriver,
        lesson: Lesson,
        now: dt.datetime,
        *,
        keep_viewers: bool,
        note: str = "",
    ) -> None:
        if lesson.state in ("warming", "live"):
            lesson = await self._write(self.store.move, lesson, "closing", now, note)
        if self._live.get(lesson.room) == lesson.id:
            del self._live[lesson.room]
        await driver.close(lesson, keep_viewers=keep_viewers)  # the recording is complete
        await self._write(self.store.move, lesson, "recorded", now)

    # ------------------------------------------------------------ teachers

    def current(self, room: str, now: dt.datetime | None = None) -> Lesson | None:
        """The lesson live in `room` now, if any."""
        now = now or self.clock.now()
        live = [s.lesson for s in self.slots(room, now) if s.desired(now) == "live"]
        return self.store.get(live[-1].id) or live[-1] if live else None

    def outlook(self, room: str, now: dt.datetime | None = None) -> dict[str, Lesson | None]:
        """The live lesson, the next one to stream, the last one that ended today."""
        now = now or self.clock.now()
        slots = self.slots(room, now)
        live = [s.lesson for s in slots if s.desired(now) == "live"]
        upcoming = [s.lesson for s in slots if s.lesson.start > now and s.desired(now) != "live"]
        today = now.astimezone(self.zone).date()
        ended = [
            s.lesson
            for s in slots
            if s.desired(now) == "recorded"
            and s.close_at is not None
            and s.close_at.astimezone(self.zone).date() == today
        ]
        return {
            "live": live[-1] if live else None,
            "next": upcoming[0] if upcoming else None,
            "ended": ended[-1] if ended else None,
        }

    async def start_adhoc(
        self, room: str, minutes: float, subject: str = "", teacher: str = ""
    ) -> Lesson:
        """An extra lesson from now for `minutes` (it yields to the next period's bell)."""
        async with self._lock:
            now = self.clock.now()
            if self.current(room, now) is not None:
                raise LessonConflict(
                    "Đang có tiết học trong phòng này: hãy kéo dài hoặc kết thúc tiết đó trước."
                )
            plan = self.rooms[room]
            lesson = Lesson(
                id=lesson_id(room, now, self.zone, seconds=True),
                room=room,
                kind="adhoc",
                class_name=plan.class_name,
                subject=subject or "Tiết học thêm",
                teacher=teacher,
                period=None,
                session=None,
                start=now,
                end=now + dt.timedelta(minutes=minutes),
                ends_at=None,
            )
            await self._write(self.store.add, lesson, now)
            await self._step_room(room, now)
        self._changed.set()
        return self.store.get(lesson.id) or lesson

    async def end_now(self, room: str) -> Lesson:
        """End the live lesson now (no grace; viewers leave)."""
        async with self._lock:
            now = self.clock.now()
            lesson = self.current(room, now)
            if lesson is None:
                raise LessonConflict("Không có tiết học nào đang phát trong phòng này.")
            if lesson.end is None or lesson.kind == "always":
                raise LessonConflict("Phòng này phát liên tục: không có giờ kết thúc.")
            await self._write(self.store.set_end, lesson, now, now, "ended early")
            await self._step_room(room, now)
        self._changed.set()
        return self.store.get(lesson.id) or lesson

    async def extend(self, room: str, minutes: float) -> Lesson:
        """Move the live lesson's end later, up to the next lesson's bell."""
        async with self._lock:
            now = self.clock.now()
            lesson = self.current(room, now)
            if lesson is None or lesson.end is None or lesson.kind == "always":
                raise LessonConflict("Không có tiết học nào đang phát để kéo dài.")
            end = (lesson.ends_at or lesson.end) + dt.timedelta(minutes=minutes)
            later = [s.lesson for s in self.slots(room, now) if s.lesson.start > lesson.start]
            if later:
                end = min(end, later[0].start)
            await self._write(self.store.set_end, lesson, end, now, f"extended by {minutes:g} min")
            await self._step_room(room, now)
        self._changed.set()
        return self.store.get(lesson.id) or replace(lesson, ends_at=end)
