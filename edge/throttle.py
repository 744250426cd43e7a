"""Join and login attempts per address: after too many refused ones in a while, that
address waits (guessing links or passwords is slow); valid joins never count."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

LIMIT, WINDOW = 10, 300.0  # refused attempts within the window, seconds


class Throttle:
    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._refused: dict[str, collections.deque[float]] = {}

    def _recent(self, address: str) -> collections.deque[float]:
        now = self._clock()
        attempts = self._refused.get(address)
        if attempts is None:
            return collections.deque()
        while attempts and now - attempts[0] > self.window:
            attempts.popleft()
        if not attempts:
            del self._refused[address]
        return attempts

    def wait(self, address: str) -> float | None:
        """Seconds `address` must wait before trying again, or None."""
        attempts = self._recent(address)
        if len(attempts) < self.limit:
            return None
        return max(attempts[0] + self.window - self._clock(), 1.0)

    def refused(self, address: str) -> None:
        if len(self._refused) > 10_000:  # many addresses: forget the oldest first
            self._refused.pop(next(iter(self._refused)))
        self._refused.setdefault(address, collections.deque()).append(self._clock())
