"""Background loops do not die quietly: each of the service's loops, made to fail once by
an injected error, is started again (counted in /metrics) and goes on doing its work;
`stop()` runs to its end even when a loop had failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from capture import supervise
from capture.supervise import RESTARTS, cancel_all, supervised
from edge.live import service as service_module
from edge.recording import archive
from edge.recording.archive import DiskGuard
from edge.school.attendance import AttendanceStore
from edge.school.clock import SystemClock
from edge.school.scheduler import Scheduler
from tests.conftest import SMALL_ROOM, serve_in_process, write_site
from tests.whep_client import eventually
from webrtc import Feeds, WorkerPool
from webrtc.whep import SessionManager


async def test_a_failing_loop_is_started_again_and_a_returning_one_too() -> None:
    runs: list[str] = []

    async def flaky() -> None:
        runs.append("run")
        if len(runs) == 1:
            raise RuntimeError("injected")
        if len(runs) == 2:
            return  # a loop that ends by itself is started again as well
        await asyncio.sleep(3600)

    before = RESTARTS["test-flaky"]
    task = supervised("test-flaky", flaky, first_delay=0.01, most_delay=0.02)
    assert await eventually(lambda: len(runs) == 3, 5), runs
    assert RESTARTS["test-flaky"] - before == 2
    await cancel_all([task])
    assert task.cancelled()


async def test_stopping_goes_on_past_a_task_that_had_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("it broke earlier")

    async def sleeping() -> None:
        await asyncio.sleep(3600)

    failed = asyncio.create_task(broken(), name="broken")
    waiting = asyncio.create_task(sleeping(), name="sleeping")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger=supervise.__name__):
        await cancel_all([failed, waiting])  # does not raise the earlier failure
    assert waiting.cancelled()
    assert "broken had failed" in caplog.text


def fail_once(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, after: int = 0
) -> Callable[[], int]:
    """`owner.name` raises once, on call number `after` + 1; returns the call count."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == after + 1:
            raise RuntimeError(f"injected into {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return lambda: calls[0]


async def test_every_loop_of_the_service_comes_back_after_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "HEARTBEAT", 0.1)
    monkeypatch.setattr(archive, "GUARD_SECONDS", 0.1)
    # the first call of each of these, in its loop, fails; the calls after work
    calls = {
        "viewer-workers": fail_once(monkeypatch, WorkerPool, "_watch_once"),
        "attendance-heartbeat": fail_once(monkeypatch, AttendanceStore, "seen"),
        "archive-guard": fail_once(monkeypatch, DiskGuard, "check", after=1),  # 1: start()
        "scheduler": fail_once(monkeypatch, Scheduler, "next_moment"),
    }
    # the restart delay must be the patched one: supervised() reads its default at import
    real_supervised = supervise.supervised

    def quick(name: str, run: Any, **options: Any) -> asyncio.Task[None]:
        return real_supervised(name, run, first_delay=0.05, most_delay=0.1)

    for module in (
        "edge.live.service",
        "edge.recording.archive",
        "edge.school.scheduler",
        "webrtc.workers",
    ):
        monkeypatch.setattr(f"{module}.supervised", quick)
    before = {name: RESTARTS[name] for name in calls}
    config = write_site(tmp_path, {"r1": SMALL_ROOM})
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        restarted = await eventually(
            lambda: all(RESTARTS[name] > before[name] for name in calls), 20
        )
        assert restarted, {name: RESTARTS[name] - before[name] for name in calls}
        # each was called again after its failure: the scheduler planned its next moment
        # (hours away in an always-live room), the periodic ones go on with their work
        again = await eventually(lambda: all(count() >= 2 for count in calls.values()), 10)
        counts = {name: count() for name, count in calls.items()}
        assert again, counts
        periodic = [name for name in calls if name != "scheduler"]
        assert await eventually(lambda: all(calls[n]() > counts[n] for n in periodic), 10), counts
        assert service.rooms["r1"].live
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = (await client.get(f"{base}/metrics")).text
        for name in calls:
            assert f'classroom_edge_loop_restarts_total{{loop="{name}"}}' in metrics, name


async def test_the_viewer_sessions_loops_come_back_after_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where viewers are served (a viewer worker, or the service with viewer_workers = 0)."""
    calls = {
        "whep-reaper": fail_once(monkeypatch, SessionManager, "_reap_once"),
        "whep-adapt": fail_once(monkeypatch, SessionManager, "_adapt_once"),
    }
    real_supervised = supervise.supervised

    def quick(name: str, run: Any, **options: Any) -> asyncio.Task[None]:
        return real_supervised(name, run, first_delay=0.05, most_delay=0.1)

    monkeypatch.setattr("webrtc.whep.supervised", quick)
    before = {name: RESTARTS[name] for name in calls}
    sessions = SessionManager(lambda room: Feeds(video=[], audio=None))
    await sessions.start()
    try:
        assert await eventually(lambda: all(RESTARTS[n] > before[n] for n in calls), 10)
        assert await eventually(lambda: all(count() >= 2 for count in calls.values()), 10)
    finally:
        await sessions.stop()


async def test_the_service_stops_everything_when_one_part_fails_to_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_stop(self: object) -> None:
        raise RuntimeError("injected: the archive queue would not stop")

    monkeypatch.setattr(archive.Archiver, "stop", broken_stop)
    config = write_site(tmp_path, {"r1": SMALL_ROOM})
    with caplog.at_level(logging.ERROR, logger=supervise.__name__):
        async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, _):
            rooms = list(service.rooms.values())
            assert all(room.capturing for room in rooms)  # an always-live room
    assert "archiver failed; going on" in caplog.text
    # the steps after it ran: the rooms released their devices, attendance was closed
    assert all(not room.capturing and not room.live for room in rooms)
    with pytest.raises(RuntimeError):  # its writer thread was shut down: closed
        service.attendance._writer.submit(lambda: None)
