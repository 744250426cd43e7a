"""The console's buttons with the real service and a real aiortc viewer: the camera's
privacy pause sends a slate (no camera picture at all) and back; a removed pupil's
session ends and they cannot join this lesson again; a classroom microphone that hears
nothing for 30 s is warned of (the room's test microphone is set to silence)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.conftest import run_service, write_site
from tests.whep_client import Viewer, eventually

ROOM = """class = "6A1"
always_live = true
[camera]
kind = "test"
width = 320
height = 180
fps = 15
[mic]
kind = "test"
volume = 0
[[camera_renditions]]
width = 320
height = 180
fps = 15
bitrate_kbps = 300
"""
ROSTER = "Mã định danh,Họ và tên,Lớp\n0101000001,Nguyễn Văn An,6A1\n"


def camera_clock_good(viewer: Viewer, last: int = 5) -> bool:
    """Whether the last frames carry the test camera's clock (a picture, not a slate)."""
    late = viewer.stats["camera"].latencies_ms[-last:]
    return len(late) == last and all(0 <= ms < 5000 for ms in late)


def camera_clock_gone(viewer: Viewer, last: int = 5) -> bool:
    late = viewer.stats["camera"].latencies_ms[-last:]
    return len(late) == last and not any(0 <= ms < 5000 for ms in late)


def test_pause_the_camera_remove_a_pupil_and_a_silent_microphone(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(tmp_path, {"r1": ROOM}, 'school = "Trường Thử"\nroster = "roster.csv"\n')
    with run_service(tmp_path, ["--config", str(config)]) as service:
        started = time.monotonic()
        links = service.links("r1")
        token = str(next(x["token"] for x in links if x["kind"] == "student"))
        api = f"{service.base}/api/rooms/r1/console"

        def act(**body: object) -> httpx.Response:
            return httpx.post(api, json=body, timeout=10)

        async def scenario() -> dict[str, object]:
            viewer = Viewer(service.whep("r1"), token, video_lines=1, clock_every=1)
            try:
                assert (await viewer.connect()).status_code == 201
                assert await eventually(lambda: camera_clock_good(viewer), 20)
                assert act(action="pause_camera").json()["camera_paused"] is True
                assert await eventually(lambda: camera_clock_gone(viewer), 5)
                frames = viewer.stats["camera"].frames
                await asyncio.sleep(1.0)
                assert viewer.stats["camera"].frames > frames + 5  # a slate, still moving
                assert act(action="resume_camera").json()["camera_paused"] is False
                assert await eventually(lambda: camera_clock_good(viewer), 5)

                async with httpx.AsyncClient() as client:
                    state = (await client.get(api, timeout=10)).json()
                assert [p["name"] for p in state["online"]] == ["Nguyễn Văn An"]
                key = state["online"][0]["key"]
                assert act(action="remove", key=key).status_code == 200
                assert await eventually(lambda: viewer.pc.connectionState == "closed", 10)
            finally:
                await viewer.close()
            again = Viewer(service.whep("r1"), token, video_lines=1, decode_clock=False)
            try:
                refused = await again.connect()
            finally:
                await again.close()
            return {"status": refused.status_code, "problem": refused.json()}

        outcome = asyncio.run(scenario())
        assert outcome["status"] == 403, outcome
        assert "mời em ra khỏi tiết học" in str(outcome["problem"]), outcome

        early = httpx.get(api, timeout=10).json()
        if time.monotonic() - started < 25:
            assert early["mic_silent_seconds"] is not None and not early["mic_silent"], early

        def warned() -> bool:
            state = httpx.get(api, timeout=10).json()
            worded = [w for w in state["warnings"] if "Micro lớp học không thu được tiếng" in w]
            return bool(state["mic_silent"] and state["mic_silent_seconds"] >= 30 and worded)

        deadline = 45 - (time.monotonic() - started)
        assert asyncio.run(eventually(warned, max(deadline, 1), step=0.5))
