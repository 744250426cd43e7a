"""One console: an extra lesson started, extended and ended from the console's buttons with
the real service on a manual clock; the lesson API keeps the same rules (whole minutes,
1 to 120); with no scheduler running both answer 503 instead of pretending; the old
`/control/{room}` page sends the teacher to the console."""

from __future__ import annotations

from pathlib import Path

import httpx

from edge.school.clock import ManualClock
from tests.test_bell import at, serving


async def test_an_extra_lesson_from_the_console(tmp_path: Path) -> None:
    clock = ManualClock(at("12:00"))
    async with serving(tmp_path, clock) as (service, base), httpx.AsyncClient() as client:
        console = f"{base}/api/rooms/r1/console"
        lesson_api = f"{base}/api/rooms/r1/lesson"

        started = await client.post(console, json={"action": "start", "minutes": 30})
        assert started.status_code == 200, started.text
        state = started.json()
        assert state["live"] and service.rooms["r1"].live
        assert state["lesson"]["subject"] == "Tiết học thêm" and state["lesson"]["kind"] == "adhoc"
        assert state["lesson"]["end"] == "2026-11-25T12:30:00+07:00"
        again = await client.post(console, json={"action": "start", "minutes": 30})
        assert again.status_code == 409 and "Đang có tiết học" in again.json()["detail"]

        for minutes in (0, 121, 7.5, "10", True):  # the same limits on both doors
            bad = await client.post(console, json={"action": "extend", "minutes": minutes})
            assert bad.status_code == 400 and "1 to 120" in bad.json()["detail"], minutes
            bad = await client.post(f"{lesson_api}/extend", json={"minutes": minutes})
            assert bad.status_code == 400 and "1 to 120" in bad.json()["detail"], minutes
        extended = await client.post(console, json={"action": "extend", "minutes": 90})
        assert extended.status_code == 200, extended.text  # more than the old 60 of the console
        assert extended.json()["lesson"]["end"] == "2026-11-25T14:00:00+07:00"
        by_api = await client.post(f"{lesson_api}/extend", json={"minutes": 120})
        assert by_api.json()["end"] == "2026-11-25T16:00:00+07:00"

        await clock.advance_to(at("12:10"))
        ended = await client.post(console, json={"action": "end"})
        assert ended.status_code == 200, ended.text
        assert not ended.json()["live"] and ended.json()["lesson"] is None
        assert not service.rooms["r1"].live
        lessons = service.store.lessons("r1", at("00:00"))
        extra = next(x for x in lessons if x.kind == "adhoc")
        assert extra.state != "live" and extra.ends_at == at("12:10")
        nothing = await client.post(console, json={"action": "end"})
        assert nothing.status_code == 409 and "Không có tiết học" in nothing.json()["detail"]

        old = await client.get(f"{base}/control/r1")
        assert old.status_code == 301 and old.headers["location"] == "/console/r1"
        page = await client.get(f"{base}/control/r1", follow_redirects=True)
        assert page.status_code == 200 and "Bắt đầu tiết học thêm" in page.text
        assert str(page.url).endswith("/console/r1")
