"""Opens a join link in Debian's firefox-esr (default prefs: no OpenH264), headless,
driven through Marionette, and reports what the page received.

Run inside the viewer's network namespace:
    python tests/firefox_probe.py URL RESULT.json [SECONDS]

A fresh profile whose only pref is the Marionette port (a free one). The probe waits
until both videos decode and audio packets come, taps "Chạm để bật tiếng" as a pupil
would (Firefox lets no page start sound by itself), and reports the codecs, frames and
whether the sound element plays.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from marionette_driver.by import By
from marionette_driver.marionette import Marionette

FIREFOX = "/usr/bin/firefox-esr"

STATS = """
const resolve = arguments[arguments.length - 1];
const w = window.wrappedJSObject || window;  // the page's own globals, not Marionette's view
const c = w.classroom;
if (!c || !c.pc) { resolve({state: c ? c.state : null}); return; }
c.pc.getStats().then((report) => {
  const codecs = {};
  report.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  const sound = document.getElementById('sound');
  const out = {state: c.state, picture: c.picture, video: {}, audio: null,
               sdpVideo: (c.pc.remoteDescription ? c.pc.remoteDescription.sdp : '')
                 .split('\\r\\n').filter((l) => /^a=rtpmap:\\d+ (VP8|H264|VP9|AV1)\\//.test(l)),
               soundPlaying: !!sound.srcObject && !sound.paused && !sound.muted,
               unmuteShown: !document.getElementById('unmute').hidden};
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const entry = {codec: codecs[s.codecId] || null, packetsReceived: s.packetsReceived || 0,
                   framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                   height: s.frameHeight || 0};
    if (s.kind === 'video') out.video[s.mid || s.id] = entry; else out.audio = entry;
  });
  resolve(out);
}, (e) => resolve({error: String(e)}));
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def firefox() -> Iterator[Marionette]:
    """firefox-esr, headless, on a fresh profile (removed afterwards), with a Marionette
    session open."""
    with tempfile.TemporaryDirectory() as profile:
        port = free_port()
        Path(profile, "user.js").write_text(f'user_pref("marionette.port", {port});\n')
        process = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "--remote-allow-system-access",
             "-profile", profile, "--no-remote", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
            client.start_session()
            try:
                yield client
            finally:
                with contextlib.suppress(Exception):
                    client.delete_session()
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def played(stats: dict[str, Any]) -> bool:
    video = stats.get("video") or {}
    audio = stats.get("audio") or {}
    decoded = [v.get("framesDecoded", 0) for v in video.values()]
    return len(decoded) == 2 and min(decoded) > 10 and audio.get("packetsReceived", 0) > 50


def main(url: str, result_path: str, seconds: float) -> None:
    result: dict[str, Any] = {"url": url}
    started = time.monotonic()
    with firefox() as client:
        result["browser"] = client.session_capabilities.get("browserVersion")
        result["launched_after"] = round(time.monotonic() - started, 2)
        client.timeout.script = 10
        client.navigate(url)
        stats: dict[str, Any] = {}
        while time.monotonic() - started < seconds:
            stats = client.execute_async_script(STATS)
            if played(stats):
                result["played_after"] = round(time.monotonic() - started, 2)
                break
            time.sleep(0.5)
        result["stats"] = stats
        if stats.get("unmuteShown"):  # the pupil's tap: sound may start now
            client.find_element(By.ID, "unmute").click()
            time.sleep(1.0)
        result["after_tap"] = client.execute_async_script(STATS)
        result["text"] = client.execute_script("return document.body.innerText")
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False, indent=1), "utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30)
