"""Viewers in worker processes (issue 20): shared out over the workers; a worker killed
or hung is replaced and loses only its own viewers; the service's own event loop can
stall without a watching pupil's picture stalling; the wire between them."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest

from bench.worker_restart import workers_of
from capture import set_temporal_layer, temporal_layer
from edge.access.tokens import Grant
from edge.live.service import EdgeService
from edge.school.clock import SystemClock
from tests.conftest import ROOT, SMALL_ROOM, run_service, serve_in_process, write_site
from tests.netns import available, two_hosts
from tests.test_every_browser import pupil_url
from tests.whep_client import Viewer, eventually
from webrtc import WorkerPool, wire
from webrtc.ice import UdpPorts
from webrtc.workers import share_ports

TWO_WORKERS = 'school = "Trường Thử"\n[webrtc]\nviewer_workers = 2\n'
ONE_WORKER = 'school = "Trường Thử"\n[webrtc]\nviewer_workers = 1\n'
IN_PROCESS = 'school = "Trường Thử"\n[webrtc]\nviewer_workers = 0\n'


def token(service: EdgeService) -> str:
    return service.signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))


def session_of(viewer: Viewer) -> str:
    assert viewer.location is not None
    return viewer.location.rsplit("/", 1)[1]


async def watching(base: str, service: EdgeService, channel: bool = False) -> Viewer:
    viewer = Viewer(
        f"{base}/whep/r1", token(service), video_lines=1, decode_clock=False, channel=channel
    )
    assert (await viewer.connect()).status_code == 201
    assert await eventually(lambda: viewer.stats["camera"].frames >= 10, 20)
    return viewer


def test_frames_cross_the_wire_whole_in_any_pieces() -> None:
    packets = []
    for i, size in enumerate((10, 70_000, 1)):
        packet = av.Packet(bytes([i]) * size)
        packet.pts, packet.time_base = 3000 * i, Fraction(1, 90000)
        packet.is_keyframe = i == 1
        if i == 2:
            set_temporal_layer(packet, 1)
        packets.append(packet)
    reader = wire.FrameReader()
    whole = wire.pack_frame(7, packets[0]) + wire.gap_frame()
    whole += wire.pack_frame(8, packets[1]) + wire.pack_frame(9, packets[2])
    frames = [f for k in range(0, len(whole), 1000) for f in reader.feed(whole[k : k + 1000])]
    assert [index for index, _ in frames] == [7, -1, 8, 9]
    received = [packet for _, packet in frames if packet is not None]
    for sent, got in zip(packets, received, strict=True):
        assert bytes(got) == bytes(sent)
        assert (got.pts, got.time_base, got.is_keyframe) == (
            sent.pts,
            sent.time_base,
            sent.is_keyframe,
        )
    assert temporal_layer(received[2]) == 1 and temporal_layer(received[0]) is None


def test_messages_are_typed_and_versioned() -> None:
    offer = wire.Offer(req=3, session="s1", room="r1", sdp="v=0")
    assert wire.to_worker(wire.encode(offer)) == offer
    beat = wire.Beat(
        sessions=2,
        peer_connections=2,
        lag=0.01,
        buses={0: wire.BusCounts(subscribers=2, dropped=0, resyncs=1)},
    )
    assert wire.from_worker(wire.encode(beat)) == beat
    with pytest.raises(ValueError):
        wire.to_worker(b'{"type": "offer", "req": 1}')  # fields missing
    with pytest.raises(ValueError):
        wire.from_worker(b'{"type": "answer", "req": 1, "session": "s", "sdp": "", "x": 1}')


def test_ports_are_shared_out_among_workers() -> None:
    assert share_ports(UdpPorts(40000, 40009), 3) == [
        (40000, 40003),
        (40004, 40006),
        (40007, 40009),
    ]
    assert share_ports(None, 2) == [None, None]
    with pytest.raises(ValueError, match="fewer than the 3 viewer workers"):
        share_ports(UdpPorts(40000, 40001), 3)


async def test_a_killed_worker_loses_only_its_own_viewers(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": SMALL_ROOM}, TWO_WORKERS)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        pool = service.sessions
        assert isinstance(pool, WorkerPool) and len(pool.pids()) == 2
        first = await watching(base, service, channel=True)
        second = await watching(base, service, channel=True)
        try:
            doomed = pool.sessions[session_of(first)].link
            kept = pool.sessions[session_of(second)].link
            assert doomed is not kept  # the second viewer went to the emptier worker
            line = service.rooms["r1"].feeds().video[0]
            assert line is not None
            camera = line.renditions[0]
            assert await eventually(lambda: camera.subscribers == 2, 5)  # the workers' beats

            killed_at = time.monotonic()
            assert doomed.pid is not None
            os.kill(doomed.pid, signal.SIGKILL)
            assert await eventually(lambda: session_of(first) not in pool.sessions, 3)
            assert await eventually(
                lambda: len(pool.pids()) == 2 and doomed.pid not in pool.pids(), 5
            )
            replaced_in = time.monotonic() - killed_at
            assert replaced_in < 5, replaced_in  # the issue asks ≤ 2 s; bench/ measures it
            assert pool.replaced == 1
            await asyncio.sleep(1.0)
            gaps = second.stats["camera"].gaps(killed_at, time.monotonic())
            assert gaps and max(gaps) < 1.0, max(gaps, default=None)  # nobody else's frames
            assert second.pc.connectionState == "connected"
            # the lost viewer's page is told to join again now (its channel lives on in
            # the service); the other is not
            assert await eventually(lambda: {"type": "rejoin"} in first.received, 3)
            assert {"type": "rejoin"} not in second.received

            async with httpx.AsyncClient() as client:
                gone = await client.get(f"{base}/whep/r1/{session_of(first)}")
                assert gone.status_code == 404
                third = await watching(base, service)  # the new worker serves
                try:
                    state = await client.get(f"{base}/whep/r1/{session_of(third)}")
                    assert state.status_code == 200, state.text
                    assert state.json()["video"]["camera"] == camera.rendition
                finally:
                    await third.close()
        finally:
            await first.close()
            await second.close()


async def test_a_hung_worker_is_replaced(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": SMALL_ROOM}, ONE_WORKER)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        pool = service.sessions
        assert isinstance(pool, WorkerPool)
        viewer = await watching(base, service)
        try:
            (pid,) = pool.pids()
            os.kill(pid, signal.SIGSTOP)  # hung: alive, silent
            stopped_at = time.monotonic()
            assert await eventually(lambda: pool.pids() not in ([pid], []), 8)
            assert time.monotonic() - stopped_at >= 1.5  # waited for the missed heartbeats
            assert not pool.sessions
            with pytest.raises(ProcessLookupError):  # the hung one was killed, not left
                for _ in range(50):
                    os.kill(pid, 0)
                    await asyncio.sleep(0.1)
            again = await watching(base, service)
            await again.close()
        finally:
            await viewer.close()


async def test_a_stalled_service_loop_does_not_stall_the_picture(tmp_path: Path) -> None:
    """The service's own event loop blocked for 2 s, twice (a report, a hash, a lock):
    a pupil watching from another process sees no camera gap longer than 0.5 s (with
    the viewers in this process, `viewer_workers = 0`, the gap is the 2 s stall)."""
    config = write_site(tmp_path, {"r1": SMALL_ROOM}, ONE_WORKER)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.gap_probe",
            f"{base}/whep/r1",
            token(service),
            "8",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert probe.stdout is not None
        ready = await asyncio.wait_for(probe.stdout.readline(), 30)
        assert ready.strip() == b"ready", ready
        stalled_from = time.monotonic()
        for _ in range(2):
            time.sleep(2.0)  # noqa: ASYNC251 - on purpose: the whole loop, HTTP and all
            await asyncio.sleep(0.5)
        stalled_until = time.monotonic()
        line = await asyncio.wait_for(probe.stdout.readline(), 30)
        await probe.wait()
        arrivals = [t for t in json.loads(line)["arrivals"] if stalled_from <= t <= stalled_until]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert len(arrivals) >= 40, len(arrivals)  # 15 fps over ~5 s
        assert max(gaps) < 0.5, max(gaps)


async def test_viewers_in_the_service_process_still_work(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": SMALL_ROOM}, IN_PROCESS)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        assert not isinstance(service.sessions, WorkerPool)
        viewer = await watching(base, service)
        try:
            async with httpx.AsyncClient() as client:
                state = await client.get(f"{base}/whep/r1/{session_of(viewer)}")
                assert state.status_code == 200 and state.json()["level"] >= 0
        finally:
            await viewer.close()
        assert await eventually(lambda: not service.sessions.sessions, 5)


@pytest.mark.browser
@pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)")
def test_a_pupils_page_rejoins_at_once_when_its_worker_dies(tmp_path: Path) -> None:
    """Chromium's page is told on its channel (which lives in the service) and joins
    again at once, instead of waiting for the silence to show and for its backoff."""
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    result = tmp_path / "rejoin.json"
    with (
        two_hosts() as (server, viewer),
        run_service(tmp_path, [], server.address, server.command()) as service,
    ):
        url, _ = pupil_url(service, 0)
        probe = subprocess.Popen(
            viewer.command(
                sys.executable, str(ROOT / "tests" / "rejoin_probe.py"), url, str(result)
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert probe.stdout is not None and probe.stdin is not None
            assert probe.stdout.readline() == "live\n"
            (pid,) = workers_of(service.process.pid)  # the demo's one worker
            os.kill(pid, signal.SIGKILL)
            probe.stdin.write("killed\n")
            probe.stdin.flush()
            assert probe.wait(90) == 0
        finally:
            probe.kill()
        assert pid not in workers_of(service.process.pid)
    seen = json.loads(result.read_text("utf-8"))
    assert seen["left_live"] is not None and "reconnecting" in seen["states"], seen
    # the issue's bound for a killed worker's own viewers; about 1.5 s here (the worker
    # is replaced in under a second, then a join)
    assert seen["picture_again"] is not None and seen["picture_again"] < 5, seen
    assert seen["states"][-1] == "live", seen
