"""What someone holding the class link (shared in the parents' group), or nobody's link at
all, tries against the running service, and what they get: the class link cannot take
the room, a name picked on it never becomes that pupil, the teacher's removal hits the
one who misbehaved; bad links never lock out a good one; a forged Host is not the board;
junk in a token, another class's token and a logged-out cookie are refused."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from edge.access.links import signer_for
from edge.access.tokens import Grant
from edge.config.settings import load
from tests.conftest import SMALL_ROOM, run_service, write_site
from tests.whep_client import Viewer, eventually

ROSTER = (
    "Mã định danh,Họ và tên,Lớp\n"
    "0101000001,Nguyễn Văn An,6A1\n"
    "0101000002,Trần Thị Bình,6A1\n"
    "0101000003,Lê Văn Cường,6A1\n"
)
SITE = """school = "Trường Thử"
roster = "roster.csv"
[webrtc]
max_per_pupil = 2
max_per_class_link = 4
max_per_address = 5
"""


def client(address: str) -> httpx.AsyncClient:
    """A browser at `address` (another loopback address: another family's connection)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, timeout=20)


def site(tmp_path: Path) -> Path:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return write_site(tmp_path, {"r1": SMALL_ROOM}, SITE)


def tokens(links: list[dict[str, object]]) -> dict[str, str]:
    """Token by pupil name, and "class" for the class link."""
    return {str(link.get("name") or "class"): str(link["token"]) for link in links}


async def test_a_class_link_cannot_take_the_room_nor_be_taken_for_a_pupil(
    tmp_path: Path,
) -> None:
    config = site(tmp_path)
    with run_service(tmp_path, ["--config", str(config)]) as service:
        by_name = tokens(service.links("r1"))
        whep = service.whep("r1")
        staff: dict[str, str] = {}  # the board itself (127.0.0.1) is staff
        viewers: list[Viewer] = []

        async def join(
            token: str, family: httpx.AsyncClient, url: str = whep, **options: Any
        ) -> tuple[int, Viewer]:
            viewer = Viewer(url, token, decode_clock=False, **options)
            viewers.append(viewer)
            return (await viewer.connect(family)).status_code, viewer

        async def console() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=10) as board:
                answer = await board.get(f"{service.base}/api/rooms/r1/console", headers=staff)
            state: dict[str, Any] = answer.json()
            return state

        async def act(action: str, key: str) -> int:
            async with httpx.AsyncClient(timeout=10) as board:
                answer = await board.post(
                    f"{service.base}/api/rooms/r1/console",
                    json={"action": action, "key": key},
                    headers=staff,
                )
            return answer.status_code

        flooder, an_home, mallory, elsewhere = (client(f"127.0.0.{n}") for n in (2, 3, 4, 5))
        try:
            # someone in the parents' group floods with the class link: it holds 4, no more
            flood = [await join(by_name["class"], flooder) for _ in range(5)]
            assert [status for status, _ in flood] == [201] * 4 + [429], flood
            assert "đường link riêng" in flood[-1][1].response.json()["detail"]  # type: ignore[union-attr]
            # An's own link still joins, and An sees the lesson
            status, an = await join(by_name["Nguyễn Văn An"], an_home, channel=True)
            assert status == 201
            assert await eventually(lambda: an.stats["camera"].frames >= 5, 20), an.stats
            # two devices of An's are fine, a third is not
            assert (await join(by_name["Nguyễn Văn An"], an_home))[0] == 201
            assert (await join(by_name["Nguyễn Văn An"], an_home))[0] == 429
            # one address holds 5 (families behind one carrier): An 2, Bình 2, Cường 1
            assert (await join(by_name["Trần Thị Bình"], an_home))[0] == 201
            assert (await join(by_name["Trần Thị Bình"], an_home))[0] == 201
            assert (await join(by_name["Lê Văn Cường"], an_home))[0] == 201
            crowded = (await join(by_name["Lê Văn Cường"], an_home))[1]
            assert crowded.response is not None and crowded.response.status_code == 429
            assert "cùng một mạng" in crowded.response.json()["detail"]
            for _, viewer in flood[:4]:  # the flood leaves; the class link joins again
                await viewer.close()

            # Mallory opens the class link and picks An's name while An watches
            page = (await mallory.get(f"{service.base}/join/{by_name['class']}")).text
            found = re.search(r'"key": "([^"]+)", "name": "Nguyễn Văn An"', page)
            assert found is not None, page[:2000]
            picked = f"{whep}?as={found.group(1)}"
            status, impostor = await join(by_name["class"], mallory, picked, channel=True)
            assert status == 201

            def online() -> list[dict[str, Any]]:
                return list(state["online"])

            def named_an() -> list[dict[str, Any]]:
                return [p for p in online() if p["name"] == "Nguyễn Văn An"]

            for _ in range(60):  # up to 18 s
                state = await console()
                if len(named_an()) == 2:
                    break
                await asyncio.sleep(0.3)
            ans = sorted(
                (p for p in online() if p["name"] == "Nguyễn Văn An"), key=lambda p: p["verified"]
            )
            assert [(p["verified"], p["devices"]) for p in ans] == [(False, 1), (True, 2)], state
            fake, real = ans
            assert real["key"] == "0101000001" and fake["key"].startswith("device:")
            # what Mallory writes shows as the class link's, never as An's own
            assert impostor.classroom is not None and impostor.classroom.streaming.is_set()
            impostor.send({"type": "message", "text": "Em xin phép về sớm ạ"})

            async def written() -> list[dict[str, Any]]:
                return [m for m in (await console())["messages"] if "về sớm" in m["text"]]

            for _ in range(50):  # up to 10 s
                if await written():
                    break
                await asyncio.sleep(0.2)
            [message] = await written()
            assert message["verified"] is False and message["key"] == fake["key"]
            # the teacher lets "An" speak from the list: only that session is heard
            assert await act("allow_speak", fake["key"]) in (200, 409)  # 409: no speakers here

            # the teacher removes the impostor: Mallory is out, An stays and can rejoin
            assert await act("remove", fake["key"]) == 200
            assert await eventually(
                lambda: impostor.pc.connectionState in ("closed", "failed"), 15
            ) or any(m.get("type") == "removed" for m in impostor.received)
            assert (await join(by_name["class"], mallory, picked))[0] == 403
            assert an.pc.connectionState == "connected"
            frames = an.stats["camera"].frames
            assert await eventually(lambda: an.stats["camera"].frames > frames + 5, 10)
            assert (await join(by_name["Nguyễn Văn An"], elsewhere))[0] in (201, 429)
            state = await console()
            assert [p["verified"] for p in online() if p["name"] == "Nguyễn Văn An"] == [True]

            # the teacher removes An (verified): An's link and picks of An's name are refused
            assert await act("remove", "0101000001") == 200
            assert (await join(by_name["Nguyễn Văn An"], elsewhere))[0] == 403
            assert (await join(by_name["class"], elsewhere, picked))[0] == 403
            assert (await join(by_name["class"], elsewhere))[0] == 201  # unnamed: still in
        finally:
            for viewer in viewers:
                await viewer.close()
            for family in (flooder, an_home, mallory, elsewhere):
                await family.aclose()


