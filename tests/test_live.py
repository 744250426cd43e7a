"""End to end over loopback: a real aiortc viewer watches the demo lesson."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time

import httpx

from tests.conftest import ROOT, Service
from tests.whep_client import Viewer, eventually


async def watch(service: Service, seconds: float, **kwargs: object) -> Viewer:
    viewer = Viewer(service.whep(), service.token(), **kwargs)  # type: ignore[arg-type]
    response = await viewer.connect()
    assert response.status_code == 201, response.text
    s = viewer.stats
    await eventually(
        lambda: s["camera"].frames >= 60 and s["board"].frames >= 5 and s["audio"].frames >= 50,
        seconds,
    )
    return viewer


async def test_viewer_decodes_camera_board_and_audio(demo_service: Service) -> None:
    started = time.monotonic()
    viewer = await watch(demo_service, 15)
    try:
        camera, board, audio = (viewer.stats[k] for k in ("camera", "board", "audio"))
        assert camera.frames >= 60, camera
        assert (camera.width, camera.height) == (1280, 720)
        assert board.frames >= 5, board
        assert (board.width, board.height) == (1920, 1080)
        assert audio.frames >= 50, audio
        assert time.monotonic() - started < 15
        # the burned-in capture clock decodes to a plausible wall-clock time
        assert camera.clock_ms and board.clock_ms
        for clock in camera.clock_ms + board.clock_ms:
            assert abs(clock / 1000 - time.time()) < 10, clock
        assert 0 <= min(camera.latencies_ms) < 2000
    finally:
        await viewer.close()


async def test_answer_location_delete_and_headers(demo_service: Service) -> None:
    viewer = Viewer(demo_service.whep(), demo_service.token())
    response = await viewer.connect()
    try:
        assert response.status_code == 201
        assert response.headers["content-type"].startswith("application/sdp")
        assert response.headers["location"].startswith("/whep/demo/")
        assert "a=sendonly" in response.text and "H264" in response.text
        assert "127.0.0.1" in response.text
        async with httpx.AsyncClient() as client:
            frag = "a=ice-ufrag:doesnotmatch\r\na=ice-pwd:x\r\n"
            patched = await client.patch(
                viewer.location or "",
                content=frag,
                headers={"Content-Type": "application/trickle-ice-sdpfrag"},
            )
            assert patched.status_code == 422  # an ICE restart: not supported, per RFC 9725
            offer_ufrag = viewer.pc.localDescription.sdp.split("a=ice-ufrag:")[1].split()[0]
            trickle = (
                f"a=ice-ufrag:{offer_ufrag}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
                "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
            )
            patched = await client.patch(
                viewer.location or "",
                content=trickle,
                headers={"Content-Type": "application/trickle-ice-sdpfrag"},
            )
            assert patched.status_code == 204, patched.text
            wrong = await client.patch(
                viewer.location or "", content=trickle, headers={"Content-Type": "text/plain"}
            )
            assert wrong.status_code == 415
            preflight = await client.options(
                demo_service.whep(),
                headers={
                    "Origin": "https://school.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "POST" in preflight.headers["access-control-allow-methods"]
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
            deleted = await client.delete(viewer.location or "")
            assert deleted.status_code == 200
            again = await client.delete(viewer.location or "")
            assert again.status_code == 404
            gone = await client.patch(
                viewer.location or "",
                content=trickle,
                headers={"Content-Type": "application/trickle-ice-sdpfrag"},
            )
            assert gone.status_code == 404
        viewer.location = None
    finally:
        await viewer.close()


VANISHING_VIEWER = """
import asyncio, sys
from tests.whep_client import Viewer, eventually
from webrtc import gather_only

async def main() -> None:
    gather_only(["127.0.0.1"])
    viewer = Viewer(sys.argv[1], sys.argv[2], video_lines=1, audio=False)
    assert (await viewer.connect()).status_code == 201
    assert await eventually(lambda: viewer.stats["camera"].frames > 5, 15)
    print("playing", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_a_vanished_viewer_is_dropped(demo_service: Service) -> None:
    """A phone that loses its network says goodbye to no one: ICE consent ends it."""
    viewer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VANISHING_VIEWER, demo_service.whep(), demo_service.token(),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert viewer.stdout is not None
        assert await asyncio.wait_for(viewer.stdout.readline(), 30) == b"playing\n"
        assert demo_service.health()["viewers"] == 1
        viewer.send_signal(signal.SIGKILL)
        started = time.monotonic()
        assert await eventually(lambda: demo_service.health()["viewers"] == 0, 60, step=1)
        assert time.monotonic() - started > 5  # it was really ICE consent, not a goodbye
    finally:
        with contextlib.suppress(ProcessLookupError):
            viewer.kill()
        await asyncio.wait_for(viewer.wait(), 10)
