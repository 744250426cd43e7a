"""One school, three rooms and the hub, each its own server on loopback (own port, own
data dir), replaying a school morning on one manual clock: real aiortc viewers in two
rooms; a room that misses its bell turns red on /school/rooms; the hub and a room are
stopped while lessons end, a room is off for an hour and starts again, and the hub's
CSV is then the rooms' own CSVs merged, byte for byte: nothing lost, nothing twice.
A room's key cannot write another room's rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import uvicorn

from edge.access.hubkey import signed_headers
from edge.access.links import staff_key
from edge.access.tokens import Grant
from edge.config.settings import load
from edge.live.service import EdgeService
from edge.school.clock import ManualClock
from edge.school.reports import DETAIL_HEADERS
from edge.web.app import create_app
from tests.conftest import ARTIFACTS, free_port, write_site
from tests.whep_client import Viewer, eventually
from webrtc import gather_only

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
WEDNESDAY = dt.date(2026, 11, 25)
SCHOOL = "Trường THCS Thử"
SITE = f"""school = "{SCHOOL}"
roster = "roster.csv"
[schedule]
lead_minutes = 1
grace_minutes = 0
rollover_minutes = 0
"""
ROOM = """class = "{cls}"
record = false
[camera]
kind = "test"
width = 320
height = 180
fps = 10
[mic]
kind = "test"
[[camera_renditions]]
width = 320
height = 180
fps = 10
bitrate_kbps = 200
[hub]
url = "{hub}"
key_file = "../../keys/{room}.key"
beat_seconds = 60
retry_base_seconds = 5
retry_max_seconds = 600
"""
PERIOD = """[[timetable.period]]
day = "Thứ Tư"
session = "sáng"
period = {n}
subject = "{subject}"
teacher = "{teacher}"
"""
TIMETABLES = {  # room -> (class, periods)
    "p1": ("6A1", [(1, "Toán", "Nguyễn Thị Lan"), (2, "Thể dục", "Lê Văn Hùng")]),
    "p2": ("6A2", [(1, "Ngữ văn", "Trần Văn Minh"), (2, "Tiếng Anh", "Phạm Thu Hà")]),
    "p3": ("6A3", [(2, "Lịch sử", "Đỗ Quang Vinh")]),
}
PUPILS = {  # class -> pupils (id, name)
    "6A1": [("0101000001", "Nguyễn Văn An"), ("0101000002", "Trần Thị Bình")],
    "6A2": [("0102000001", "Lê Hoàng Châu"), ("0102000002", "Phạm Minh Đức")],
    "6A3": [("0103000001", "Vũ Thị Em")],
}


def at(text: str) -> dt.datetime:
    return dt.datetime.combine(WEDNESDAY, dt.time.fromisoformat(text), ZONE)


class Server:
    """One `classroom-edge run` in this event loop, on a port it keeps across restarts."""

    def __init__(self, config: Path, data: Path, clock: ManualClock, port: int) -> None:
        self.config, self.data, self.clock, self.port = config, data, clock, port
        self.base = f"http://127.0.0.1:{port}"
        self.service: EdgeService | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EdgeService:
        self.service = EdgeService(
            load(self.config, data_dir=self.data),
            host="127.0.0.1",
            port=self.port,
            clock=self.clock,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.service),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
            )
        )
        self._task = asyncio.create_task(self._server.serve())
        server, task = self._server, self._task
        assert await eventually(lambda: server.started or task.done(), 30)
        assert server.started
        return self.service

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task
        self.service = None
        gather_only(["127.0.0.1"])  # a service's stop() resets what every one of them uses

    def staff(self) -> dict[str, str]:
        assert self.service is not None
        return {"Authorization": f"Bearer {staff_key(self.service.config)}"}


def write_school(tmp: Path, hub_port: int) -> tuple[Path, dict[str, Path]]:
    keys = tmp / "keys"
    keys.mkdir()
    hub_rooms = ""
    rooms: dict[str, Path] = {}
    for room, (cls, periods) in TIMETABLES.items():
        (keys / f"{room}.key").write_text(f"key-of-room-{room}-0123456789abcdef\n")
        hub_rooms += (
            f'[school_hub.rooms.{room}]\nclass = "{cls}"\nkey_file = "../keys/{room}.key"\n'
        )
        site = tmp / room
        site.mkdir()
        roster = "Mã định danh,Họ và tên,Lớp\n" + "".join(
            f"{pid},{name},{cls}\n" for pid, name in PUPILS[cls]
        )
        (site / "roster.csv").write_text(roster, encoding="utf-8")
        text = ROOM.format(cls=cls, hub=f"http://127.0.0.1:{hub_port}", room=room) + "".join(
            PERIOD.format(n=n, subject=subject, teacher=teacher) for n, subject, teacher in periods
        )
        rooms[room] = write_site(site, {room: text}, SITE)
    hub = tmp / "hub"
    hub.mkdir()
    (hub / "edge.toml").write_text(
        f'school = "{SCHOOL}"\n[school_hub]\n{hub_rooms}', encoding="utf-8"
    )
    return hub / "edge.toml", rooms


PAGES = {
    "school": f"/school?date={WEDNESDAY.isoformat()}",
    "school-rooms": "/school/rooms",
    "school-district": f"/school/district?date={WEDNESDAY.isoformat()}",
}
NOT_FOR_PEOPLE = ("{", "null", "true", "false", "school_hub", "key_file", "None", "Traceback")


def look_in_chromium(base: str, staff: dict[str, str], names: tuple[str, ...]) -> None:
    """The hub's pages as the principal and the IT staff see them, on a computer and a
    phone: Vietnamese, nothing for machines, as wide as the screen; screenshots."""
    from tests.browser_probe import chromium

    ARTIFACTS.mkdir(exist_ok=True)
    with chromium(
        viewport={"width": 1280, "height": 800}, locale="vi-VN", extra_http_headers=staff
    ) as context:
        page = context.new_page()
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            for name in names:
                page.goto(base + PAGES[name])
                text = page.inner_text("body")
                assert page.evaluate("document.documentElement.lang") == "vi"
                assert not [word for word in NOT_FOR_PEOPLE if word in text], (name, text)
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= width, f"{name} is {wide} px wide on a {width} px screen"
                page.screenshot(
                    path=str(ARTIFACTS / f"{name}-{width}x{height}.png"), full_page=True
                )
                if name == "school-district":
                    continue
                missed = page.locator("tbody tr", has_text="Không lên sóng").locator("td")
                color = missed.first.evaluate("cell => getComputedStyle(cell).backgroundColor")
                assert color == "rgb(248, 208, 208)", (name, color)  # red


def csv_parts(data: bytes) -> tuple[list[str], list[str], list[str]]:
    """A report CSV's head (title, summary header), summary rows and detail rows."""
    lines = data.decode("utf-8").split("\r\n")
    blank = lines.index("")
    return lines[:2], lines[2:blank], lines[blank + 2 : -1]


