"""The IT staff's admin page with the real service: no access without a login, wrong
passwords rate-limited, a CSRF token required for every change; the room's PTZ camera
(a fake pyusb backend, the lowest layer) steered, a preset saved into the room file and
recalled; room file edits checked before they are written and applied without a restart."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import tomllib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from edge.access.staff import set_password
from edge.access.throttle import Throttle
from edge.config.settings import load
from edge.school.clock import SystemClock
from tests.conftest import serve_in_process, write_site
from tests.fake_usb import CT_PANTILT_ABSOLUTE, classroom

ROOM = """# Phòng thử
class = "6A1"
always_live = true
record = false
excluded_subjects = ["Thể dục"]

[camera]
kind = "test"
width = 320
height = 180
fps = 10
ptz = "usb:046d:0853:PTZ0001"

[mic]
kind = "test"

[[camera_renditions]]
width = 320
height = 180
fps = 10
bitrate_kbps = 300
"""
AWAY = {"X-Forwarded-For": "198.51.100.20"}  # the IT office, not the room's own screen
PASSWORD = "mật-khẩu-tổ-CNTT"


def csrf_of(page: str) -> str:
    match = re.search(r"var config = (\{.*?\});", page)
    assert match, page[:400]
    token = json.loads(match.group(1))["csrf"]
    assert isinstance(token, str) and len(token) == 32
    return token


async def test_admin_login_csrf_ptz_presets_and_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge")  # as `classroom-edge run` logs
    config = write_site(tmp_path, {"r1": ROOM})
    room_file = tmp_path / "rooms" / "r1.toml"
    data = tmp_path / "data"
    set_password(data, PASSWORD)
    usb = classroom()
    head = next(d for d in usb.devices if d.controls.get(CT_PANTILT_ABSOLUTE))
    async with (
        serve_in_process(config, data, SystemClock(), usb_backend=usb) as (service, base),
        httpx.AsyncClient(base_url=base, headers=AWAY, timeout=20) as client,
    ):
        # no access without a login
        refused = await client.get("/admin")
        assert refused.status_code == 303 and refused.headers["location"] == "/login?next=/admin"
        assert (await client.get("/api/admin/state")).status_code == 403
        move = {"action": "nudge", "pan": 1}
        assert (await client.post("/api/rooms/r1/camera", json=move)).status_code == 403

        # wrong passwords are rate-limited (10 refusals per 5 minutes per address): then
        # even the right one waits
        moment = [0.0]
        service.throttle = Throttle(clock=lambda: moment[0])
        right = {"password": PASSWORD, "next": "/admin"}
        statuses = [
            (await client.post("/login", data={"password": "sai", "next": "/admin"})).status_code
            for _ in range(10)
        ]
        assert statuses == [303] * 10
        locked = await client.post("/login", data=right)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 200
        assert "Hãy thử lại sau 5 phút" in locked.text and "<form" in locked.text  # a page
        moment[0] += 301
        login = await client.post("/login", data=right)
        assert login.status_code == 303 and login.headers["location"] == "/admin"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = await client.get("/admin")
        assert page.status_code == 200 and "Quản trị" in page.text
        csrf = csrf_of(page.text)

        # a change needs the page's CSRF token
        camera = "/api/rooms/r1/camera"
        assert (await client.post(camera, json=move)).status_code == 403
        wrong = {"X-CSRF-Token": "0" * 32}
        assert (await client.post(camera, json=move, headers=wrong)).status_code == 403
        token = {"X-CSRF-Token": csrf}
        state = (await client.get("/api/admin/state")).json()
        assert state["rooms"]["r1"]["camera"]["available"] is True
        assert state["rooms"]["r1"]["camera"]["controls"] == [
            "pan_tilt",
            "zoom",
            "focus",
            "auto_focus",
        ]

        # bodies are checked before anything moves: 400 naming the field
        bad_bodies: list[tuple[dict[str, object], str]] = [
            ({"action": "nudge", "pan": 11}, "pan"),
            ({"action": "nudge", "pan": True}, "pan"),
            ({"action": "recall"}, "needs the preset's name"),
            ({"action": "spin"}, "action"),
            ({"action": "nudge", "speed": 3}, "speed"),
        ]
        for body, named in bad_bodies:
            answer = await client.post(camera, json=body, headers=token)
            assert answer.status_code == 400 and named in answer.json()["detail"], answer.text
        config_api = "/api/admin/rooms/r1/config"
        answer = await client.post(config_api, json={"text": 5}, headers=token)
        assert answer.status_code == 400 and "text" in answer.json()["detail"], answer.text
        assert head.controls[CT_PANTILT_ABSOLUTE].current != (36000, 18000)

        # steer: two presses right (5° each), one up, one zoom in
        for body in (move, move, {"action": "nudge", "tilt": 1}, {"action": "nudge", "zoom": 1}):
            answer = await client.post(camera, json=body, headers=token)
            assert answer.status_code == 200, answer.text
        position = answer.json()["position"]
        assert (position["pan"], position["tilt"], position["zoom"]) == (36000, 18000, 140)
        assert head.controls[CT_PANTILT_ABSOLUTE].current == (36000, 18000)

        # save it as the board preset: into the room file, comments kept, still valid
        saved = await client.post(camera, json={"action": "save", "name": "board"}, headers=token)
        assert saved.status_code == 200 and saved.json()["presets"] == {"board": "Bảng"}
        text = room_file.read_text(encoding="utf-8")
        assert text.startswith("# Phòng thử\n")
        assert tomllib.loads(text)["presets"]["board"] == {
            "pan": 36000,
            "tilt": 18000,
            "zoom": 140,
            "focus": 0,
            "auto_focus": True,
        }
        assert load(config).rooms["r1"].presets["board"].pan == 36000

        # move away, then recall the preset
        away = {"action": "nudge", "pan": -3, "zoom": -1}
        assert (await client.post(camera, json=away, headers=token)).status_code == 200
        assert head.controls[CT_PANTILT_ABSOLUTE].current == (-18000, 18000)
        recall = await client.post(
            camera, json={"action": "recall", "name": "board"}, headers=token
        )
        assert recall.status_code == 200
        assert head.controls[CT_PANTILT_ABSOLUTE].current == (36000, 18000)
        # the teacher's console on the board recalls it too
        assert (await client.post(camera, json=away, headers=token)).status_code == 200
        async with httpx.AsyncClient(base_url=base, timeout=20) as board:
            console = "/api/rooms/r1/console"
            assert (await board.get(console)).json()["presets"] == {"board": "Bảng"}
            recalled = await board.post(console, json={"action": "preset", "name": "board"})
            assert recalled.status_code == 200, recalled.text
        assert head.controls[CT_PANTILT_ABSOLUTE].current == (36000, 18000)
        missing = await client.post(camera, json={"action": "recall", "name": "cửa"}, headers=token)
        assert missing.status_code == 404 and "Không có vị trí" in missing.json()["detail"]

        # the live preview is a picture of the camera
        for _ in range(100):  # the camera's first frames
            preview = await client.get("/api/admin/rooms/r1/preview.jpg")
            if preview.status_code != 404:
                break
            await asyncio.sleep(0.1)
        assert preview.status_code == 200, preview.text
        assert preview.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(preview.content)).size == (480, 270)

        # a broken edit is refused with FILE:LINE lines and nothing is written
        edit = "/api/admin/rooms/r1/config"
        current = (await client.get(edit)).json()
        assert current["text"] == text and current["editable"] is True
        broken = text.replace("always_live = true", "always_live = true\nalways_lve = 1")
        answer = await client.post(edit, json={"text": broken, "save": True}, headers=token)
        assert answer.status_code == 422
        assert answer.json()["problems"] == [
            f"{room_file}:4: always_lve: unknown key; did you mean 'always_live'? "
            "(expected one of: class, always_live, camera, board, mic, speaker, "
            "camera_renditions, board_renditions, audio, timetable, excluded_subjects, "
            "record, presets, start_preset, hub)"
        ]
        assert room_file.read_text(encoding="utf-8") == text
        assert (await client.post(edit, json={"text": text, "save": True})).status_code == 403

        # a valid edit: saved (the old file kept as .bak) and applied at once
        edited = text.replace('excluded_subjects = ["Thể dục"]', 'excluded_subjects = ["Mĩ thuật"]')
        answer = await client.post(edit, json={"text": edited, "save": True}, headers=token)
        assert answer.status_code == 200, answer.text
        assert answer.json() | {"applied": None} == {
            "ok": True,
            "problems": [],
            "saved": True,
            "applied": None,
            "restart": [],
        }
        assert "excluded_subjects" in answer.json()["applied"]
        assert room_file.read_text(encoding="utf-8") == edited
        assert (tmp_path / "rooms" / "r1.toml.bak").read_text(encoding="utf-8") == text
        assert service.config.excluded_subjects("r1") == ["Mĩ thuật"]
        assert service.scheduler.rooms["r1"].excluded == ["Mĩ thuật"]

        # devices and encodings wait for a restart, and say so
        faster = edited.replace("fps = 10\nptz", "fps = 15\nptz")
        answer = await client.post(edit, json={"text": faster, "save": True}, headers=token)
        assert answer.status_code == 200 and answer.json()["restart"] == ["camera"]

        # the saved drill reports (as `classroom-edge drill` writes them) for the records
        drills = data / "drills"
        drills.mkdir()
        report = {"room": "r1", "started": "2026-12-01T09:00:00+07:00", "passed": False}
        (drills / "r1-2026-12-01-0900.json").write_text(json.dumps(report), encoding="utf-8")
        (drills / "r1-2026-12-01-0900.txt").write_text("KẾT LUẬN: CHƯA SẴN SÀNG\n", "utf-8")
        listed = (await client.get("/api/admin/drills")).json()
        assert [(d["room"], d["passed"], d["text"]) for d in listed] == [
            ("r1", False, "r1-2026-12-01-0900.txt")
        ]
        text_report = await client.get("/drills/r1-2026-12-01-0900.txt")
        assert text_report.text == "KẾT LUẬN: CHƯA SẴN SÀNG\n"
        assert (await client.get("/drills/..%2Fstaff-password")).status_code == 404

        # the config check, the logs and the devices
        check = (await client.get("/api/admin/check")).json()
        assert check == {"ok": True, "problems": []}
        logs = (await client.get("/api/admin/logs")).json()
        assert any("preset board saved" in line["message"] for line in logs)
        devices = await client.get("/api/admin/devices")
        assert devices.status_code == 200 and isinstance(devices.json(), list)
