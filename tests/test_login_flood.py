"""Nothing a client sends stalls the media (the first rows of the security issue): 50
wrong logins from 5 addresses while a pupil watches, and a 300 MiB body to /login.
Password hashing runs in a thread of its own; bodies are bounded before they are read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.access import staff
from edge.access.staff import set_password
from tests.conftest import Service, run_service
from tests.whep_client import Viewer, eventually

WRONG = {"password": "sai-mat-khau", "next": "/reports"}


def rss_mb(service: Service) -> float:
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def flood(base: str, address: str, attempts: int) -> list[int]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=60) as client:
        answers = [client.post("/login", data=WRONG) for _ in range(attempts)]
        return [r.status_code for r in await asyncio.gather(*answers)]


async def test_a_login_flood_does_not_freeze_a_watching_pupil(tmp_path: Path) -> None:
    set_password(tmp_path / "data", "mật-khẩu-BGH-2026")
    with run_service(tmp_path, ["--demo"]) as service:
        viewer = Viewer(service.whep(), service.token(), video_lines=1, audio=False)
        assert (await viewer.connect()).status_code == 201
        camera = viewer.stats["camera"]
        try:
            assert await eventually(lambda: camera.frames >= 30, 20)
            watched_from = time.monotonic()
            await asyncio.sleep(1)
            started = time.monotonic()
            codes = await asyncio.gather(
                *(flood(service.base, f"127.0.0.{n}", 10) for n in range(2, 7))
            )
            flooded = time.monotonic() - started
            await asyncio.sleep(1)
            gaps = camera.gaps(watched_from, time.monotonic())
        finally:
            await viewer.close()
    assert sorted({c for answers in codes for c in answers}) == [303], codes  # all checked
    print(f"50 wrong logins in {flooded:.1f} s; camera frames {len(gaps) + 1}, "
          f"largest gap {max(gaps) * 1000:.0f} ms")  # fmt: skip
    assert flooded > 1.0  # the hashing really happened (50 × ~0.1 s, one at a time)
    assert max(gaps) < 1.0, max(gaps)  # no freeze (the loop used to stall 5 s and more)


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    block = b"p" * size
    for _ in range(total // size):
        yield block


def test_a_huge_login_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with run_service(tmp_path, ["--demo"]) as service:
        before = rss_mb(service)
        for declared in (True, False):
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if declared:
                headers["Content-Length"] = str(300 << 20)
            try:
                with httpx.Client(timeout=30) as client:
                    answer = client.post(
                        f"{service.base}/login",
                        content=chunks(300 << 20),
                        headers=headers,
                        extensions={"timeout": {"write": 30}},
                    )
                assert answer.status_code == 413, answer.text
            except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
                pass  # refused while we were still sending: as good
        after = rss_mb(service)
        assert after - before < 50, (before, after)
        assert service.health()["status"] == "ok"


async def test_password_checks_queue_no_further_than_their_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the hashing itself stands in for scrypt (10 ms), the queue around it is the real one
    def slow_check(data_dir: Path, password: str) -> bool:
        time.sleep(0.01)
        return False

    monkeypatch.setattr(staff, "check_password", slow_check)
    results = await asyncio.gather(
        *(staff.check_password_off_loop(tmp_path, "sai") for _ in range(staff.MOST_WAITING + 6)),
        return_exceptions=True,
    )
    busy = [r for r in results if isinstance(r, staff.HashingBusy)]
    assert results.count(False) == staff.MOST_WAITING and len(busy) == 6, results
    assert await staff.check_password_off_loop(tmp_path, "sai") is False  # the queue drained
