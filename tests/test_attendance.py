"""Attendance from a scripted school morning, replayed on a manual clock with the real
service and real aiortc viewers joining and leaving at the scripted moments; the
report (`classroom-edge report`) is exactly what the homeroom teacher expects."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from edge.access.tokens import Grant
from edge.school.clock import ManualClock
from tests.conftest import cli, serve_in_process, write_site
from tests.whep_client import Viewer, eventually

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
WEDNESDAY = dt.date(2026, 11, 25)
ROSTER = """Mã định danh,Họ và tên,Lớp
0101000001,Nguyễn Văn An,6A1
0101000002,Trần Thị Bình,6A1
0101000003,Lê Hoàng Châu,6A1
0101000004,Phạm Minh Đức,6A1
"""
SITE = """school = "Trường Thử"
roster = "roster.csv"
[schedule]
lead_minutes = 1
grace_minutes = 0
rollover_minutes = 5
"""
ROOM = """class = "6A1"
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
EXPECTED = """\ufeffBáo cáo điểm danh học trực tuyến · Trường Thử · Thứ Tư 25/11/2026\r
Lớp;Ngày;Tiết;Môn;Giáo viên;Bắt đầu;Kết thúc;Sĩ số;Học ở nhà;Trực tuyến;Tỉ lệ (%);Không rõ tên\r
6A1;25/11/2026;1 (sáng);Toán;Nguyễn Thị Lan;07:00;07:45;4;3;3;100,0;0\r
6A1;25/11/2026;2 (sáng);Ngữ văn;Trần Văn Minh;07:50;08:35;4;3;2;66,7;0\r
\r
Lớp;Ngày;Tiết;Môn;Mã định danh;Họ và tên;Học ở nhà;Trạng thái;Vào lớp lúc;Số phút;Ghi chú\r
6A1;25/11/2026;1 (sáng);Toán;0101000001;Nguyễn Văn An;có;Có mặt;07:00;45;\r
6A1;25/11/2026;1 (sáng);Toán;0101000002;Trần Thị Bình;có;Muộn;07:15;25;\r
6A1;25/11/2026;1 (sáng);Toán;0101000003;Lê Hoàng Châu;có;Về sớm;07:02;10;\
chưa xác thực (link chung của lớp)\r
6A1;25/11/2026;1 (sáng);Toán;0101000004;Phạm Minh Đức;không;Vắng;;0;\r
6A1;25/11/2026;2 (sáng);Ngữ văn;0101000001;Nguyễn Văn An;có;Có mặt;07:50;45;\r
6A1;25/11/2026;2 (sáng);Ngữ văn;0101000002;Trần Thị Bình;có;Có mặt;07:52;43;\r
6A1;25/11/2026;2 (sáng);Ngữ văn;0101000003;Lê Hoàng Châu;có;Vắng;;0;\r
6A1;25/11/2026;2 (sáng);Ngữ văn;0101000004;Phạm Minh Đức;không;Vắng;;0;\r
"""


def at(text: str) -> dt.datetime:
    return dt.datetime.combine(WEDNESDAY, dt.time.fromisoformat(text), ZONE)


