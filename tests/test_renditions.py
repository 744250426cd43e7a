"""Renditions per viewer on loopback: "save data" from the start or during the lesson,
verified by the size of the decoded camera frames; the session resource tells the page."""

from __future__ import annotations

import httpx

from tests.conftest import Service
from tests.whep_client import Viewer, eventually


async def test_save_data_gives_low_renditions_and_back(demo_service: Service) -> None:
    viewer = Viewer(demo_service.whep() + "?save_data=1", demo_service.token(), decode_clock=False)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await viewer.connect(client)).status_code == 201
        assert viewer.location is not None
        try:
            camera = viewer.stats["camera"]
            assert await eventually(lambda: camera.frames >= 10, 10)
            assert (camera.width, camera.height) == (640, 360)
            state = (await client.get(viewer.location)).json()
            assert state["video"] == {"camera": "low", "board": "stills"}
            assert state["save_data"] is True and state["level"] < state["levels"] - 1

            response = await client.patch(
                viewer.location,
                json={"save_data": False},
            )
            assert response.status_code == 204
            assert await eventually(lambda: camera.width == 1280, 20), camera
            state = (await client.get(viewer.location)).json()
            assert state["video"] == {"camera": "high", "board": "high"}
            assert state["sent_bytes"] > 100_000

            frames = camera.frames
            assert await eventually(lambda: camera.frames > frames + 10, 5), "still playing"
        finally:
            await viewer.close(client)


async def test_session_wishes_are_validated(demo_service: Service) -> None:
    viewer = Viewer(demo_service.whep(), demo_service.token(), decode_clock=False)
    async with httpx.AsyncClient(timeout=10) as client:
        answered = await viewer.connect(client)
        assert answered.status_code == 201
        assert viewer.location is not None
        try:
            # what the answer took here, in ms (bench/first_picture.py reads it)
            parts = [
                part.strip().split(";dur=") for part in answered.headers["server-timing"].split(",")
            ]
            took = {name: float(ms) for name, ms in parts}
            assert set(took) == {"answer", "negotiate", "gather"}, took
            assert 0 <= took["negotiate"] + took["gather"] <= took["answer"], took
            bad = await client.patch(viewer.location, json={"save_data": "yes"})
            assert bad.status_code == 400 and "save_data" in bad.json()["detail"]
            wrong_type = await client.patch(
                viewer.location, content=b"x", headers={"Content-Type": "text/plain"}
            )
            assert wrong_type.status_code == 415
            assert "application/json" in wrong_type.headers["accept-patch"]
            missing = await client.get(viewer.location.rsplit("/", 1)[0] + "/nope")
            assert missing.status_code == 404
        finally:
            await viewer.close(client)
