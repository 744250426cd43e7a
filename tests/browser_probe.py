"""Opens a join link in Debian Chromium (Playwright) and reports what the page received.

Run inside the viewer's network namespace:
    python tests/browser_probe.py URL RESULT.json SCREENSHOT.png [SECONDS [DEVICE]]
With DEVICE (the namespace's veth), the link is then taken down and up again, and the
time the page takes to notice and to play again is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

STATS = """
async () => {
  const c = window.classroom;
  if (!c || !c.pc) return {state: c ? c.state : null};
  const report = await c.pc.getStats();
  const out = {state: c.state, connection: c.pc.connectionState, video: {}, audio: null,
               pair: null};
  const mids = {};
  c.pc.getTransceivers().forEach((t) => { mids[t.receiver.track.id] = t.mid; });
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.video[s.mid || mids[s.trackIdentifier] || s.id] = {
        framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0};
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.audio = {packetsReceived: s.packetsReceived || 0};
    }
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      out.pair = {local: s.localCandidateId, remote: s.remoteCandidateId};
    }
  });
  return out;
}
"""


def played(stats: dict[str, object], frames: int) -> bool:
    video = stats.get("video") or {}
    audio = stats.get("audio") or {}
    assert isinstance(video, dict) and isinstance(audio, dict)
    decoded = [v.get("framesDecoded", 0) for v in video.values()]
    return len(decoded) >= 2 and min(decoded) > frames and audio.get("packetsReceived", 0) > 0


def wait_until(page: Page, check: Callable[[], bool], seconds: float) -> float | None:
    """Seconds until `check()` held, or None if it did not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return round(time.monotonic() - started, 2)
        page.wait_for_timeout(250)
    return None


def drop_and_heal(page: Page, device: str, result: dict[str, object]) -> None:
    page.evaluate("() => { window.firstPc = window.classroom.pc; }")
    subprocess.run(["ip", "link", "set", device, "down"], check=True, timeout=10)
    result["reconnecting_after"] = wait_until(
        page, lambda: page.evaluate("() => window.classroom.state") == "reconnecting", 30
    )
    subprocess.run(["ip", "link", "set", device, "up"], check=True, timeout=10)
    result["rejoined_after"] = wait_until(
        page,
        lambda: (
            bool(page.evaluate("() => window.classroom.pc !== window.firstPc"))
            and page.evaluate("() => window.classroom.state") == "live"
            and played(page.evaluate(STATS), 10)
        ),
        40,
    )


def main(
    url: str, result_path: str, screenshot_path: str, seconds: float, drop_device: str | None
) -> None:
    result: dict[str, object] = {"url": url}
    console: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale="vi-VN",
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            started = time.monotonic()
            page.goto(url, wait_until="domcontentloaded", timeout=15000)
            stats: dict[str, object] = {}

            def playing() -> bool:
                nonlocal stats
                stats = page.evaluate(STATS)
                if "first_picture_after" not in result and played(stats, 0):
                    result["first_picture_after"] = round(time.monotonic() - started, 2)
                return played(stats, 30)

            waited = wait_until(page, playing, seconds)
            if waited is not None:
                result["played_after"] = round(time.monotonic() - started, 2)
            result["stats"] = stats
            page.wait_for_timeout(500)
            page.screenshot(path=screenshot_path)
            result["title"] = page.title()
            result["text"] = page.inner_text("body")
            if drop_device and waited is not None:
                drop_and_heal(page, drop_device, result)
        finally:
            context.close()
    result["console"] = console
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        float(sys.argv[4]) if len(sys.argv) > 4 else 15,
        sys.argv[5] if len(sys.argv) > 5 else None,
    )