async def test_a_school_morning_reaches_the_hub(tmp_path: Path) -> None:
    clock = ManualClock(at("06:58"))
    hub_port = free_port()
    hub_config, room_configs = write_school(tmp_path, hub_port)
    hub = Server(hub_config, tmp_path / "hub-data", clock, hub_port)
    rooms = {
        name: Server(config, tmp_path / f"{name}-data", clock, free_port())
        for name, config in room_configs.items()
    }
    drills = tmp_path / "p1-data" / "drills"
    drills.mkdir(parents=True)
    (drills / "p1-2026-11-20-0700.json").write_text(
        json.dumps({"room": "p1", "started": "2026-11-20T07:00:00+07:00", "passed": True})
    )
    started = time.monotonic()
    await hub.start()
    for room in rooms.values():
        await room.start()
    viewers: list[Viewer] = []
    client = httpx.AsyncClient(timeout=10)
    try:
        for name, pupils in (("p1", ["0101000001", "0101000002"]), ("p2", ["0102000001"])):
            cls = TIMETABLES[name][0]
            marked = await client.post(
                f"{rooms[name].base}/api/classes/{cls}/at-home",
                json={"date": WEDNESDAY.isoformat(), "pupils": pupils},
                headers=rooms[name].staff(),
            )
            assert marked.status_code == 200, marked.text
        await clock.advance_to(at("06:59"))

        async def rooms_view() -> str:
            answer = await client.get(f"{hub.base}/school/rooms", headers=hub.staff())
            assert answer.status_code == 200, answer.text
            return answer.text

        def row_of(page: str, room: str) -> str:
            start = page.index(f'data-room="{room}"')
            return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]

        page = await rooms_view()
        for name in rooms:
            assert 'class="bad"' not in row_of(page, name), row_of(page, name)
        assert 'class="ok"' in row_of(page, "p1") and "20/11/2026: đạt" in row_of(page, "p1")
        assert "Chưa diễn tập lần nào" in row_of(page, "p2")
        not_hub = await client.get(f"{rooms['p1'].base}/school", headers=rooms["p1"].staff())
        assert not_hub.status_code == 404 and "Không phải máy chủ của trường" in not_hub.text
        # a visitor (not the hub's own name, no login) is sent to the login, and back after;
        # a download is refused
        visitor = {"Host": "truong.example"}
        for path in ("/school", "/school/rooms", "/school/district"):
            sent = await client.get(f"{hub.base}{path}", headers=visitor)
            assert sent.status_code == 303 and sent.headers["location"] == f"/login?next={path}"
        xlsx = await client.get(f"{hub.base}/school/district?format=xlsx", headers=visitor)
        assert xlsx.status_code == 403, xlsx.text
        metrics = (await client.get(f"{rooms['p1'].base}/metrics")).text
        assert 'classroom_edge_drill_passed{room="p1"} 1.0' in metrics
        assert 'classroom_edge_lesson_due{room="p1"} 0.0' in metrics

        # 07:00: pupils join p1 and p2 with their own links (real aiortc viewers)
        await clock.advance_to(at("07:00"))
        later = int(time.time()) + 3600
        for name, pupil in (("p1", "0101000001"), ("p2", "0102000001")):
            service = rooms[name].service
            assert service is not None
            cls = TIMETABLES[name][0]
            token = service.signer.issue(Grant(name, cls, pupil, later))
            viewer = Viewer(
                f"{rooms[name].base}/whep/{name}", token, video_lines=1, decode_clock=False
            )
            viewers.append(viewer)
            assert (await viewer.connect()).status_code == 201
            pc = viewer.pc
            assert await eventually(lambda: pc.connectionState == "connected", 20)  # noqa: B023
        metrics = (await client.get(f"{rooms['p1'].base}/metrics")).text
        assert 'classroom_edge_lesson_due{room="p1"} 1.0' in metrics
        await clock.advance_to(at("07:20"))
        await viewers[1].close()  # Châu leaves p2 early
        await clock.advance_to(at("07:46"))  # tiết 1 over: recorded, delivered at the next beat
        await clock.advance_to(at("07:47:30"))

        # p3's mini-PC goes off before its 07:50 bell: red within 60 s of the bell
        await rooms["p3"].stop()
        await clock.advance_to(at("07:50:20"))
        page = await rooms_view()
        assert "Không lên sóng" not in row_of(page, "p3"), "the bell is 20 s old, in its grace"
        assert "Mất liên lạc" in row_of(page, "p3")  # silent past lost_after: red already
        await clock.advance_to(at("07:50:45"))
        page = await rooms_view()
        assert 'class="bad"' in row_of(page, "p3") and "Không lên sóng lúc 07:50" in row_of(
            page, "p3"
        ), row_of(page, "p3")
        assert 'class="bad"' not in row_of(page, "p2"), row_of(page, "p2")  # p2 is live
        await asyncio.to_thread(look_in_chromium, hub.base, hub.staff(), ("school-rooms",))

        # the hub goes away (no network); p2's tiết 2 ends unreported; p2 restarts
        await hub.stop()
        await clock.advance_to(at("08:36"))
        await rooms["p2"].stop()
        await clock.advance_to(at("08:48"))
        await rooms["p2"].start()
        await rooms["p3"].start()  # off for an hour
        await clock.advance_to(at("08:50"))
        await hub.start()
        await clock.advance_to(at("08:53"))  # the first beat heard: what waited goes at once

        # the hub's CSV is the rooms' own CSVs merged, byte for byte
        date = {"date": WEDNESDAY.isoformat(), "format": "csv"}
        own = {}
        for name, room in rooms.items():
            answer = await client.get(
                f"{room.base}/reports/export", params=date, headers=room.staff()
            )
            assert answer.status_code == 200, answer.text
            own[name] = answer.content
        answer = await client.get(f"{hub.base}/school/export", params=date, headers=hub.staff())
        assert answer.status_code == 200, answer.text
        head, _, _ = csv_parts(own["p1"])
        summary = [row for name in ("p1", "p2", "p3") for row in csv_parts(own[name])[1]]
        detail = [row for name in ("p1", "p2", "p3") for row in csv_parts(own[name])[2]]
        header = ";".join(DETAIL_HEADERS)
        merged = "\r\n".join([*head, *summary, "", header, *detail, ""]).encode("utf-8")
        assert answer.content == merged, answer.content.decode()
        assert len(summary) == 3, summary  # p1 tiết 1, p2 tiết 1 and 2; no PE, p3 missed
        assert "6A1;25/11/2026;1 (sáng);Toán;Nguyễn Thị Lan;07:00;07:45;2;2;1;50,0;0" in summary
        assert any(row.startswith("6A2;25/11/2026;2 (sáng);Tiếng Anh") for row in summary)
        with sqlite3.connect(tmp_path / "hub-data" / "school.db") as db:
            counted = db.execute("SELECT room, COUNT(*) FROM lessons GROUP BY room").fetchall()
        assert sorted(counted) == [("p1", 1), ("p2", 2)]

        # the principal's day: skipped and why, the missed bell, the rooms all reported
        answer = await client.get(
            f"{hub.base}/school", params={"date": WEDNESDAY.isoformat()}, headers=hub.staff()
        )
        assert answer.status_code == 200
        day = answer.text
        assert "Không phát: Thể dục: không học trực tuyến (GDTC)" in day
        assert "Không lên sóng được" in day and "Chưa nhận được báo cáo" not in day
        assert "Nguyễn Văn An" in day and "Tổng hợp tuần" in day
        assert "<b>Thứ Tư 25/11</b>" in day and "/school?date=2026-11-23" in day
        assert day.count("Đã phát xong (phòng không ghi hình)") == 3  # record = false

        # the district's week per grade: 3 periods streamed, none recorded, 1 missed
        answer = await client.get(
            f"{hub.base}/school/district",
            params={"date": WEDNESDAY.isoformat()},
            headers=hub.staff(),
        )
        assert "<td>Khối 6</td><td>3</td><td>3</td><td>0</td><td>1</td>" in answer.text, answer.text
        answer = await client.get(
            f"{hub.base}/school/district",
            params={"date": WEDNESDAY.isoformat(), "format": "xlsx"},
            headers=hub.staff(),
        )
        from openpyxl import load_workbook

        grades = load_workbook(io.BytesIO(answer.content))["Theo khối"]
        assert [c.value for c in grades[2]][:8] == ["Khối 6", 3, 3, 0, 1, 4, 2, 50.0]

        # a room's key cannot write another room's rows
        key_p1 = (tmp_path / "keys" / "p1.key").read_bytes().strip()
        report = json.loads(
            sqlite3.connect(tmp_path / "hub-data" / "school.db")
            .execute("SELECT cells FROM lessons WHERE room = 'p2' LIMIT 1")
            .fetchone()[0]
        )
        forged = json.dumps(
            {"room": "p2", "lesson": "forged", "state": "recorded", "roster": "x", "cells": report}
        ).encode()
        url = f"{hub.base}/api/school/lessons"
        as_p2 = signed_headers(key_p1, "p2", clock.now(), forged)
        assert (await client.post(url, content=forged, headers=as_p2)).status_code == 403
        as_p1 = signed_headers(key_p1, "p1", clock.now(), forged)
        assert (await client.post(url, content=forged, headers=as_p1)).status_code == 403
        wrong = signed_headers(b"not-a-key-of-this-school", "p2", clock.now(), forged)
        assert (await client.post(url, content=forged, headers=wrong)).status_code == 401
        with sqlite3.connect(tmp_path / "hub-data" / "school.db") as db:
            assert db.execute("SELECT COUNT(*) FROM lessons").fetchone()[0] == 3
        # a report signed before the one kept (a replay) changes nothing
        key_p2 = (tmp_path / "keys" / "p2.key").read_bytes().strip()
        with sqlite3.connect(tmp_path / "hub-data" / "school.db") as db:
            lesson_id = db.execute(  # tiết 2, delivered when the hub came back, at 08:50
                "SELECT lesson_id FROM lessons WHERE room = 'p2' ORDER BY sent_at DESC"
            ).fetchone()[0]
        replay = json.loads(forged)
        replay["lesson"], replay["cells"]["summary"][9] = lesson_id, 99  # Trực tuyến
        old = json.dumps(replay).encode()
        earlier = signed_headers(key_p2, "p2", clock.now() - dt.timedelta(seconds=200), old)
        assert (await client.post(url, content=old, headers=earlier)).status_code == 204
        again = await client.get(f"{hub.base}/school/export", params=date, headers=hub.staff())
        assert again.content == merged

        # the week as one workbook: a sheet per day and the summary, the report's columns
        answer = await client.get(
            f"{hub.base}/school/export",
            params={"date": WEDNESDAY.isoformat(), "format": "xlsx"},
            headers=hub.staff(),
        )
        from openpyxl import load_workbook

        book = load_workbook(io.BytesIO(answer.content))
        assert book.sheetnames == ["Thứ Tư 25-11", "Tổng hợp tuần"]
        sheet = book["Thứ Tư 25-11"]
        assert [c.value for c in sheet[2]][7:11] == [2, 2, 1, 50.0]
        await asyncio.to_thread(
            look_in_chromium, hub.base, hub.staff(), ("school", "school-district")
        )
        print(f"school morning: {time.monotonic() - started:.1f} s")
    finally:
        for viewer in viewers:
            await viewer.close()
        await client.aclose()
        for server in [*rooms.values(), hub]:
            if server.service is not None:
                await server.stop()
