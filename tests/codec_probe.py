"""Opens a join link in Debian Chromium (Playwright) as browsers without H.264 offer.

Run inside the viewer's network namespace:
    python tests/codec_probe.py URL RESULT.json SHOTS_DIR

Two visits, one browser:
1. "vp8": H.264 removed by `setCodecPreferences` (what an old Android WebView, or a
   Firefox without OpenH264, offers): both videos should decode as VP8, audio play.
   Then the pupil taps "Tiết kiệm dữ liệu": in a room whose camera has one rendition,
   the cheapest VP8 camera is the base temporal layer of the same encode ("half"): the
   camera should go on decoding at about half its frame rate.
2. "none": only VP9/AV1 left: the server rejects both video lines; the page should play
   the sound, keep the classroom channel and say in Vietnamese that this browser cannot
   show the picture. Screenshots of that state at 390x844, 844x390 and 1920x1080.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from playwright.sync_api import Page

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser_probe import chromium, wait_until

# A page script cannot tell: the transceivers it adds get the narrowed list whatever it asks.
NARROW = """
(() => {
  const drop = %s;
  const narrow = (codecs) => codecs.filter((c) => !drop.test(c.mimeType));
  const set = RTCRtpTransceiver.prototype.setCodecPreferences;
  RTCRtpTransceiver.prototype.setCodecPreferences = function (codecs) {
    return set.call(this, narrow(codecs));
  };
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (kind, init) {
    const t = add.call(this, kind, init);
    if (kind === 'video') set.call(t, narrow(RTCRtpReceiver.getCapabilities('video').codecs));
    return t;
  };
})();
"""
DROPS = {"vp8": r"/^video\/h264$/i", "none": r"/^video\/(h264|vp8)$/i"}

STATS = """
async () => {
  const c = window.classroom;
  if (!c || !c.pc) return {state: c ? c.state : null};
  const report = await c.pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  const out = {state: c.state, picture: c.picture, video: {}, audio: null,
               talk: window.classroomTalk ? window.classroomTalk.status : null};
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const entry = {codec: codecs[s.codecId] || null, packetsReceived: s.packetsReceived || 0,
                   framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                   framesReceived: s.framesReceived || 0, framesDropped: s.framesDropped || 0,
                   keyFramesDecoded: s.keyFramesDecoded || 0, pliCount: s.pliCount || 0,
                   nackCount: s.nackCount || 0, packetsLost: s.packetsLost || 0,
                   freezeCount: s.freezeCount || 0};
    if (s.kind === 'video') out.video[s.mid || s.id] = entry; else out.audio = entry;
  });
  return out;
}
"""

NOTICE = """
() => {
  const el = document.getElementById('no-picture');
  const box = el.getBoundingClientRect();
  return {hidden: el.hidden, text: el.innerText.replace(/\\s+/g, ' ').trim(),
          visible: box.width > 0 && box.height > 0 && getComputedStyle(el).display !== 'none',
          body: document.body.innerText,
          swapShown: document.getElementById('swap').offsetParent !== null};
}
"""

SIZES = ((390, 844), (844, 390), (1920, 1080))


def visit(page: Page, url: str, mode: str, shots: Path, result: dict[str, object]) -> None:
    stats: dict[str, object] = {}

    def ready() -> bool:
        nonlocal stats
        stats = page.evaluate(STATS)
        audio = stats.get("audio") or {}
        assert isinstance(audio, dict)
        if stats.get("state") != "live" or audio.get("packetsReceived", 0) <= 50:
            return False
        video = stats.get("video") or {}
        assert isinstance(video, dict)
        if mode == "none":
            return stats.get("picture") is False
        decoded = [v["framesDecoded"] for v in video.values()]
        return len(decoded) == 2 and min(decoded) > 10

    started = time.monotonic()
    page.goto(url, wait_until="domcontentloaded", timeout=15000)
    result[f"{mode}_after"] = wait_until(page, ready, 25)
    result[f"{mode}_stats"] = stats
    result[f"{mode}_seconds"] = round(time.monotonic() - started, 2)
    if mode == "vp8" and result["vp8_after"] is not None:
        half(page, result)
    if mode == "none":
        wait_until(page, lambda: bool((page.evaluate(STATS).get("talk") or {}).get("open")), 5)
        result["none_stats"] = page.evaluate(STATS)
        result["notice"] = page.evaluate(NOTICE)
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"join-no-picture-{width}x{height}.png"))


def camera_frames(page: Page) -> int:
    video = page.evaluate(STATS).get("video") or {}
    return int(video["0"]["framesDecoded"]) if "0" in video else 0


def half(page: Page, result: dict[str, object]) -> None:
    """Tap save data; report when the camera is on "half" and its frame rate then."""
    page.locator("#save-data").click()
    session = "() => (window.classroom.session || {video: {}}).video.camera"
    result["half_after"] = wait_until(page, lambda: page.evaluate(session) == "half", 15)
    page.wait_for_timeout(1500)  # past the switch
    before, started = camera_frames(page), time.monotonic()
    page.wait_for_timeout(4000)
    result["half_fps"] = round((camera_frames(page) - before) / (time.monotonic() - started), 1)
    result["half_stats"] = page.evaluate(STATS)  # to read a failure by
    result["half_camera"] = page.evaluate(session)
    result["half_word"] = page.evaluate("() => document.getElementById('rendition').innerText")


def main(url: str, result_path: str, shots_dir: str) -> None:
    shots = Path(shots_dir)
    shots.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {}
    console: list[str] = []
    for mode, drop in DROPS.items():
        with chromium(viewport={"width": 390, "height": 844}, locale="vi-VN") as context:
            context.add_init_script(NARROW % drop)
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            visit(page, url, mode, shots, result)
    result["console"] = console
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False, indent=1), "utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
