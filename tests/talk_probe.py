"""A pupil and the teacher's console, two pages of one Debian Chromium (Playwright).

Run inside the viewer's network namespace (tests/test_participation.py does):
    python tests/talk_probe.py BASE JOIN_URL STAFF_COOKIE TONE.wav RESULT.json SCREENSHOT.png

The console logs in with the staff cookie. The pupil's page plays the lesson; the pupil
raises a hand and sends a message, each timed until the console shows it; the teacher
taps "Cho nói", the pupil turns the microphone on (Chromium's fake microphone plays
TONE.wav) and talks for a few seconds; the teacher taps "Tắt mic", then "Mời ra".
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser_probe import chromium

TALK_SECONDS = 6.0
POLL = {"polling": 50}  # ms: not requestAnimationFrame (a tab in the background has none)


def timed(page: Any, condition: str, within: float = 10.0) -> float:
    started = time.monotonic()
    page.wait_for_function(condition, timeout=within * 1000, **POLL)
    return round(time.monotonic() - started, 3)


def health(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


def main() -> None:
    base, join_url, cookie, tone, result_path, screenshot = sys.argv[1:7]
    # the microphone needs a secure page: here plain http on the test's own network stands
    # in for the school's https (a real deployment serves https, see README)
    fake = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone}",
        "--autoplay-policy=no-user-gesture-required",
        f"--unsafely-treat-insecure-origin-as-secure={base}",
    ]
    result: dict[str, Any] = {"console_errors": []}
    with chromium(extra_args=fake, viewport={"width": 1280, "height": 800}) as context:
        context.add_cookies([{"name": "ce_staff", "value": cookie, "url": base}])
        console = context.new_page()
        console.on("pageerror", lambda e: result["console_errors"].append(f"console: {e}"))
        console.goto(f"{base}/console/r1")
        console.wait_for_function("window.consoleState && window.consoleState()", timeout=15000)
        pupil = context.new_page()
        pupil.on("pageerror", lambda e: result["console_errors"].append(f"pupil: {e}"))
        pupil.goto(join_url)
        result["live_after"] = timed(
            pupil,
            "window.classroom && window.classroom.state === 'live' && "
            "window.classroomTalk.status.open",
            40,
        )
        result["layout"] = pupil.evaluate(
            "({swap: !document.getElementById('swap').hidden,"
            " board: !document.getElementById('board').hidden,"
            " cameraBig: document.getElementById('camera').classList.contains('big')})"
        )  # the room has no board: the camera fills the stage
        result["online_after"] = timed(console, "window.consoleState().online.length === 1")
        online = console.evaluate("window.consoleState().online[0]")
        result["online"] = online

        pupil.click("#hand")
        result["hand_after"] = timed(console, "window.consoleState().hands.length === 1")
        result["hands"] = console.evaluate("window.consoleState().hands")
        result["hand_shown"] = console.inner_text("#hands")
        pupil.fill("#message-text", "Thưa cô, em chưa hiểu bài 2 ạ.")
        pupil.click("#send")
        result["message_after"] = timed(console, "window.consoleState().messages.length === 1")
        result["messages"] = console.evaluate("window.consoleState().messages")
        result["message_shown"] = console.inner_text("#messages")
        result["pupil_note"] = pupil.inner_text("#talk-note")

        key = online["key"]
        console.click(f'#online li[data-key="{key}"] button:has-text("Cho nói")')
        result["allowed_after"] = timed(pupil, "window.classroomTalk.status.allowed")
        result["hand_lowered_after"] = timed(console, "window.consoleState().hands.length === 0")
        pupil.click("#mic")
        result["speaking_after"] = timed(pupil, "window.classroomTalk.status.speaking")
        result["talk_started"] = time.time()
        time.sleep(TALK_SECONDS)
        result["during"] = health(base)
        console.screenshot(path=screenshot)
        console.click(f'#online li[data-key="{key}"] button:has-text("Tắt mic")')
        result["muted_after"] = timed(pupil, "!window.classroomTalk.status.allowed")
        result["talk_ended"] = time.time()
        result["pupil_speaking_at_end"] = pupil.evaluate("window.classroomTalk.status.speaking")
        result["after"] = health(base)
        # the teacher removes the pupil: the page says so at once and its picture ends
        console.click(f'#online li[data-key="{key}"] button:has-text("Mời ra")')
        result["removed_after"] = timed(
            pupil, "window.classroom.state === 'error' && !window.classroomTalk.status.open"
        )
        result["removed_text"] = pupil.inner_text("#overlay")
        result["online_after_removal"] = timed(console, "window.consoleState().online.length === 0")
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
