"""Debian Chromium, driven by Playwright, opens a pupil's join link before the bell.

The service runs its timetable clock from shortly before period 1 on Wednesday
2026-11-25 (`--clock`); it and the browser each get a network namespace of the test's
own, joined by a veth pair (Chromium offers no loopback ICE candidate).

The page shows the waiting room (what comes, who teaches it, a countdown on the
school's clock), then joins by itself at the bell, without a reload, and plays.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ROOT, run_service, write_site
from tests.netns import available, two_hosts

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]

ZONE = dt.timezone(dt.timedelta(hours=7))
BELL = dt.datetime(2026, 11, 25, 7, 0, tzinfo=ZONE)  # Wednesday, period 1 of the morning
LEAD = 15  # seconds from starting the service to the bell
SITE = 'school = "Trường Thử"\n[schedule]\nlead_minutes = 0.1\n'
ROOM = """class = "6A1"
[camera]
kind = "test"
[board]
kind = "test"
[mic]
kind = "test"
[[timetable.period]]
day = "Thứ Tư"
session = "sáng"
period = 1
subject = "Toán"
teacher = "Nguyễn Thị Lan"
"""
SCREENSHOT = ARTIFACTS / "waiting-room-390x844.png"
COUNTDOWN = re.compile(r"^Bắt đầu sau (\d+):(\d\d)$")


def seconds_left(text: object) -> int:
    found = COUNTDOWN.match(str(text))
    assert found, f"not a countdown: {text!r}"
    return int(found.group(1)) * 60 + int(found.group(2))


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One pupil's visit, from the waiting room to the lesson (tests/waiting_probe.py)."""
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("waiting")
    config = write_site(tmp, {"r1": ROOM}, SITE)
    result_path = tmp / "result.json"
    started = time.monotonic()
    clock = (BELL - dt.timedelta(seconds=LEAD)).isoformat()
    with (
        two_hosts() as (server, viewer),
        run_service(
            tmp,
            ["--config", str(config)],
            server.address,
            server.command(),
            run_args=["--clock", clock],
        ) as service,
    ):
        token = str(service.links("r1")[0]["token"])
        subprocess.run(
            viewer.command(
                sys.executable,
                str(ROOT / "tests" / "waiting_probe.py"),
                f"{service.base}/join/{token}",
                service.whep("r1"),
                token,
                str(result_path),
                str(SCREENSHOT),
            ),
            check=True,
            timeout=120,
            cwd=ROOT,
        )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    result["took"] = round(time.monotonic() - started, 1)
    (ARTIFACTS / "waiting-room-result.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print(
        f"\nwaiting room: page open {-result['opened_at']:.1f} s before the bell; "
        f"live {result['live_at']} s after it, camera >10 frames decoded {result['frames_at']} s "
        f"after it; whole visit {result['took']} s"
    )
    yield result


def test_waiting_room_then_the_lesson_by_itself(visit: dict[str, Any]) -> None:
    asked = visit["asked"]  # the server's 409 before the bell
    problem = asked["problem"]
    assert problem["next_start"] == "2026-11-25T07:00:00+07:00", problem
    assert problem["next_lesson"]["subject"] == "Toán", problem
    assert problem["next_lesson"]["teacher"] == "Nguyễn Thị Lan", problem
    assert problem["next_lesson"]["period"] == 1, problem
    assert 5 < asked["to_bell"] < LEAD, asked
    assert 1 <= int(asked["retry_after"]) <= asked["to_bell"] + 1, asked  # back at the bell

    waiting = visit["waiting"]
    assert visit["waiting_at"] < -5, visit  # seen with time to spare
    for sample in waiting:
        assert sample["state"] == sample["bodyState"] == "waiting", sample
        assert sample["stateText"] == sample["overlayTitle"] == "Chưa đến giờ học", sample
        assert sample["overlayShown"] and not sample["retryShown"], sample
        assert sample["lessonInfoShown"] and sample["countdownShown"], sample
        assert sample["lessonInfo"] == "Tiết 1 · Toán · Nguyễn Thị Lan", sample
        assert sample["detail"].startswith("Tiết học tiếp theo bắt đầu lúc 07:00"), sample
        assert "Trang sẽ tự vào lớp khi đến giờ" in sample["detail"], sample
        # on the school's clock (the 409's `now`), not the phone's: it matches the bell
        assert abs(seconds_left(sample["countdown"]) + sample["at"]) <= 1.5, sample
    left = [seconds_left(sample["countdown"]) for sample in waiting]
    assert left == sorted(left, reverse=True) and left[0] - left[-1] >= 2, left  # it ticks
    assert SCREENSHOT.stat().st_size > 10_000

    # then, without a reload, the lesson: live and the camera decoding
    assert visit["live_at"] is not None, visit["last"]
    assert visit["live_at"] > 0, visit  # not before the bell
    assert visit["frames_at"] is not None, visit["camera"]
    assert visit["frames_at"] < 30, visit
    assert visit["camera"]["framesDecoded"] > 10, visit["camera"]
    assert visit["camera"]["width"] > 0 and visit["camera"]["mid"] == "0", visit["camera"]
    after = visit["after"]
    assert after["state"] == "live" and after["sameDocument"], after
    assert not after["overlayShown"] and not after["countdownShown"], after
    assert len(visit["navigations"]) == 1, visit["navigations"]
    # the page's own WHEP POSTs: refused before the bell, few of them, one let in
    posts = visit["posts"]
    assert all(p["status"] == 409 for p in posts if p["at"] < -0.1), posts
    assert len([p for p in posts if p["at"] < 0]) <= 3, posts  # no busy polling while waiting
    assert [p["status"] for p in posts].count(201) == 1 and posts[-1]["status"] == 201, posts
    assert len([p for p in posts if p["at"] >= 0]) <= 2, posts
    assert not [line for line in visit["console"] if line.startswith("pageerror")], visit


def test_a_phone_with_a_wrong_date_still_says_today(visit: dict[str, Any]) -> None:
    behind = visit["phone_behind"]  # its clock three days behind the school's
    assert behind["state"] == "waiting", behind
    assert abs(seconds_left(behind["countdown"]) + behind["at"]) <= 1.5, behind
    assert behind["lessonInfo"] == "Tiết 1 · Toán · Nguyễn Thị Lan", behind
    assert behind["detail"].startswith("Tiết học tiếp theo bắt đầu lúc 07:00 hôm nay."), behind
