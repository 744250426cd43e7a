"""`/metrics` parses with prometheus_client's own parser and moves as real aiortc viewers
come and go; `/healthz` turns unhealthy (503) while a device gives no picture."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from capture import TestCamera
from edge.access.tokens import Grant
from edge.live.service import EdgeService
from edge.school.clock import SystemClock
from tests.conftest import MEDIA_HERE, SMALL_ROOM, serve_in_process, write_site
from tests.whep_client import Viewer, eventually

ROOM = (
    SMALL_ROOM.replace("[[camera_renditions]]", '[[camera_renditions]]\nname = "high"')
    + '[[camera_renditions]]\nname = "low"\nwidth = 224\nheight = 126\nfps = 5\nbitrate_kbps = 80\n'
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def token(service: EdgeService) -> str:
    return service.signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))


async def test_metrics_move_as_viewers_come_and_go(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": ROOM}, MEDIA_HERE)
    async with (
        serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base),
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        assert await eventually(lambda: service.rooms["r1"].buses["camera/high"].packets > 30, 20)
        before = await scrape(client)
        high = {"room": "r1", "rendition": "camera/high"}
        assert value(before, "classroom_edge_viewers", room="r1") == 0
        assert value(before, "classroom_edge_lesson_state", room="r1", state="live") == 1
        assert value(before, "classroom_edge_lesson_state", room="r1", state="idle") == 0
        assert value(before, "classroom_edge_device_up", room="r1", source="camera") == 1
        assert value(before, "classroom_edge_device_up", room="r1", source="mic") == 1
        assert 10 <= value(before, "classroom_edge_rendition_fps", **high) <= 17
        assert 40 <= value(before, "classroom_edge_rendition_fps", room="r1", rendition="mic") <= 60
        assert value(before, "classroom_edge_rendition_bitrate_bps", **high) > 20_000
        assert 0 <= value(before, "classroom_edge_loop_lag_seconds") < 2.0  # a quiet loop
        assert value(before, "classroom_edge_encode_seconds_total", **high) > 0
        assert value(before, "classroom_edge_archive_queue_depth") == 0

        viewers = [Viewer(f"{base}/whep/r1", token(service), video_lines=1) for _ in range(2)]
        try:
            for viewer in viewers:
                assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: all(v.stats["camera"].frames > 10 for v in viewers), 20)
            during = await scrape(client)
            assert value(during, "classroom_edge_viewers", room="r1") == 2
            assert value(during, "classroom_edge_rendition_subscribers", **high) == 2
            for counter in (
                "classroom_edge_rendition_bytes_total",
                "classroom_edge_encoded_frames_total",
                "classroom_edge_keyframes_total",
                "classroom_edge_device_frames_total",
            ):
                labels = high if counter != "classroom_edge_device_frames_total" else {}
                labels = labels or {"room": "r1", "source": "camera"}
                assert value(during, counter, **labels) > value(before, counter, **labels)
            # each joiner asked for an IDR
            requests = "classroom_edge_keyframe_requests_total"
            assert value(during, requests, **high) >= value(before, requests, **high) + 2
        finally:
            for viewer in viewers:
                await viewer.close()

        assert await eventually(lambda: not service.sessions.sessions, 10)
        after = await scrape(client)
        assert value(after, "classroom_edge_viewers", room="r1") == 0
        assert value(after, "classroom_edge_rendition_subscribers", **high) == 0

        # a camera pulled out: the device is down, /healthz says unhealthy
        camera = service.rooms["r1"].pipelines[0].source
        assert isinstance(camera, TestCamera)
        camera.unplugged.set()
        assert await eventually(lambda: service.rooms["r1"].pipelines[0].showing_missing, 5)
        gone = await scrape(client)
        assert value(gone, "classroom_edge_device_up", room="r1", source="camera") == 0
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        camera.unplugged.clear()
        assert await eventually(lambda: not service.rooms["r1"].pipelines[0].showing_missing, 5)
        assert (await client.get("/healthz")).status_code == 200
