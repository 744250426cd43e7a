"""Wall clocks for the scheduler: the real one (optionally shifted, for drills and
tests of a whole process) and a manual one that replays a school day in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
from typing import Protocol

UTC = dt.UTC
LONGEST_NAP = 30.0  # seconds; the real clock re-reads the time this often (NTP steps, suspend)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return once `now()` has reached `when`."""
        ...


class SystemClock:
    """The machine's clock; `start` makes it run from that moment instead (a drill, or a
    test that restarts a process in the middle of a period)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._offset = dt.timedelta(0)
        if start is not None:
            self._offset = start - dt.datetime.now(UTC)

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + self._offset

    async def sleep_until(self, when: dt.datetime) -> None:
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110 (a clock)
            await asyncio.sleep(min(left, LONGEST_NAP))


class ManualClock:
    """Time moves only when a test says so: `advance_to()` wakes every sleeper that is
    due, in time order, and lets it act before moving on."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[dt.datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._slept = asyncio.Event()

    def now(self) -> dt.datetime:
        return self._now

    async def sleep_until(self, when: dt.datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), future))
        self._slept.set()
        try:
            await future
        finally:
            future.cancel()

    def _pending(self) -> list[tuple[dt.datetime, int, asyncio.Future[None]]]:
        self._sleepers = [s for s in self._sleepers if not s[2].done()]
        heapq.heapify(self._sleepers)
        return self._sleepers

    async def advance_to(self, when: dt.datetime, settle: float = 10.0) -> None:
        """Move to `when`, stopping at each sleeper's time on the way."""
        for _ in range(5):  # let tasks started just now go to sleep first
            await asyncio.sleep(0)
        while (pending := self._pending()) and pending[0][0] <= when:
            self._now = max(self._now, pending[0][0])
            self._slept.clear()
            while self._sleepers and self._sleepers[0][0] <= self._now:
                heapq.heappop(self._sleepers)[2].set_result(None)
            await self.settled(settle)
        self._now = max(self._now, when)
        await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + dt.timedelta(seconds=seconds))

    async def settled(self, within: float = 10.0) -> None:
        """Wait (real time, at most `within`) until a woken sleeper sleeps again."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slept.wait(), within)
        for _ in range(3):
            await asyncio.sleep(0)
