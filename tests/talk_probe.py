"""A pupil and the teacher's console, two pages of one Debian Chromium (Playwright).

Run inside the viewer's network namespace (tests/test_participation.py does):
    python tests/talk_probe.py BASE JOIN_URL CLASS_URL STAFF_COOKIE TONE.wav RESULT.json
        SCREENSHOT.png [NAMESPACE:DEVICE]

The console logs in with the staff cookie. The pupil's page plays the lesson, and a
second tab opens the class link and picks the same pupil's name; the pupil raises a hand
and sends a message, each timed until the console shows it; the teacher taps "Cho nói",
the pupil turns the microphone on (Chromium's fake microphone plays TONE.wav) and talks
for a few seconds (the probe notes which audio the page plays meanwhile); the teacher
taps "Tắt mic"; the pupil taps "save data" (timed until the camera plays the cheapest
rendition), then off again; with NAMESPACE:DEVICE (Janus's side of the browser's link)
that link thins to 120 kb/s (`tc tbf`: room for both tabs' sound and little else) until
the pupil's camera stops (the page's first aid, or the service's choice) while the
sound goes on; the teacher taps "Mời ra" for the
pupil's own link, and the class-link tab must go on playing. Last, the probe downloads
the day's attendance (CSV) as staff.
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
from tests.netns import shape

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


# Which audio the page plays (the mid of the sound element's track) and the audio packets
# received per mid: in relay mode a pupil allowed to speak hears the `ducked` stream.
HEARD = """
async () => {
  const c = window.classroom, el = document.getElementById('sound');
  const track = el.srcObject && el.srcObject.getAudioTracks()[0];
  const playing = c.pc.getTransceivers().find((t) => track && t.receiver.track === track);
  const packets = {};
  (await c.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') packets[s.mid] = s.packetsReceived;
  });
  return {playing: playing ? playing.mid : null, packets: packets};
}
"""
# On a thin link: camera frames decoded, audio packets received, what the page asked Janus
# for by itself (first aid) and what the service chose (its last answer that got through).
THIN = """
async () => {
  const c = window.classroom, out = {camera: 0, audio: 0, aid: null, chosen: null};
  (await c.pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video' && s.mid === 'camera') out.camera = s.framesDecoded || 0;
    if (s.kind === 'audio' && s.mid === 'audio') out.audio = s.packetsReceived || 0;
  });
  out.aid = c.firstAid && c.firstAid.substreams;
  out.chosen = c.session && c.session.substreams;
  return out;
}
"""
SOUND = """
async () => {
  let packets = 0;
  (await window.classroom.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0;
  });
  return packets;
}
"""


def staff_get(url: str, cookie: str) -> str:
    request = urllib.request.Request(url, headers={"Cookie": f"ce_staff={cookie}"})
    with urllib.request.urlopen(request, timeout=20) as answer:
        return str(answer.read().decode("utf-8-sig"))


def main() -> None:
    base, join_url, class_url, cookie, tone, result_path, screenshot, feed = sys.argv[1:9]
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
        said: list[str] = []
        pupil.on("console", lambda m: said.append(f"{m.type}: {m.text}"))
        pupil.on("requestfailed", lambda r: said.append(f"failed: {r.method} {r.url}"))
        pupil.goto(join_url)
        try:
            result["live_after"] = timed(
                pupil,
                "window.classroom && window.classroom.state === 'live' && "
                "window.classroomTalk.status.open",
                40,
            )
        except Exception:  # say what the page was doing, then fail
            where = pupil.evaluate(
                "({state: window.classroom && window.classroom.state,"
                " talk: window.classroomTalk && window.classroomTalk.status,"
                " overlay: document.getElementById('overlay').innerText})"
            )
            print(json.dumps({"page": where, "said": said, **result}), file=sys.stderr)
            raise
        result["layout"] = pupil.evaluate(
            "({swap: !document.getElementById('swap').hidden,"
            " board: !document.getElementById('board').hidden,"
            " cameraBig: document.getElementById('camera').classList.contains('big')})"
        )  # the room has no board: the camera fills the stage
        result["online_after"] = timed(console, "window.consoleState().online.length === 1")
        online = console.evaluate("window.consoleState().online[0]")
        result["online"] = online
        result["watch_started"] = time.time()
        # the class link, the same name picked: a participant of its own, not verified
        classmate = context.new_page()
        classmate.on("pageerror", lambda e: result["console_errors"].append(f"class: {e}"))
        classmate.goto(class_url)
        classmate.wait_for_function("window.classroom.state === 'picking'", timeout=15000)
        classmate.locator("#picker-list button", has_text="Nguyễn Văn An").first.click()
        timed(classmate, "window.classroom.state === 'live'", 40)
        result["class_online_after"] = timed(
            console, "window.consoleState().online.length === 2", 15
        )
        result["online_both"] = console.evaluate("window.consoleState().online")
        pupil.bring_to_front()

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
        time.sleep(TALK_SECONDS - 1)
        heard = pupil.evaluate(HEARD)
        time.sleep(1)
        result["heard_during"] = [heard, pupil.evaluate(HEARD)]
        result["during"] = health(base)
        console.screenshot(path=screenshot)
        console.click(f'#online li[data-key="{key}"] button:has-text("Tắt mic")')
        result["muted_after"] = timed(pupil, "!window.classroomTalk.status.allowed")
        result["talk_ended"] = time.time()
        result["pupil_speaking_at_end"] = pupil.evaluate("window.classroomTalk.status.speaking")
        time.sleep(1.5)  # the page's next state poll, Janus's configure, a worker's beat
        result["after"] = health(base)
        result["heard_after"] = pupil.evaluate(HEARD)
        # save data: the camera goes to its cheapest rendition (320x180), on either path
        pupil.click("#save-data")
        result["save_data_after"] = timed(
            pupil,
            "window.classroom.session && window.classroom.session.save_data === true && "
            "window.classroom.session.video.camera === 'low'",
            10,
        )
        result["save_data_width_after"] = timed(
            pupil, "document.getElementById('camera').videoWidth === 320", 15
        )
        result["save_data_session"] = pupil.evaluate("window.classroom.session")
        if feed:  # a thin link: the service steps the pupil down by itself, to sound alone
            namespace, device = feed.split(":")
            pupil.click("#save-data")
            timed(pupil, "window.classroom.session.save_data === false", 10)
            shape(namespace, device, 120, latency_ms=300)
            thinned, samples = time.monotonic(), result.setdefault("thin_samples", [])
            try:
                for _ in range(30):
                    time.sleep(1)
                    sample = pupil.evaluate(THIN)
                    sample["at"] = round(time.monotonic() - thinned, 1)
                    samples.append(sample)
                    asked = sample["aid"] or sample["chosen"] or {}
                    paused = "camera" in asked and asked["camera"] is None
                    if paused and len(samples) >= 3 and sample["camera"] == samples[-3]["camera"]:
                        result["thin_paused_after"] = sample["at"]  # 2 s without a frame
                        break
            finally:
                shape(namespace, device, None)
            # what queued behind the thin link reaches the console: let its list settle
            timed(console, "window.consoleState().online.length === 2", 15)
            time.sleep(1.5)
        # the teacher removes the pupil: the page says so at once and its picture ends
        console.click(f'#online li[data-key="{key}"] button:has-text("Mời ra")')
        result["removed_after"] = timed(
            pupil, "window.classroom.state === 'error' && !window.classroomTalk.status.open"
        )
        result["watch_ended"] = time.time()
        result["removed_text"] = pupil.inner_text("#overlay")
        # the class-link tab of the same name was not removed: it goes on playing
        result["online_after_removal"] = timed(console, "window.consoleState().online.length === 1")
        result["online_left"] = console.evaluate("window.consoleState().online")
        # (its camera may still be paused by the thin link: its sound goes on)
        packets = classmate.evaluate(SOUND)
        time.sleep(2)
        result["classmate"] = {
            "state": classmate.evaluate("window.classroom.state"),
            "sound_packets": [packets, classmate.evaluate(SOUND)],
        }
        result["report_csv"] = staff_get(f"{base}/reports/export?room=r1&format=csv", cookie)
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
