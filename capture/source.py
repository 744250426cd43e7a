"""Media sources: each runs in its own thread and hands frames to a sink."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import av

logger = logging.getLogger(__name__)

MediaKind = Literal["video", "audio"]
Frame = av.VideoFrame | av.AudioFrame
LOG_AGAIN_AFTER = 60.0
"""Seconds before a source that keeps failing the same way logs it again."""

FrameSink = Callable[[Frame, float], None]
"""Called in the source's thread with a frame and its capture time (`time.monotonic()`)."""


class SourceError(RuntimeError):
    """A device could not be opened or read."""


class _Abandoned(BaseException):
    """Raised in a thread that was left behind (`Source.abandon()`) when it wakes up."""


class Source(ABC):
    """A capture device or synthetic generator running in a thread of its own.

    `start(sink)` starts the thread; `stop()` ends it and releases the device.
    A failing device is reopened with a growing pause (at most `retry_max`, so a device
    plugged back in is found within a second); `state` and `error` tell why.
    """

    kind: MediaKind

    def __init__(self, name: str, *, retry_max: float = 1.0) -> None:
        self.name = name
        self.state: Literal["stopped", "opening", "running", "failed"] = "stopped"
        self.error: str | None = None
        self.frames = 0
        self.failing_since: float | None = None  # monotonic time of the first failure in a row
        self.opening_since = 0.0  # monotonic time the current attempt to open began
        self._retry_max = retry_max
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink: FrameSink | None = None
        self.abandoned = 0  # threads left stuck in a device or encoder call
        self.log_again_after = LOG_AGAIN_AFTER
        self._warned_at: float | None = None  # monotonic time the failure was last logged

    def start(self, sink: FrameSink) -> None:
        if self._thread is not None:
            raise RuntimeError(f"source {self.name} already started")
        self._sink = sink
        self._stopping.clear()
        self._thread = threading.Thread(target=self._main, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("source %s did not stop within %.1f s", self.name, timeout)
        self.state = "stopped"
        self.failing_since = None

    def abandon(self, why: str) -> None:
        """Leave the current thread behind (stuck in a call that never returns; a thread
        cannot be killed) and carry on in a fresh one that opens the device again. The
        old one exits if it ever wakes up; until then it may hold the device."""
        if self._thread is None or self._stopping.is_set():
            return
        self.abandoned += 1
        self.state, self.error = "failed", why
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self._thread = threading.Thread(
            target=self._main, name=f"source-{self.name}-{self.abandoned}", daemon=True
        )
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def current(self) -> bool:
        """Whether the calling thread is this source's own (not one left behind)."""
        return threading.current_thread() is self._thread

    def _emit(self, frame: Frame, captured_at: float) -> None:
        if not self.current:
            raise _Abandoned
        self.frames += 1
        if self.failing_since is not None:  # back after a failure
            self.failing_since, self.error = None, None
        assert self._sink is not None
        self._sink(frame, captured_at)

    def _main(self) -> None:
        pause = 0.5
        while not self._stopping.is_set() and self.current:
            self.state, self.opening_since = "opening", time.monotonic()
            try:
                self._run()
                pause = 0.5
            except _Abandoned:
                return
            except Exception as exc:  # a device error must never end the thread
                if not self.current:
                    return
                error = str(exc) or type(exc).__name__
                now = time.monotonic()
                # said once per new error, then once every `log_again_after` seconds (an
                # unplugged camera or a missing microphone is retried every second)
                again = (
                    self._warned_at is not None and now - self._warned_at >= self.log_again_after
                )
                log = logger.debug
                if error != self.error or self._warned_at is None or again:
                    log, self._warned_at = logger.warning, now
                self.state, self.error = "failed", error
                if self.failing_since is None:
                    self.failing_since = now
                failing = f" (failing for {now - self.failing_since:.0f} s)" if again else ""
                log("source %s failed%s: %s; retrying in %.1f s", self.name, failing, exc, pause)
                self._stopping.wait(pause)
                pause = min(pause * 2, self._retry_max)

    @abstractmethod
    def _run(self) -> None:
        """Open the device and emit frames until `stopping`; raise on device errors."""


class Pacer:
    """Sleeps until the next tick of a fixed rate, skipping ticks when late."""

    def __init__(self, rate: float, stopping: threading.Event) -> None:
        self.interval = 1.0 / rate
        self._stopping = stopping
        self._next = time.monotonic()

    def wait(self) -> float | None:
        """Wait for the next tick; returns its monotonic time, or None when stopping."""
        now = time.monotonic()
        if self._next < now - self.interval:
            self._next = now  # fell behind: skip, never burst
        if self._stopping.wait(max(self._next - now, 0.0)):
            return None
        tick = self._next
        self._next += self.interval
        return tick
