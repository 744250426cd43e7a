"""Background loops that do not die quietly: `supervised()` runs a loop as a task and,
when it fails (or returns), logs it, waits (1 s, doubling to 30 s; back to 1 s after a
minute of good running) and starts it again. The restarts are counted per loop name
(`RESTARTS`, shown in `/metrics`). Used by every layer, so it lives at the bottom."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

logger = logging.getLogger(__name__)

FIRST_DELAY, MOST_DELAY, HEALTHY_SECONDS = 1.0, 30.0, 60.0

RESTARTS: collections.Counter[str] = collections.Counter()
"""Restarts so far of each supervised loop, by name (this process)."""


async def _keep_running(
    name: str, run: Callable[[], Awaitable[None]], first_delay: float, most_delay: float
) -> None:
    delay = first_delay
    while True:
        started = time.monotonic()
        try:
            await run()
            logger.error("%s ended by itself; starting it again in %.0f s", name, delay)
        except Exception:
            logger.exception("%s failed; starting it again in %.0f s", name, delay)
        RESTARTS[name] += 1
        if time.monotonic() - started >= HEALTHY_SECONDS:
            delay = first_delay
        await asyncio.sleep(delay)
        delay = min(delay * 2, most_delay)


def supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    first_delay: float = FIRST_DELAY,
    most_delay: float = MOST_DELAY,
) -> asyncio.Task[None]:
    """A task that runs `run()` again whenever it fails; cancel it to stop it (the caller
    keeps it and awaits it on `stop()`)."""
    return asyncio.create_task(_keep_running(name, run, first_delay, most_delay), name=name)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await `tasks`; whatever one of them raised is logged, never re-raised,
    so the rest of a `stop()` goes on."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            logger.error("%s had failed: %r", task.get_name(), result)


async def run_every_step(steps: list[tuple[str, Callable[[], object]]]) -> None:
    """Run each `(name, step)` in order, awaiting what a step returns when awaitable; one
    that fails is logged and the rest still run (a `stop()` releases everything)."""
    for name, step in steps:
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("stopping: %s failed; going on", name)


async def end_process(process: asyncio.subprocess.Process, grace: float) -> None:
    """Wait up to `grace` seconds for `process` to exit (it was asked to), then kill it."""
    if process.returncode is None:
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def spawn_module(
    module: str, sockets: Mapping[str, socket.socket], *args: str
) -> asyncio.subprocess.Process:
    """`python -m module --KEY FD … ARGS`: each socket's end passed on to the child under
    its key, and closed here (the child holds it now)."""
    command = [sys.executable, "-m", module]
    for key, sock in sockets.items():
        command += [f"--{key}", str(sock.fileno())]
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            *args,
            pass_fds=tuple(sock.fileno() for sock in sockets.values()),
            stdin=asyncio.subprocess.DEVNULL,
        )
    finally:
        for sock in sockets.values():
            sock.close()


async def watch_ticks(interval: float, held_up_after: float) -> AsyncIterator[bool]:
    """Every `interval` seconds, whether this process was held up since the last tick
    (it woke more than `held_up_after` seconds after it): a watch of other processes'
    heartbeats must not blame them for a silence that was its own."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        yield now - last > held_up_after
        last = now
