"""A real aiortc WHEP viewer for tests and benchmarks: `webrtc.viewer.WhepViewer` (the
drill's viewer too) with the class data channel the pupil's page opens, and `decode_clock`
to read no clock at all."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """Open the class data channel ("classroom"), as the pupil's page does."""
    received: list[dict[str, Any]] = field(default_factory=list)
    """The JSON messages that came on the class data channel."""
    data_channel: Any = None

    def before_offer(self) -> None:
        if self.channel:
            self.data_channel = self.pc.createDataChannel("classroom")
            self.data_channel.on("message", lambda text: self.received.append(json.loads(text)))

    def reads_clock(self, name: str) -> bool:
        return self.decode_clock and super().reads_clock(name)

    def send(self, message: dict[str, Any]) -> None:
        """A message on the class data channel (open it with `channel=True`)."""
        self.data_channel.send(json.dumps(message, ensure_ascii=False))