async def test_bad_links_do_not_lock_out_a_good_one_and_tokens_are_strict(
    tmp_path: Path,
) -> None:
    config = site(tmp_path)
    with run_service(tmp_path, ["--config", str(config)]) as service:
        by_name = tokens(service.links("r1"))
        good = by_name["Nguyễn Văn An"]
        payload, signature = good.split(".")
        signer = signer_for(load(config, data_dir=service.data_dir))
        other_class = signer.issue(Grant("r1", "6A2", None, int(time.time()) + 3600))
        async with client("127.0.0.7") as family:
            # a token with junk spliced into its signature is not a token
            for junk in (f"{signature[:6]}!!{signature[6:]}", f"{signature}AA", f"{signature}="):
                answer = await family.get(f"{service.base}/join/{payload}.{junk}")
                assert answer.status_code == 401, junk
            # a token of another class for this room is refused like a bad one
            assert (await family.get(f"{service.base}/join/{other_class}")).status_code == 404
            wrong = {"Authorization": f"Bearer {other_class}"}
            now = await family.get(f"{service.base}/api/rooms/r1/now", headers=wrong)
            assert now.status_code == 401
            # 10 bad links from this address, then more: they wait, in Vietnamese
            for n in range(12):
                await family.get(f"{service.base}/join/{payload}.{'A' * 20}{n:02d}")
            waiting = await family.get(f"{service.base}/join/{payload}.{'B' * 22}")
            assert waiting.status_code == 429 and "Retry-After" in waiting.headers
            assert "Em chờ vài phút" in waiting.text and "<html" in waiting.text
            # the pupil's own link from the same address (one carrier NAT) still opens
            page = await family.get(f"{service.base}/join/{good}")
            assert page.status_code == 200 and "Nguyễn Văn An" in page.text
            status = await Viewer(service.whep("r1"), good, decode_clock=False).connect(family)
            assert status.status_code == 201
        # one bad link tried from many addresses waits too: the page counts it per link
        guessed = f"{payload}.{'C' * 22}"
        answers = []
        for n in range(20, 31):
            async with client(f"127.0.0.{n}") as elsewhere:
                answers.append((await elsewhere.get(f"{service.base}/join/{guessed}")).status_code)
        assert answers == [401] * 9 + [429] * 2, answers  # the tenth refusal says to wait


