"""A GStreamer `webrtcbin` + libnice WHEP viewer (Debian 12's GStreamer 1.22) plays the
lesson: set-top boxes, hall TVs and signage players are built like this.

webrtcbin's DTLS certificate is RSA-2048 where browsers' are ECDSA, and libnice offers no
loopback candidate: the service and the viewer each get a network namespace of the test's
own, joined by a veth pair. The viewer (tests/gst_whep_viewer.py) runs under Debian's
python3, which has `gi`. One service start serves three viewers in turn: webrtcbin's own
offer (`a=setup:actpass`, we answer `active`: we are the DTLS client facing an RSA
server), then `active` and `passive` forced in the offer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Service, run_service
from tests.netns import Host, available, two_hosts

SYSTEM_PYTHON = "/usr/bin/python3"
GI_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "from gi.repository import Gst; Gst.init(None);"
    "missing = [e for e in ('webrtcbin', 'nicesrc', 'avdec_h264', 'opusdec', 'dtlssrtpdec')"
    " if Gst.ElementFactory.find(e) is None]; assert not missing, missing"
)


def _gstreamer() -> bool:
    if shutil.which(SYSTEM_PYTHON) is None:
        return False
    check = subprocess.run([SYSTEM_PYTHON, "-c", GI_CHECK], capture_output=True, timeout=30)
    return check.returncode == 0


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
    pytest.mark.skipif(
        not _gstreamer(),
        reason="needs Debian's python3-gi and GStreamer's webrtcbin, nice, libav "
        "(see README test command)",
    ),
]


@pytest.fixture(scope="module")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Host, Path]]:
    tmp = tmp_path_factory.mktemp("gst")
    with (
        two_hosts() as (server, viewer),
        run_service(tmp, ["--demo"], server.address, server.command()) as service,
    ):
        yield service, viewer, tmp


def watch(lesson: tuple[Service, Host, Path], setup: str, seconds: float) -> dict[str, Any]:
    service, viewer, tmp = lesson
    pupil = next(link for link in service.links() if link["kind"] == "student")
    result_path = tmp / f"gst-{setup}.json"
    subprocess.run(
        viewer.command(
            SYSTEM_PYTHON,
            "-X",
            "faulthandler",
            str(ROOT / "tests" / "gst_whep_viewer.py"),
            service.whep(),
            str(pupil["token"]),
            str(seconds),
            setup,
            str(result_path),
        ),
        check=True,
        timeout=seconds + 40,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    return result


def assert_played(result: dict[str, Any], fps: float) -> None:
    assert result["post_status"] == 201, result
    assert result["patches"] and set(result["patches"]) == {204}, result
    assert "connected" in result["states"] and "failed" not in result["states"], result
    assert result["video_size"] == [1280, 720], result
    assert result["video_fps"] >= fps, result
    assert result["audio_buffers"] > 0, result
    assert result["audio_seconds"] >= 0.8 * result["video_span"], result
    # the session is gone: DELETE ends it, a second finds nothing, no viewer left
    assert (result["delete_status"], result["delete_again_status"]) == (200, 404), result
    assert result["viewers_after"] == 0, result


def test_webrtcbin_plays_with_its_own_offer(lesson: tuple[Service, Host, Path]) -> None:
    result = watch(lesson, "actpass", 10)
    assert result["answer_setup"] == ["a=setup:active"], result  # we are the DTLS client
    assert result["video_frames"] >= 150, result
    assert result["video_span"] >= 9.5, result
    assert_played(result, 25)


@pytest.mark.parametrize(("setup", "answered"), [("active", "passive"), ("passive", "active")])
def test_webrtcbin_plays_in_either_dtls_role(
    lesson: tuple[Service, Host, Path], setup: str, answered: str
) -> None:
    result = watch(lesson, setup, 4)
    assert result["answer_setup"] == [f"a=setup:{answered}"], result
    assert result["video_frames"] >= 60, result
    assert_played(result, 20)
