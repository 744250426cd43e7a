"""The hub and a room as `classroom-edge run` processes (the CLI, the real clock shifted
with --clock): the room's lesson ends, its report reaches the hub and equals the room's
own CSV; the room is killed (SIGKILL) and started again, the hub restarted: the report
is there once, not twice."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx

from tests.conftest import cli, run_service, write_site

SCHOOL = "Trường THCS Thử"
ROOM = """class = "6A1"
record = false
[camera]
kind = "test"
width = 320
height = 180
fps = 5
[[camera_renditions]]
width = 320
height = 180
fps = 5
bitrate_kbps = 150
[hub]
url = "{hub}"
key_file = "../../room.key"
beat_seconds = 1
retry_base_seconds = 0.5
retry_max_seconds = 2
[[timetable.period]]
day = "Thứ Tư"
session = "sáng"
period = 1
subject = "Toán"
teacher = "Nguyễn Thị Lan"
"""
NEAR_THE_END = "2026-11-25T07:44:57+07:00"  # tiết 1 (07:00–07:45) is live, 3 s to go
LATER = "2026-11-25T07:50:10+07:00"


def staff(config: Path, data: Path) -> dict[str, str]:
    key = cli("staff-key", "--config", str(config), "--data-dir", str(data)).stdout.strip()
    return {"Authorization": f"Bearer {key}"}


def hub_rows(data: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data / "school.db") as db:
        return db.execute("SELECT room, lesson_id FROM lessons").fetchall()


def beat_after(data: Path, moment: str) -> bool:
    """The hub has a heartbeat of the room sent after `moment`."""
    import datetime as dt
    import json

    with sqlite3.connect(data / "school.db") as db:
        row = db.execute("SELECT body FROM beats WHERE room = 'p101'").fetchone()
    sent = dt.datetime.fromisoformat(json.loads(row[0])["time"]) if row else None
    return sent is not None and sent >= dt.datetime.fromisoformat(moment)


def wait_for(check: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_a_killed_room_and_a_restarted_hub_count_the_lesson_once(tmp_path: Path) -> None:
    (tmp_path / "room.key").write_text("the-key-of-room-p101-0123456789\n")
    for folder in ("h1", "r1"):
        (tmp_path / folder).mkdir()
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    hub_config = hub_dir / "edge.toml"
    hub_config.write_text(
        f'school = "{SCHOOL}"\n[school_hub.rooms.p101]\nclass = "6A1"\nkey_file = "../room.key"\n',
        encoding="utf-8",
    )
    site = tmp_path / "site"
    site.mkdir()
    (site / "roster.csv").write_text(
        "Mã định danh,Họ và tên,Lớp\n0101000001,Nguyễn Văn An,6A1\n", encoding="utf-8"
    )
    with run_service(
        tmp_path / "h1", ["--config", str(hub_config)], run_args=["--clock", NEAR_THE_END]
    ) as hub:
        room_config = write_site(
            site,
            {"p101": ROOM.format(hub=hub.base)},
            f'school = "{SCHOOL}"\nroster = "roster.csv"\n[schedule]\ngrace_minutes = 0\n',
        )
        args = ["--config", str(room_config)]
        with run_service(tmp_path / "r1", args, run_args=["--clock", NEAR_THE_END]) as room:
            assert wait_for(lambda: hub_rows(hub.data_dir), 30), room.log.read_text()
            lesson = hub_rows(hub.data_dir)[0][1]
            params = {"date": "2026-11-25", "format": "csv"}

            def same() -> bool:  # the lesson's last state (ended) has reached the hub
                theirs = httpx.get(f"{hub.base}/school/export", params=params, timeout=10)
                return bool(theirs.content == own.content)

            time.sleep(4)  # past 07:45: the lesson has ended
            own = httpx.get(
                f"{room.base}/reports/export",
                params=params,
                headers=staff(room_config, room.data_dir),
                timeout=10,
            )
            assert ";07:00;07:45;1;" in own.content.decode(), own.content.decode()
            assert wait_for(same, 15)
            room.process.send_signal(signal.SIGKILL)
            room.process.wait(10)
            data = room.data_dir
    # the hub restarted, the room started again after the kill, minutes later
    with run_service(
        tmp_path / "h1", ["--config", str(hub_config)], run_args=["--clock", LATER]
    ) as hub2:
        assert hub2.data_dir == hub.data_dir
        (site / "rooms" / "p101.toml").write_text(ROOM.format(hub=hub2.base), encoding="utf-8")
        with run_service(tmp_path / "r1", args, run_args=["--clock", LATER]) as room2:
            assert room2.data_dir == data
            assert wait_for(lambda: beat_after(hub2.data_dir, LATER), 20)
            time.sleep(2)  # two more turns of the room's delivery
            assert hub_rows(hub2.data_dir) == [("p101", lesson)]
            answer = httpx.get(f"{hub2.base}/school/export", params=params, timeout=10)
            assert answer.content == own.content
            assert "Traceback" not in room2.log.read_text() + hub2.log.read_text()
