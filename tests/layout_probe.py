"""The pupil's page at the sizes pupils and boards hold it: opens a join link in Debian
Chromium (Playwright) at each viewport, waits until it plays, screenshots it and reports
where things are, so a test can say what a person would see.

Run inside the viewer's network namespace, from the project's root:
    python -m tests.layout_probe URL RESULT.json SCREENSHOT_PREFIX [STATE]
STATE is the page's state to wait for (default `live`; `waiting`, `picking`, ...).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tests.browser_probe import chromium

SIZES = [(390, 844), (844, 390), (1920, 1080)]
"""Phone portrait and landscape (CSS px), a smart board."""

MEASURE = """
() => {
  const box = (sel) => {
    const el = document.querySelector(sel);
    if (!el || el.hidden || el.offsetParent === null) return null;
    const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height,
            top: r.top + window.scrollY, bottom: r.bottom + window.scrollY,
            left: r.left, right: r.right};
  };
  const d = document.documentElement;
  return {
    state: document.body.dataset.state,
    scrollWidth: d.scrollWidth, scrollHeight: d.scrollHeight,
    innerWidth: window.innerWidth, innerHeight: window.innerHeight,
    board: box('#board'), camera: box('#camera'), stage: box('#stage'),
    send: box('#send'), hand: box('#hand'), swap: box('#swap'), mute: box('#mute'),
    fullscreen: box('#fullscreen'), lesson: box('#lesson-now'),
    overlay: box('#overlay'), detail: box('#overlay-detail'), countdown: box('#countdown'),
    lessonText: (document.querySelector('#lesson-now') || {}).textContent || null,
    text: document.body.innerText,
  };
}
"""


def main(url: str, result_path: str, prefix: str, state: str = "live") -> None:
    results: dict[str, Any] = {}
    with chromium(viewport={"width": 390, "height": 844}, locale="vi-VN") as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if page.evaluate("document.body.dataset.state") == state:
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(1500)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(800)
            name = f"{width}x{height}"
            page.screenshot(path=f"{prefix}-{name}.png")
            results[name] = page.evaluate(MEASURE)
        results["errors"] = errors
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(results, out, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
