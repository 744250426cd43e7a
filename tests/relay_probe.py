"""Opens a join link in Debian Chromium (Playwright) on a service in relay mode and reports
what the page received from Janus.

Run inside the viewer's network namespace:
    python tests/relay_probe.py URL RESULT.json SCREENSHOT.png [--seconds S]
        [--drop DEVICE --gateway ADDRESS] [--staff-key KEY] [--class-link URL]
With --staff-key the room has no lesson at first: the probe reports the page's waiting room
(screenshot suffix `-waiting`), then starts a lesson as staff do (POST
/api/rooms/ROOM/lesson) and times the page joining by itself. The report holds the page's
test hook (state, relay, janus, location), getStats of both videos and the audio, every
request the page made (method and URL), and the screenshot (390x844). With --drop (the
namespace's veth) the link is then taken down and up again, as in browser_probe.py;
--gateway is the default route put back (a link going down takes it away, and the service
sits behind Janus's namespace). Then the pupil reloads the page: the probe beats the
session the page left and reports how long until that gives 404 (the page's DELETE from
pagehide went through). With --class-link a second tab opens the class's link and picks
the second name of the list. Last, with --staff-key, staff end the lesson and the probe
times the pages saying so (screenshot suffix `-ended`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Page

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser_probe import STATS, chromium, played, wait_until

HOOK = """
() => {
  const c = window.classroom;
  return c ? {state: c.state, quality: c.quality, relay: c.relay, janus: c.janus,
              location: c.location,
              channel: window.classroomTalk && window.classroomTalk.status.channel,
              bytesReceived: c.bytesReceived, token: c.config && c.config.token,
              mids: c.pc ? c.pc.getTransceivers().map((t) => [t.mid, t.receiver.track.kind]) : [],
              saveDataShown: !document.getElementById('save-data').hidden,
              boardPlaying: document.getElementById('board').videoWidth,
              cameraPlaying: document.getElementById('camera').videoWidth,
              soundTracks: (document.getElementById('sound').srcObject || {getTracks: () => []})
                .getTracks().length}
           : null;
}
"""

# What the page's link grade is made of: loss and frame rate per video, the pair's RTT.
LINK = """
async () => {
  const out = {video: {}, rtt: null};
  (await window.classroom.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.video[s.mid] = {lost: s.packetsLost, received: s.packetsReceived,
                          fps: s.framesPerSecond, jitter: s.jitter};
    }
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      out.rtt = s.currentRoundTripTime;
    }
  });
  return out;
}
"""


def beat_status(url: str, token: str) -> int:
    """POST a beat to the relay session resource as the page would: its HTTP status."""
    request = urllib.request.Request(
        url, method="POST", headers={"Authorization": f"Bearer {token}"}, data=b""
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def drop_and_heal(page: Page, device: str, gateway: str | None, result: dict[str, object]) -> None:
    """browser_probe.drop_and_heal, with the default route put back once the link is up."""
    page.evaluate("() => { window.firstPc = window.classroom.pc; }")
    subprocess.run(["ip", "link", "set", device, "down"], check=True, timeout=10)
    result["reconnecting_after"] = wait_until(
        page, lambda: page.evaluate("() => window.classroom.state") == "reconnecting", 30
    )
    subprocess.run(["ip", "link", "set", device, "up"], check=True, timeout=10)
    if gateway:
        subprocess.run(
            ["ip", "route", "replace", "default", "via", gateway], check=True, timeout=10
        )
    result["rejoined_after"] = wait_until(
        page,
        lambda: (
            bool(page.evaluate("() => window.classroom.pc !== window.firstPc"))
            and page.evaluate("() => window.classroom.state") == "live"
            and played(page.evaluate(STATS), 10)
        ),
        40,
    )


def staff(page: Page, key: str, command: str) -> int:
    """A lesson command as staff send it: "" (start 45 minutes of Toán now) or "/end"."""
    config = page.evaluate("() => window.classroom.config")
    base = str(config["whep"]).rsplit("/whep/", 1)[0]
    request = urllib.request.Request(
        f"{base}/api/rooms/{config['room']}/lesson{command}",
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=json.dumps({"minutes": 45, "subject": "Toán"} if command == "" else {}).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def suffixed(path: str, suffix: str) -> str:
    return str(Path(path).with_stem(Path(path).stem + suffix))


def state_is(page: Page, state: str) -> bool:
    return bool(page.evaluate("() => window.classroom.state") == state)


def class_page(page: Page, url: str, result: dict[str, object]) -> Page:
    """A class link: the pupil picks the second name of the list, then it plays."""
    page.goto(url, wait_until="domcontentloaded", timeout=15000)
    result["class_picking_after"] = wait_until(page, lambda: state_is(page, "picking"), 10)
    pick = page.locator("#picker-list button").nth(1)
    result["class_picked"] = pick.inner_text()
    pick.tap()
    result["class_played_after"] = wait_until(
        page, lambda: state_is(page, "live") and played(page.evaluate(STATS), 10), 30
    )
    result["class_hook"] = page.evaluate(HOOK)
    result["class_text"] = page.inner_text("body")
    return page


def main(
    url: str,
    result_path: str,
    screenshot_path: str,
    seconds: float,
    drop_device: str | None,
    gateway: str | None,
    staff_key: str | None,
    class_link: str | None,
) -> None:
    result: dict[str, object] = {"url": url}
    console: list[str] = []
    requests: list[str] = []
    with chromium(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="vi-VN",
    ) as context:
        context.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(url, wait_until="domcontentloaded", timeout=15000)
        if staff_key:
            result["waiting_after"] = wait_until(page, lambda: state_is(page, "waiting"), 15)
            result["text_waiting"] = page.inner_text("body")
            page.screenshot(path=suffixed(screenshot_path, "-waiting"))
            result["start_status"] = staff(page, staff_key, "")
        started = time.monotonic()  # the lesson starts (or the page opens on a live one)
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
        hook = page.evaluate(HOOK)
        result["hook"] = hook
        beat = f"POST {(hook or {}).get('location')}"
        result["first_beat_after"] = wait_until(page, lambda: beat in requests, 5)
        result["link"] = page.evaluate(LINK)
        page.wait_for_timeout(1000)  # the data count and the pictures settle
        page.screenshot(path=screenshot_path)
        result["title"] = page.title()
        result["text"] = page.inner_text("body")
        if drop_device and waited is not None:
            drop_and_heal(page, drop_device, gateway, result)
            result["hook_after_drop"] = page.evaluate(HOOK)
        left = page.evaluate(HOOK) or {}
        page.reload(wait_until="domcontentloaded", timeout=15000)  # pagehide: DELETE
        location, token = left.get("location"), left.get("token")
        if location and token:
            result["beat_after_leaving"] = wait_until(
                page, lambda: beat_status(str(location), str(token)) == 404, 10
            )
        result["left_session"] = location
        result["reloaded_after"] = wait_until(
            page,
            lambda: state_is(page, "live") and played(page.evaluate(STATS), 10),
            30,
        )
        result["hook_after_reload"] = page.evaluate(HOOK)
        classmate = class_page(context.new_page(), class_link, result) if class_link else None
        if staff_key:
            result["end_status"] = staff(page, staff_key, "/end")
            result["ended_after"] = wait_until(page, lambda: state_is(page, "ended"), 30)
            result["hook_after_end"] = page.evaluate(HOOK)
            result["text_after_end"] = page.inner_text("body")
            page.screenshot(path=suffixed(screenshot_path, "-ended"))
            if classmate is not None:
                result["classmate_ended_after"] = wait_until(
                    classmate, lambda: state_is(classmate, "ended"), 30
                )
    result["requests"] = requests
    result["console"] = console
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("result")
    parser.add_argument("screenshot")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--drop", default=None)
    parser.add_argument("--gateway", default=None)
    parser.add_argument("--staff-key", default=None)
    parser.add_argument("--class-link", default=None)
    args = parser.parse_args()
    main(
        args.url,
        args.result,
        args.screenshot,
        args.seconds,
        args.drop,
        args.gateway,
        args.staff_key,
        args.class_link,
    )
