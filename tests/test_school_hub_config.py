"""The shipped school hub (config/hub/) checks and runs with no camera and no rooms of
its own; what `run` refuses in a hub's or a room's keys, `check-config` refuses first,
with the same FILE:LINE line naming the room."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.conftest import ROOT, cli, run_service

HUB = ROOT / "config" / "hub" / "edge.toml"


def test_the_shipped_hub_checks_and_serves_the_school_pages(tmp_path: Path) -> None:
    checked = cli("check-config", "--config", str(HUB), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == f"{HUB}: ok (school hub of 2 room(s): p101, p102)"
    with run_service(tmp_path, ["--config", str(HUB)]) as service:
        key = cli("staff-key", "--config", str(HUB), "--data-dir", str(service.data_dir))
        staff = {"Authorization": f"Bearer {key.stdout.strip()}"}
        rooms = httpx.get(service.base + "/school/rooms", headers=staff, timeout=10)
        assert rooms.status_code == 200
        assert "Chưa từng liên lạc" in rooms.text and 'data-room="p102"' in rooms.text
        day = httpx.get(service.base + "/school", headers=staff, timeout=10)
        assert "Chưa nhận được báo cáo của 2 phòng" in day.text, day.text
        unsigned = httpx.post(service.base + "/api/school/beat", json={"room": "p101"}, timeout=10)
        assert unsigned.status_code == 401
        assert unsigned.headers["content-type"] == "application/problem+json"
        wrong_day = httpx.get(service.base + "/school?date=2026-13-01", headers=staff, timeout=10)
        assert wrong_day.status_code == 400 and "Ngày không hợp lệ" in wrong_day.text
        export = httpx.get(service.base + "/school/export?format=pdf", headers=staff, timeout=10)
        assert export.status_code == 400
        assert export.headers["content-type"] == "application/problem+json"
        huge = httpx.post(service.base + "/api/school/beat", content=b"x" * 100_000, timeout=10)
        assert huge.status_code == 413


def refused_by_both(config: Path, data: Path, expected: str) -> None:
    for command in (["check-config"], ["run", "--port", "0"]):
        result = cli(*command, "--config", str(config), "--data-dir", str(data), check=False)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [expected], (command, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr


def test_a_missing_or_shared_key_is_refused_naming_the_room(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config" / "hub", tmp_path / "hub")
    config = tmp_path / "hub" / "edge.toml"
    keys = tmp_path / "hub" / "keys"
    line = config.read_text().splitlines().index('key_file = "keys/p102.key"') + 1
    (keys / "p102.key").unlink()
    refused_by_both(
        config,
        tmp_path / "data",
        f"{config}:{line}: school_hub.rooms.p102.key_file: room p102: no such file "
        f"{keys / 'p102.key'} (expected a file of at least 16 random bytes, e.g. base64 of 32)",
    )
    shutil.copy(keys / "p101.key", keys / "p102.key")
    refused_by_both(
        config,
        tmp_path / "data",
        f"{config}:{line}: school_hub.rooms.p102.key_file: room p102: the same key as room "
        "p101 (expected a key of its own: a room must not sign another room's rows)",
    )
    assert not (tmp_path / "data" / "school.db").exists()


def test_a_rooms_hub_key_that_is_too_short_is_refused(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    room = tmp_path / "config" / "rooms" / "p101.toml"
    (tmp_path / "config" / "short.key").write_text("abc\n")
    with room.open("a", encoding="utf-8") as out:
        out.write('\n[hub]\nurl = "http://10.77.0.2:8090"\nkey_file = "../short.key"\n')
    line = room.read_text().splitlines().index('key_file = "../short.key"') + 1
    refused_by_both(
        tmp_path / "config" / "edge.toml",
        tmp_path / "data",
        f"{room}:{line}: hub.key_file: {tmp_path / 'config' / 'rooms' / '../short.key'} holds "
        "3 bytes (expected a file of at least 16 random bytes, e.g. base64 of 32)",
    )
