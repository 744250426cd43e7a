"""How late the event loop runs: a ticker notes how much later than asked it wakes.

A receiver report is read when the loop gets to it, so a busy loop adds its own lateness
to every round-trip time aiortc computes from one. The rate controller takes the loop's
recent lateness off before it reads a growing round trip as a queue on the pupil's link.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from capture.supervise import cancel_all, supervised

TICK = 0.05  # s between samples
KEEP = 5.0  # s of samples kept


class LoopLag:
    """`start()`/`stop()` a ticker on the running loop; `recent(seconds)` is the worst
    lateness (seconds) seen over the last `seconds`. `clock` is injectable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [supervised("loop-lag", self._tick)]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    def note(self, lateness: float) -> None:
        now = self._clock()
        self._samples.append((now, max(0.0, lateness)))
        while self._samples and now - self._samples[0][0] > KEEP:
            self._samples.popleft()

    def recent(self, seconds: float = 2.0) -> float:
        since = self._clock() - seconds
        return max((lag for at, lag in self._samples if at >= since), default=0.0)

    async def _tick(self) -> None:
        while True:
            asked = time.monotonic() + TICK
            await asyncio.sleep(TICK)
            self.note(time.monotonic() - asked)
