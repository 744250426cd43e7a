"""Opens a join link in Debian Chromium (Playwright) and reports what the page received.

Run inside the viewer's network namespace:
    python tests/browser_probe.py URL RESULT.json SCREENSHOT.png [SECONDS [DEVICE]]
With DEVICE (the namespace's veth), the link is then taken down and up again, and the
time the page takes to notice and to play again is reported.

Once playing, the pupil taps "Tiết kiệm dữ liệu" (save data): the probe reports how long
the camera <video> takes to show 640x360 frames, what the page then says (quality, data
used), a second screenshot (SCREENSHOT with a `-save-data` suffix), and whether a
reloaded page remembers the choice and asks for it in its WHEP POST.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, sync_playwright

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


@contextlib.contextmanager
def chromium(extra_args: Sequence[str] = (), **options: Any) -> Iterator[BrowserContext]:
    """Debian Chromium (Playwright), headless, on a fresh profile removed afterwards;
    `extra_args` go after our flags, `options` (viewport, locale, ...) to
    `launch_persistent_context`. Also used by bench/latency.py."""
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=[*FLAGS, *extra_args],
            headless=True,
            **options,
        )
        try:
            yield context
        finally:
            context.close()


STATS = """
async () => {
  const c = window.classroom;
  if (!c || !c.pc) return {state: c ? c.state : null};
  const pc = c.pc;  // the page may drop it (a rejoin) while getStats() is awaited
  const report = await pc.getStats();
  const out = {state: c.state, connection: pc.connectionState, video: {}, audio: null,
               pair: null};
  const mids = {};
  pc.getTransceivers().forEach((t) => { mids[t.receiver.track.id] = t.mid; });
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


# The camera <video> as the pupil sees it: the decoded size, frames presented so far
# (requestVideoFrameCallback when there is one, else getVideoPlaybackQuality) and the
# page's own texts about quality, data used and the save-data switch.
CAMERA = """
() => {
  const v = document.getElementById('camera');
  if (!window.cameraFrames && v.requestVideoFrameCallback) {
    window.cameraFrames = {count: 0, width: 0, height: 0};
    const seen = (now, meta) => {
      Object.assign(window.cameraFrames,
                    {count: window.cameraFrames.count + 1, width: meta.width, height: meta.height});
      v.requestVideoFrameCallback(seen);
    };
    v.requestVideoFrameCallback(seen);
  }
  const quality = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  const text = (id) => {
    const el = document.getElementById(id);
    return el && !el.hidden ? el.innerText.replace(/\\s+/g, ' ').trim() : null;
  };
  const c = window.classroom;
  return {
    width: v.videoWidth, height: v.videoHeight,
    presented: window.cameraFrames ? {...window.cameraFrames} : null,
    totalVideoFrames: quality ? quality.totalVideoFrames : null,
    state: c.state, quality: c.quality, saveData: c.saveData, session: c.session,
    bytesReceived: c.bytesReceived, at: Date.now(),
    switchChecked: document.getElementById('save-data').getAttribute('aria-checked'),
    rendition: text('rendition'), dataUsed: text('data-used'), stillsNote: text('stills-note'),
    notice: text('notice'),
  };
}
"""


def frames_shown(camera: dict[str, object]) -> int:
    presented = camera.get("presented")
    if isinstance(presented, dict):
        return int(presented["count"])
    total = camera.get("totalVideoFrames")
    return int(total) if isinstance(total, int) else 0


def megabytes(text: object) -> float | None:
    """12.3 from "Đã dùng 12,3 MB" (a decimal comma, as Vietnamese writes it)."""
    found = re.search(r"(\d+,\d)\s(MB|GB)", str(text or ""))
    if not found:
        return None
    value = float(found.group(1).replace(",", "."))
    return value * 1000 if found.group(2) == "GB" else value


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


def camera_low(page: Page, result: dict[str, object], key: str) -> bool:
    """The camera <video> shows 640x360 frames and keeps getting new ones."""
    camera = page.evaluate(CAMERA)
    if (camera["width"], camera["height"]) != (640, 360):
        return False
    shown = frames_shown(camera)
    page.wait_for_timeout(1500)
    later = page.evaluate(CAMERA)
    result[key] = {"before": camera, "after": later}
    return (later["width"], later["height"]) == (640, 360) and frames_shown(later) - shown >= 5


def save_data(page: Page, result: dict[str, object], screenshot_path: str) -> None:
    """Tap the save-data switch like a pupil; then reload and see the choice kept."""
    result["save_data_before"] = page.evaluate(CAMERA)
    page.locator("#save-data").tap()
    result["save_data_low_after"] = wait_until(
        page, lambda: camera_low(page, result, "save_data_camera"), 10
    )
    result["save_data_page"] = wait_until(
        page, lambda: page.evaluate(CAMERA)["rendition"] == "Chất lượng: Thấp", 5
    )
    result["save_data_ui"] = page.evaluate(CAMERA)
    page.screenshot(
        path=str(Path(screenshot_path).with_stem(Path(screenshot_path).stem + "-save-data"))
    )
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.reload(wait_until="domcontentloaded", timeout=15000)
    result["reload_low_after"] = wait_until(
        page,
        lambda: (
            page.evaluate("() => window.classroom.state") == "live"
            and camera_low(page, result, "reload_camera")
        ),
        20,
    )
    result["reload"] = page.evaluate(CAMERA)
    result["reload_posts"] = posts


def main(
    url: str, result_path: str, screenshot_path: str, seconds: float, drop_device: str | None
) -> None:
    result: dict[str, object] = {"url": url}
    console: list[str] = []
    with chromium(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="vi-VN",
    ) as context:
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
        wait_until(  # the page's first poll of its session and first data count
            page, lambda: all(page.evaluate(CAMERA)[k] for k in ("rendition", "dataUsed")), 5
        )
        page.screenshot(path=screenshot_path)
        result["title"] = page.title()
        result["text"] = page.inner_text("body")
        result["ui"] = page.evaluate(CAMERA)
        if drop_device and waited is not None:
            drop_and_heal(page, drop_device, result)
        if waited is not None:
            save_data(page, result, screenshot_path)
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
