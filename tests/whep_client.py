"""A real aiortc WHEP viewer for tests and benchmarks: `webrtc.viewer.WhepViewer` (the
drill's viewer too) with the classroom channel the pupil's page opens
(tests/classroom_client.py), and `decode_clock` to read no clock at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.classroom_client import ClassroomChannel, classroom_url
from webrtc.viewer import TrackStats, WhepViewer

__all__ = ["TrackStats", "Viewer", "eventually", "eventually_sync"]


async def eventually(condition: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `within` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def eventually_sync(condition: Callable[[], bool], within: float, step: float = 0.2) -> bool:
    """`eventually` for tests that are not coroutines."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@dataclass
class Viewer(WhepViewer):
    """One WHEP session: `await viewer.connect()`, then `await viewer.close()`."""

    decode_clock: bool = True
    """Read the burned-in clock of the video tracks (`clock_every`, `clock_square`)."""
    channel: bool = False
    """Open a classroom channel first and name it in the WHEP POST, as the pupil's page
    does."""
    classroom: ClassroomChannel | None = None

    async def connect(self, client: httpx.AsyncClient | None = None) -> httpx.Response:
        if self.channel and self.classroom is None:
            self.classroom = ClassroomChannel(
                classroom_url(self.whep_url), self.token, client=client
            )
            if (await self.classroom.open()).status_code == 201:
                url = httpx.URL(self.whep_url)
                self.whep_url = str(url.copy_merge_params({"channel": self.classroom.id or ""}))
        return await super().connect(client)

    def reads_clock(self, name: str) -> bool:
        return self.decode_clock and super().reads_clock(name)

    @property
    def received(self) -> list[dict[str, Any]]:
        """The messages that came on the classroom channel (`channel=True`)."""
        return self.classroom.received if self.classroom is not None else []

    def send(self, message: dict[str, Any]) -> None:
        """A message on the classroom channel (open it with `channel=True`)."""
        assert self.classroom is not None
        self.classroom.send(message)

    async def close(self, client: httpx.AsyncClient | None = None) -> None:
        await super().close(client)
        if self.classroom is not None:
            await self.classroom.close()
