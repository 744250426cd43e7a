"""Viewers come and go many times; the service keeps no peer connection, task or thread."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import Service
from tests.whep_client import Viewer, eventually

VIEWERS = 10
ROUNDS = 50


async def join(service: Service, token: str, client: httpx.AsyncClient) -> Viewer:
    viewer = Viewer(service.whep(), token, decode_clock=False)
    response = await viewer.connect(client)
    assert response.status_code == 201, response.text
    return viewer


async def one_round(service: Service, token: str, client: httpx.AsyncClient, polite: bool) -> None:
    viewers = await asyncio.gather(*(join(service, token, client) for _ in range(VIEWERS)))
    try:
        # media really flowed to every viewer before it leaves
        assert await eventually(lambda: all(v.stats["audio"].frames > 0 for v in viewers), 15)
    finally:
        for viewer in viewers:
            if not polite:
                viewer.location = None  # leave without DELETE: the server must notice
        await asyncio.gather(*(v.close(client) for v in viewers))


async def test_join_leave_returns_to_baseline(demo_service: Service) -> None:
    token = demo_service.token()
    async with httpx.AsyncClient(timeout=30) as client:
        await one_round(demo_service, token, client, polite=True)  # warm lazily-made pools
        await asyncio.sleep(2)
        baseline = demo_service.health(detail=True)["process"]
        assert isinstance(baseline, dict) and baseline["sessions"] == 0
        started = time.monotonic()
        for index in range(ROUNDS):
            await one_round(demo_service, token, client, polite=index % 2 == 0)
            assert time.monotonic() - started < 600, f"too slow: round {index}"

    def settled() -> bool:
        process = demo_service.health(detail=True)["process"]
        assert isinstance(process, dict)
        return bool(
            process["sessions"] == 0
            and process["peer_connections"] == 0
            and process["tasks"] <= baseline["tasks"]
            and process["threads"] <= baseline["threads"]
        )

    assert await eventually(settled, 30), (baseline, demo_service.health(detail=True)["process"])
    health = demo_service.health()
    assert health["status"] == "ok" and health["viewers"] == 0
