"""Browsers without H.264 play the lesson: Debian's firefox-esr with its default prefs
(Marionette) and Chromium with H.264 taken away get the VP8 twins; a Chromium left with
no video codec in common gets the sound, the classroom channel and a Vietnamese note
saying which browser shows the picture.

One service for both browsers, in network namespaces as in test_browser.py (browsers
offer no loopback candidates): the demo, its camera with one rendition (1280×720@30), so
that "save data" takes a VP8 viewer to that rendition's base temporal layer ("half").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, ROOT, Service, run_service
from tests.netns import Host, available, two_hosts

# 600 kb/s: its half (360) is cheaper than the board's step up from stills (450), so the
# save-data level has the camera on "half" rather than paused
ONE_CAMERA_RENDITION = """
[[camera_renditions]]
name = "high"
width = 1280
height = 720
fps = 30
bitrate_kbps = 600
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]

ENGLISH = ("Browser", "picture", "Error", "Try again", "codec", "{", "}")


def probe(viewer: Host, script: str, *args: str) -> None:
    subprocess.run(
        viewer.command(sys.executable, str(ROOT / "tests" / script), *args),
        check=True,
        timeout=180,
        cwd=ROOT,
    )


def pupil_url(service: Service, index: int) -> tuple[str, str]:
    pupils = [link for link in service.links() if link["kind"] == "student"]
    pupil = pupils[index % len(pupils)]
    return f"{service.base}/join/{pupil['token']}", str(pupil["name"])


def test_browsers_without_h264(tmp_path: Path) -> None:
    assert Path("/usr/bin/firefox-esr").exists(), "firefox-esr missing (see README test command)"
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    ARTIFACTS.mkdir(exist_ok=True)
    firefox_json, chromium_json = tmp_path / "firefox.json", tmp_path / "chromium.json"
    site = tmp_path / "site"
    shutil.copytree(ROOT / "edge" / "config" / "demo", site)
    with (site / "rooms" / "demo.toml").open("a", encoding="utf-8") as room:
        room.write(ONE_CAMERA_RENDITION)
    with (
        two_hosts() as (server, viewer),
        run_service(
            tmp_path, ["--config", str(site / "edge.toml")], server.address, server.command()
        ) as service,
    ):
        url, name = pupil_url(service, 0)
        probe(viewer, "firefox_probe.py", url, str(firefox_json), "30")
        url, _ = pupil_url(service, 1)
        probe(viewer, "codec_probe.py", url, str(chromium_json), str(ARTIFACTS))
    firefox = json.loads(firefox_json.read_text("utf-8"))
    chromium = json.loads(chromium_json.read_text("utf-8"))
    (ARTIFACTS / "every-browser.json").write_text(
        json.dumps({"firefox": firefox, "chromium": chromium}, ensure_ascii=False, indent=1)
    )

    # firefox-esr, default prefs: offers no H.264; both videos decode as VP8, sound plays
    stats = firefox["stats"]
    assert firefox.get("played_after") is not None, firefox
    assert stats["sdpVideo"] and all("VP8/90000" in line for line in stats["sdpVideo"]), stats
    videos = list(stats["video"].values())
    assert len(videos) == 2 and all(v["framesDecoded"] > 10 for v in videos), stats
    assert all(v["codec"] in (None, "video/VP8") for v in videos), stats
    assert sorted(v["width"] for v in videos) == [1280, 1920], stats
    after = firefox["after_tap"]
    assert after["soundPlaying"] and after["audio"]["packetsReceived"] > 50, after
    assert name in firefox["text"] and "Không vào được" not in firefox["text"], firefox["text"]

    # Chromium with H.264 removed by setCodecPreferences: VP8, both videos, audio
    stats = chromium["vp8_stats"]
    assert chromium["vp8_after"] is not None, chromium
    videos = list(stats["video"].values())
    assert len(videos) == 2 and all(v["framesDecoded"] > 10 for v in videos), stats
    assert {v["codec"] for v in videos} == {"video/VP8"}, stats
    assert stats["audio"]["codec"] == "audio/opus", stats
    # save data: the camera's base temporal layer, half the frames, from the same encode
    assert chromium["half_after"] is not None and chromium["half_camera"] == "half", chromium
    assert 10 <= chromium["half_fps"] <= 20, chromium
    assert chromium["half_word"] == "Chất lượng: Vừa", chromium

    # Chromium with neither H.264 nor VP8: sound, the channel, and the note in Vietnamese
    stats = chromium["none_stats"]
    assert chromium["none_after"] is not None, chromium
    assert stats["picture"] is False and stats["audio"]["packetsReceived"] > 50, stats
    assert all(v["packetsReceived"] == 0 for v in stats["video"].values()), stats
    assert stats["talk"] and stats["talk"]["open"], stats
    notice = chromium["notice"]
    assert notice["visible"] and not notice["swapShown"], notice
    assert "không hiện được hình" in notice["text"] and "Chrome" in notice["text"], notice
    assert not any(word in notice["text"] for word in ENGLISH), notice
    for size in ("390x844", "844x390", "1920x1080"):
        assert (ARTIFACTS / f"join-no-picture-{size}.png").stat().st_size > 10_000
    assert not [line for line in chromium["console"] if line.startswith("pageerror")], chromium