async def test_a_scripted_morning_gives_exactly_the_expected_report(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    data = tmp_path / "data"
    clock = ManualClock(at("06:58"))
    async with serve_in_process(config, data, clock) as (service, base):
        whep = f"{base}/whep/r1"
        later = int(time.time()) + 3600
        an, binh = (
            service.signer.issue(Grant("r1", "6A1", f"010100000{n}", later)) for n in (1, 2)
        )
        class_link = service.signer.issue(Grant("r1", "6A1", None, later))
        chau = next(p for p in service.roster.pupils("6A1") if p.name == "Lê Hoàng Châu")
        viewers: dict[str, Viewer] = {}

        async def join(name: str, token: str, picked: str | None = None) -> None:
            url = whep + (f"?as={service.pick_key(chau)}" if picked else "")
            viewer = viewers[name] = Viewer(url, token, video_lines=1, decode_clock=False)
            assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: viewer.pc.connectionState == "connected", 20)
            sessions = service.sessions.sessions.values()
            assert await eventually(lambda: all(s.connected_at for s in sessions), 10)

        async def leave(name: str) -> None:
            await viewers.pop(name).close()

        async with httpx.AsyncClient() as client:  # the homeroom teacher, on the board
            marked = await client.post(
                f"{base}/api/classes/6A1/at-home",
                json={"date": "2026-11-25", "pupils": ["0101000001", "0101000002", "0101000003"]},
            )
            assert marked.status_code == 200, marked.text
        await clock.advance_to(at("07:00"))
        await join("an", an)  # on time, stays all morning (across the rollover)
        await clock.advance_to(at("07:02"))
        await join("chau", class_link, picked="Lê Hoàng Châu")  # the class link: unverified
        await clock.advance_to(at("07:05"))
        await join("chau-phone", class_link, picked="Lê Hoàng Châu")  # a second device
        await clock.advance_to(at("07:10"))
        await leave("chau")
        await clock.advance_to(at("07:12"))
        await leave("chau-phone")  # 07:02–07:12 on either device: 10 minutes, counted once
        await clock.advance_to(at("07:15"))
        await join("binh", binh)  # 15 minutes late
        await clock.advance_to(at("07:40"))
        await leave("binh")
        await clock.advance_to(at("07:52"))
        await join("binh-again", binh)  # back for period 2
        await clock.advance_to(at("08:36"))  # period 2 over: everyone is let go
        assert await eventually(lambda: not service.sessions.sessions, 10)
        for viewer in viewers.values():
            await viewer.close()

    def report(*args: str) -> str:
        return cli(
            "report",
            "--date",
            "2026-11-25",
            *args,
            "--config",
            str(config),
            "--data-dir",
            str(data),
        ).stdout

    csv_file, xlsx = tmp_path / "report.csv", tmp_path / "report.xlsx"
    report("--room", "r1", "--output", str(csv_file))
    got = csv_file.read_bytes()  # UTF-8 with BOM, CRLF: what Excel opens cleanly
    assert got == EXPECTED.encode("utf-8"), "\n" + got.decode("utf-8")
    report("--format", "xlsx", "--output", str(xlsx))
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.read_bytes()))
    assert book.sheetnames == ["Tổng hợp", "Chi tiết", "Tuần"]
    summary, detail, week = book["Tổng hợp"], book["Chi tiết"], book["Tuần"]
    assert [c.value for c in summary[1]][:3] == ["Lớp", "Ngày", "Tiết"]
    assert [c.value for c in summary[2]][7:11] == [4, 3, 3, 100.0]
    assert [c.value for c in summary[3]][7:11] == [4, 3, 2, 66.7]
    assert [c.value for c in detail[3]][5:10] == [
        "Trần Thị Bình",
        "có",
        "Muộn",
        dt.time(7, 15),
        25,
    ]
    assert detail.max_row == 9
    # dates and times are Excel's own (sortable, filterable), shown the Vietnamese way
    day, start = summary["B2"], summary["F2"]
    assert day.is_date and day.value.date() == WEDNESDAY and day.number_format == "DD/MM/YYYY"
    assert start.value == dt.time(7, 0) and start.number_format == "HH:MM"
    assert summary["K3"].number_format == "0.0"
    assert [c.value for c in week[2]][:2] == ["6A1", "Thứ Tư"]
    assert week["C2"].is_date and week["C2"].value.date() == WEDNESDAY
    assert [c.value for c in week[2]][3:] == [2, 3, 2.5, 83.3]
    html = report("--format", "html")
    assert "Tổng hợp tuần" in html and "Lê Hoàng Châu" in html and "<table" in html
    assert "<td>66,7</td>" in html and "<td>2,5</td>" in html and "66.7" not in html


def test_the_principal_logs_in_and_downloads_the_day(tmp_path: Path) -> None:
    import subprocess
    import sys

    from openpyxl import load_workbook

    from tests.conftest import run_service

    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    data = tmp_path / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "edge",
            "staff-password",
            "--config",
            str(config),
            "--data-dir",
            str(data),
        ],
        input="mật-khẩu-BGH-2026\n",
        text=True,
        check=True,
        timeout=60,
    )
    away = {"X-Forwarded-For": "192.0.2.40"}  # the principal's office, not the board
    with (
        run_service(tmp_path, ["--config", str(config)]) as service,
        httpx.Client(base_url=service.base, headers=away, timeout=10) as browser,
    ):
        assert browser.get("/reports").headers["location"] == "/login?next=/reports"
        assert browser.get("/console/r1").headers["location"] == "/login?next=/console/r1"
        wrong = browser.post(
            "/login",
            content="password=sai&next=/reports",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert wrong.status_code == 303 and "failed=1" in wrong.headers["location"]
        right = browser.post(
            "/login",
            content="password=m%E1%BA%ADt-kh%E1%BA%A9u-BGH-2026&next=/reports",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert right.status_code == 303 and right.headers["location"] == "/reports"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = browser.get("/reports", params={"date": "2026-11-25"})
        assert page.status_code == 200 and "Báo cáo điểm danh" in page.text
        xlsx = browser.get("/reports/export", params={"date": "2026-11-25", "format": "xlsx"})
        assert xlsx.status_code == 200
        book = load_workbook(io.BytesIO(xlsx.content))
        assert book.sheetnames == ["Tổng hợp", "Chi tiết", "Tuần"]
        sheet = browser.get("/sheet/r1")
        assert sheet.status_code == 200 and sheet.text.count("<svg") == 5  # class + 4
        assert browser.get("/console/r1").status_code == 200
