"""The pupil's page in Chromium while the viewer worker serving it is killed.

    python tests/rejoin_probe.py JOIN_URL RESULT_JSON

Opens the join page, prints `live` once the camera decodes, then waits for a line on
stdin (the test has killed the worker) and watches, every 20 ms or so: when the page stopped
being "live", and when a new peer connection's camera decoded again. Writes RESULT_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from playwright.sync_api import Page

from tests.browser_probe import STATS, chromium, wait_until

# the page's own peer connection now, marked so a new one can be told apart
MARK = "() => { window.firstPc = window.classroom.pc; return !!window.firstPc; }"
NEW_PC = (
    "() => !!(window.classroom && window.classroom.pc && window.classroom.pc !== window.firstPc)"
)


def camera_frames(stats: dict[str, Any]) -> int:
    """The camera's decoded frames in `STATS`'s report."""
    return int(((stats.get("video") or {}).get("0") or {}).get("framesDecoded", 0))


def camera_decodes(page: Page) -> bool:
    stats = page.evaluate(STATS)
    return stats.get("state") == "live" and camera_frames(stats) > 10


def main(url: str, result_path: str) -> None:
    result: dict[str, object] = {}
    with chromium(viewport={"width": 390, "height": 844}, locale="vi-VN") as context:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=15000)
        result["live_after"] = wait_until(page, lambda: camera_decodes(page), 30)
        assert page.evaluate(MARK), "no peer connection"
        print("live", flush=True)
        sys.stdin.readline()  # the worker is killed now
        killed = time.monotonic()
        states: list[str] = []
        left_live = picture_again = None
        while time.monotonic() - killed < 30 and picture_again is None:
            renewed = page.evaluate(NEW_PC)
            stats = page.evaluate(STATS)
            state = str(stats.get("state"))
            if not states or states[-1] != state:
                states.append(state)
            if left_live is None and state != "live":
                left_live = time.monotonic() - killed
            if renewed and camera_frames(stats) > 0:
                picture_again = time.monotonic() - killed
            time.sleep(0.02)
        result.update(states=states, left_live=left_live, picture_again=picture_again)
        result["text"] = page.evaluate("() => document.body.innerText")
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False), "utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
