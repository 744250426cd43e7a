"""Bell time with the real service: a viewer stays through a back-to-back rollover and
leaves at the end; a process killed mid-lesson resumes it with the same id; teachers'
controls; the waiting room's 409."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from edge.access.links import signer_for
from edge.access.tokens import Grant
from edge.config.settings import load
from edge.live.service import EdgeService
from edge.school.clock import ManualClock
from tests.conftest import run_service, serve_in_process, write_site
from tests.whep_client import Viewer, eventually

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
WEDNESDAY = dt.date(2026, 11, 25)
SITE = """school = "Trường Thử"
[schedule]
lead_minutes = 2
grace_minutes = 2
rollover_minutes = 5
"""
ROOM = """class = "6A1"
[camera]
kind = "test"
width = 320
height = 180
fps = 15
[mic]
kind = "test"
[[camera_renditions]]
width = 320
height = 180
fps = 15
bitrate_kbps = 300
[[timetable.period]]
day = "Thứ Tư"
session = "sáng"
period = 1
subject = "Toán"
teacher = "Nguyễn Thị Lan"
[[timetable.period]]
day = "Thứ Tư"
session = "sáng"
period = 2
subject = "Ngữ văn"
teacher = "Trần Văn Minh"
"""


def at(text: str) -> dt.datetime:
    return dt.datetime.combine(WEDNESDAY, dt.time.fromisoformat(text), ZONE)


def serving(
    tmp_path: Path, clock: ManualClock
) -> AbstractAsyncContextManager[tuple[EdgeService, str]]:
    return serve_in_process(write_site(tmp_path, {"r1": ROOM}, SITE), tmp_path / "data", clock)


def token(service: EdgeService) -> str:
    return service.signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))


async def test_back_to_back_periods_keep_a_connected_viewer(tmp_path: Path) -> None:
    clock = ManualClock(at("06:57"))
    async with serving(tmp_path, clock) as (service, base), httpx.AsyncClient() as client:
        room = service.rooms["r1"]
        whep = f"{base}/whep/r1"
        early = Viewer(whep, token(service), video_lines=1, decode_clock=False)
        refused = await early.connect()
        await early.close()
        assert refused.status_code == 409  # the waiting room: what comes, and when
        problem = refused.json()
        assert problem["next_start"] == "2026-11-25T07:00:00+07:00"
        assert problem["next_lesson"]["subject"] == "Toán"
        assert problem["next_lesson"]["teacher"] == "Nguyễn Thị Lan"
        assert problem["now"] == "2026-11-25T06:57:00+07:00"
        assert not room.capturing

        await clock.advance_to(at("06:58"))
        assert room.capturing and not room.live  # warming: encoders run before the bell
        await clock.advance_to(at("07:00"))
        assert room.live
        viewer = Viewer(whep, token(service), video_lines=1, decode_clock=False)
        try:
            assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: viewer.stats["camera"].frames > 15, 20)

            await clock.advance_to(at("07:50"))  # Toán closes as Ngữ văn goes live
            lessons = {x.subject: x for x in service.store.lessons("r1", at("00:00"))}
            assert lessons["Toán"].state == "recorded" and lessons["Ngữ văn"].state == "live"
            frames = viewer.stats["camera"].frames
            assert await eventually(lambda: viewer.stats["camera"].frames > frames + 15, 10)
            assert viewer.pc.connectionState == "connected" and len(service.sessions.sessions) == 1

            await clock.advance_to(at("08:37"))  # Ngữ văn ends (08:35) and its grace time
            assert not room.live and not room.capturing
            assert await eventually(lambda: not service.sessions.sessions, 10)
            now = await client.get(
                f"{base}/api/rooms/r1/now", headers={"Authorization": f"Bearer {token(service)}"}
            )
            assert now.json()["ended"]["subject"] == "Ngữ văn" and now.json()["live"] is None
        finally:
            await viewer.close()


async def test_teachers_start_extend_and_end_from_the_room(tmp_path: Path) -> None:
    clock = ManualClock(at("12:00"))
    async with serving(tmp_path, clock) as (service, base), httpx.AsyncClient() as client:
        api = f"{base}/api/rooms/r1/lesson"
        started = await client.post(api, json={"minutes": 20, "subject": "Ôn tập"})
        assert started.status_code == 201, started.text
        assert started.json()["end"] == "2026-11-25T12:20:00+07:00"
        assert service.rooms["r1"].live
        assert (await client.post(api, json={"minutes": 20})).status_code == 409
        extended = await client.post(f"{api}/extend", json={"minutes": 10})
        assert extended.json()["end"] == "2026-11-25T12:30:00+07:00"
        assert (await client.post(f"{api}/extend", json={"minutes": "ten"})).status_code == 400
        form = await client.post(
            f"{api}/end", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert form.status_code == 415 and service.rooms["r1"].live  # no cross-site commands
        ended = await client.post(f"{api}/end", json={})
        assert ended.status_code == 200 and not service.rooms["r1"].live
        refused = await client.post(f"{api}/end", json={})
        assert refused.status_code == 409 and "Không có tiết học" in refused.json()["detail"]

        proxied = {"X-Forwarded-For": "203.0.113.9"}  # not the room's own screen
        assert (await client.post(api, json={}, headers=proxied)).status_code == 403
        with_key = {**proxied, "Authorization": f"Bearer {service.staff.key}"}
        assert (await client.post(api, json={"minutes": 5}, headers=with_key)).status_code == 201
        old = await client.get(f"{base}/control/r1")  # the one console does it all now
        assert old.status_code == 301 and old.headers["location"] == "/console/r1"


def test_a_killed_process_resumes_its_lesson_with_the_same_id(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    args = ["--config", str(config), "--clock", "2026-11-25T07:10:00+07:00"]
    with run_service(tmp_path, args) as first:
        before = httpx.get(f"{first.base}/api/rooms/r1/lesson", timeout=10).json()
        assert before["live"]["subject"] == "Toán"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    args[-1] = "2026-11-25T07:11:00+07:00"
    started = time.monotonic()
    with run_service(tmp_path, args) as second:
        after = httpx.get(f"{second.base}/api/rooms/r1/lesson", timeout=10).json()
        assert time.monotonic() - started < 10
        assert after["live"]["subject"] == "Toán"
        assert after["live"]["id"] == before["live"]["id"] == "r1-20261125-0700"
        assert after["live"]["state"] == "live"

        async def join() -> int:
            signer = signer_for(load(config, data_dir=second.data_dir))
            pupil = signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))
            viewer = Viewer(second.whep("r1"), pupil, video_lines=1, decode_clock=False)
            try:
                assert (await viewer.connect()).status_code == 201
                await eventually(lambda: viewer.stats["camera"].frames > 5, 20)
                return viewer.stats["camera"].frames
            finally:
                await viewer.close()

        assert asyncio.run(join()) > 5