def test_a_forged_host_is_not_the_board_and_a_logged_out_cookie_is_refused(
    tmp_path: Path,
) -> None:
    config = site(tmp_path)
    data = tmp_path / "data"
    set_password = [sys.executable, "-m", "edge", "staff-password", "--config", str(config)]
    set_password += ["--data-dir", str(data)]
    subprocess.run(set_password, input="mật-khẩu-BGH-2026\n", text=True, check=True, timeout=60)
    with run_service(tmp_path, ["--config", str(config)]) as service:
        with httpx.Client(base_url=service.base, timeout=10) as board:
            assert board.get("/sheet/r1").status_code == 200  # the board itself: staff
            assert board.get("/admin").status_code == 200
            # a page in the board's browser that rebinds its own name to 127.0.0.1
            rebound = {"Host": "attacker.example"}
            sheet = board.get("/sheet/r1", headers=rebound)
            assert sheet.status_code == 303 and sheet.headers["location"].startswith("/login")
            admin = board.get("/admin", headers=rebound)
            assert admin.status_code == 303 and "csrf" not in admin.text
            localhost = board.get(
                "/sheet/r1", headers={"Host": f"localhost:{httpx.URL(service.base).port}"}
            )
            assert localhost.status_code == 200
            # staff APIs: staff first (nobody else learns which rooms exist), then the room
            assert board.get("/api/rooms/nope/console").status_code == 404
            for path in ("/api/rooms/nope/console", "/api/rooms/r1/console", "/api/admin/state"):
                answer = board.get(path, headers=rebound)
                assert answer.status_code == 403, path
                assert answer.headers["content-type"] == "application/problem+json", path
        away = {"X-Forwarded-For": "192.0.2.40"}  # the principal's office, not the board
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        login = "password=m%E1%BA%ADt-kh%E1%BA%A9u-BGH-2026&next=/reports"
        with httpx.Client(base_url=service.base, headers=away, timeout=10) as office:
            assert office.post("/login", content=login, headers=form).status_code == 303
            cookie = office.cookies["ce_staff"]
            assert office.get("/sheet/r1").status_code == 200
            assert office.post("/logout").status_code == 303
        with httpx.Client(base_url=service.base, headers=away, timeout=10) as replay:
            replay.cookies.set("ce_staff", cookie)
            assert replay.get("/sheet/r1").status_code == 303  # logged out: refused
            assert replay.post("/login", content=login, headers=form).status_code == 303
            assert replay.get("/sheet/r1").status_code == 200
            subprocess.run(
                set_password, input="mật-khẩu-mới-2027\n", text=True, check=True, timeout=60
            )
            assert replay.get("/sheet/r1").status_code == 303  # a new password ends it
        held = json.loads((data / "staff-sessions.json").read_text(encoding="utf-8"))
        assert cookie.split(".")[1] not in held
