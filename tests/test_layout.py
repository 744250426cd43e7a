"""The pupil's page on the screens people hold: a phone upright (390×844) and turned
(844×390), and a smart board (1920×1080), in Debian Chromium, live, in the waiting room
and at the name picker: nothing wider than the screen, the board whole in landscape, the
message box reachable, nothing clipped or said twice. Screenshots go to artifacts/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ROOT, run_service, write_site
from tests.netns import Host, available, two_hosts
from tests.test_waiting_room import ROOM  # tiết 1 of a Wednesday: Toán, Nguyễn Thị Lan

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]

SIZES = ("390x844", "844x390", "1920x1080")
ROSTER = "Mã định danh;Họ và tên;Lớp\n0101000001;Nguyễn Văn An;6A1\n0101000002;Trần Thị Bình;6A1\n"
BEFORE_THE_BELL = "2026-11-25T06:40:00+07:00"  # Wednesday, 20 minutes before tiết 1


def probe(viewer: Host, url: str, name: str, state: str, tmp: Path) -> dict[str, Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    result = tmp / f"{name}.json"
    subprocess.run(
        viewer.command(
            sys.executable,
            "-m",
            "tests.layout_probe",
            url,
            str(result),
            str(ARTIFACTS / f"join-{name}"),
            state,
        ),
        check=True,
        timeout=180,
        cwd=ROOT,
    )
    found: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    assert found["errors"] == [], found["errors"]
    for size in SIZES:
        width = int(size.split("x")[0])
        assert found[size]["state"] == state, (size, found[size]["state"])
        assert found[size]["scrollWidth"] <= width, (name, size, found[size]["scrollWidth"])
    return found


def inside(box: dict[str, float] | None, width: int, height: int) -> bool:
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and (box["x"] + box["w"] <= width + 0.5 and box["y"] + box["h"] <= height + 0.5)
    )


def test_the_live_page_fits_every_screen(tmp_path: Path) -> None:
    with (
        two_hosts() as (server, viewer),
        run_service(tmp_path, ["--demo"], server.address, server.command()) as service,
    ):
        pupil = next(link for link in service.links() if link["kind"] == "student")
        found = probe(viewer, f"{service.base}/join/{pupil['token']}", "live", "live", tmp_path)
    turned = found["844x390"]
    # a phone turned: one screen, the board whole, every control reachable in the side
    assert turned["scrollHeight"] <= 390, turned["scrollHeight"]
    assert inside(turned["board"], 844, 390), turned["board"]
    assert turned["board"]["w"] >= 560, turned["board"]  # the board gets the room
    for control in ("send", "swap", "mute"):
        assert turned[control] is not None and turned[control]["right"] <= 844, control
    upright = found["390x844"]
    assert inside(upright["board"], 390, 844) and inside(upright["send"], 390, 844)
    # what is on: the lesson under the school's name; the sound can be turned off
    assert upright["lessonText"] == "Phát liên tục", upright["lessonText"]
    assert upright["mute"] is not None and upright["mute"]["h"] >= 48
    board = found["1920x1080"]
    assert board["board"]["w"] >= 1400 and inside(board["board"], 1920, 1080)


def test_the_waiting_room_and_the_picker_say_it_once_and_whole(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(
        tmp_path / "site",
        {"r1": ROOM},
        f'school = "Trường Thử"\nroster = "{tmp_path}/roster.csv"\n',
    )
    clock = ["--clock", BEFORE_THE_BELL]
    with (
        two_hosts() as (server, viewer),
        run_service(
            tmp_path, ["--config", str(config)], server.address, server.command(), run_args=clock
        ) as service,
    ):
        links = service.links("r1")
        pupil = next(link for link in links if link["kind"] == "student")
        waiting = probe(
            viewer, f"{service.base}/join/{pupil['token']}", "waiting", "waiting", tmp_path
        )
        picking = probe(
            viewer, f"{service.base}/join/{links[0]['token']}", "picking", "picking", tmp_path
        )
    for size in SIZES:
        width, height = (int(n) for n in size.split("x"))
        page = waiting[size]
        assert page["text"].count("Chưa đến giờ học") == 1, (size, page["text"])
        assert "Tiết 1 · Toán · Nguyễn Thị Lan" in page["text"]
        # the countdown and the last line of the explanation are inside the overlay
        overlay, detail = page["overlay"], page["detail"]
        assert detail["bottom"] <= overlay["bottom"] + 0.5, (size, detail, overlay)
        assert page["countdown"]["right"] <= width, (size, page["countdown"])
        assert picking[size]["text"].count("Em là ai? Chọn tên của em") == 1, size
        assert "Trần Thị Bình" in picking[size]["text"]
        if width < height:
            assert inside(overlay, width, height), (size, overlay)
