"""A camera pulled out during a lesson: viewers get the "Camera đang kết nối lại" slate
while sound goes on, staff are warned, and the picture is back within 5 s of plugging
it in again. The synthetic camera is made to fail at its lowest layer (its device read);
the service, encoders and an aiortc viewer above it are real."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from capture import TestCamera
from edge.access.tokens import Grant
from edge.live.service import EdgeService
from edge.school.clock import SystemClock
from tests.conftest import SMALL_ROOM, serve_in_process, write_site
from tests.test_console import camera_clock_gone, camera_clock_good
from tests.whep_client import Viewer, eventually

ROOM = SMALL_ROOM


def token(service: EdgeService) -> str:
    return service.signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))


async def test_unplugged_camera_shows_a_slate_and_comes_back(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": ROOM})
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        camera = service.rooms["r1"].pipelines[0].source
        assert isinstance(camera, TestCamera)
        viewer = Viewer(f"{base}/whep/r1", token(service), video_lines=1, clock_every=1)
        try:
            assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: camera_clock_good(viewer), 20)

            camera.unplugged.set()
            assert await eventually(lambda: camera_clock_gone(viewer), 5), "no slate"
            video, audio = viewer.stats["camera"].frames, viewer.stats["audio"].frames
            await eventually(lambda: False, 1.5)
            assert viewer.stats["camera"].frames >= video + 4  # the slate keeps coming
            assert viewer.stats["audio"].frames >= audio + 50  # 20 ms frames: sound goes on
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{base}/healthz")).json()
            assert health["status"] == "degraded"
            assert any("Camera không có tín hiệu" in w for w in health["warnings"])

            camera.unplugged.clear()
            plugged = time.monotonic()
            assert await eventually(lambda: camera_clock_good(viewer, last=3), 5)
            back = time.monotonic() - plugged
            print(f"\npicture back {back:.2f} s after the camera was plugged in")
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{base}/healthz")).json()
            assert health["status"] == "ok" and not health["warnings"]
        finally:
            await viewer.close()
