"""Renditions that run only while someone needs them (the VP8 twins of the H.264 ones)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from capture.supervise import cancel_all, supervised

from .pacer import Clock

logger = logging.getLogger(__name__)

LINGER = 30.0  # seconds the twins keep running after their last viewer left (a rejoin)
POLL = 1.0  # seconds between looks at whether the linger is over


class Hold(Protocol):
    """What a viewer needing the twins holds: `acquire()` when it starts, `release()`
    when it goes (an `OnDemand`, or a viewer worker's messages to one)."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class OnDemand:
    """Counts the viewers of a set of on-demand renditions: the first `acquire()` calls
    `activate(True)` at once; `activate(False)` follows once nobody has held them for
    `linger` seconds (`check()`, which `start()` runs every `poll` seconds; `stop()`
    ends that and switches them off)."""

    def __init__(
        self,
        name: str,
        activate: Callable[[bool], None],
        *,
        linger: float = LINGER,
        poll: float = POLL,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.linger = linger
        self.poll = poll
        self._activate = activate
        self._clock = clock
        self.users = 0
        self.active = False
        self.starts = 0  # times they were switched on
        self._idle_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def acquire(self) -> None:
        """A viewer needs them: on now, if they were off."""
        self.users += 1
        self._idle_since = None
        if not self.active:
            self.active = True
            self.starts += 1
            logger.info("%s: on (a viewer needs them)", self.name)
            self._activate(True)

    def release(self) -> None:
        """A viewer that `acquire`d them has gone."""
        self.users = max(self.users - 1, 0)
        if self.users == 0:
            self._idle_since = self._clock()

    def check(self) -> None:
        """Switch them off if nobody has needed them for `linger` seconds."""
        idle = self._idle_since
        if (
            self.active
            and self.users == 0
            and idle is not None
            and self._clock() - idle >= self.linger
        ):
            self._off()

    def _off(self) -> None:
        self.active = False
        self._idle_since = None
        logger.info("%s: off (no viewer for %.0f s)", self.name, self.linger)
        self._activate(False)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [supervised(f"{self.name}-linger", self._watch)]

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            self.check()

    async def stop(self) -> None:
        """End the watch and switch them off (viewers still counted keep their count)."""
        try:
            await cancel_all(self._tasks)
        finally:
            self._tasks = []
            if self.active:
                self._off()
