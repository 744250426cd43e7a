"""Refused join and login attempts, counted per key (an address, a presented link):
after too many in a while that key waits, so guessing is slow. Callers check a link
before asking: a valid link is never kept waiting by someone else's bad ones."""

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

    def wait(self, *keys: str) -> float | None:
        """Seconds to wait before trying again (the longest of `keys`), or None."""
        waits = [
            max(attempts[0] + self.window - self._clock(), 1.0)
            for attempts in map(self._recent, keys)
            if len(attempts) >= self.limit
        ]
        return max(waits, default=None)

    def refused(self, *keys: str) -> None:
        for key in keys:
            if len(self._refused) > 10_000:  # many keys: forget the oldest first
                self._refused.pop(next(iter(self._refused)))
            self._refused.setdefault(key, collections.deque()).append(self._clock())

    def forgive(self, *keys: str) -> None:
        """Take back the latest attempt of `keys` (counted before a check that passed)."""
        for key in keys:
            attempts = self._refused.get(key)
            if attempts:
                attempts.pop()
