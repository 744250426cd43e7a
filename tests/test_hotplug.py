"""A camera pulled out during a lesson: viewers get the "Camera đang kết nối lại" slate
while sound goes on, staff are warned, and the picture is back within 5 s of plugging
it in again. The synthetic camera is made to fail at its lowest layer (its device read);
the service, encoders and an aiortc viewer above it are real."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from capture import AlsaMicrophone, TestCamera
from capture.source import Source, SourceError
from edge.access.tokens import Grant
from edge.live.media import LocalMedia
from edge.live.service import EdgeService
from edge.school.clock import SystemClock
from tests.conftest import MEDIA_HERE, ROOT, SMALL_ROOM, serve_in_process, write_site
from tests.test_console import camera_clock_gone, camera_clock_good
from tests.whep_client import Viewer, eventually

ROOM = SMALL_ROOM


def token(service: EdgeService) -> str:
    return service.signer.issue(Grant("r1", "6A1", None, int(time.time()) + 3600))


async def test_unplugged_camera_shows_a_slate_and_comes_back(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": ROOM}, MEDIA_HERE)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        camera = service.rooms["r1"].pipelines[0].source
        assert isinstance(camera, TestCamera)
        viewer = Viewer(f"{base}/whep/r1", token(service), video_lines=1, clock_every=1)
        try:
            assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: camera_clock_good(viewer), 20)

            camera.unplugged.set()
            assert await eventually(lambda: camera_clock_gone(viewer), 5), "no slate"
            video, audio = viewer.stats["camera"].frames, viewer.stats["audio"].frames
            await eventually(lambda: False, 1.5)
            assert viewer.stats["camera"].frames >= video + 4  # the slate keeps coming
            assert viewer.stats["audio"].frames >= audio + 50  # 20 ms frames: sound goes on
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{base}/healthz")).json()
            assert health["status"] == "degraded"
            assert any("Camera không có tín hiệu" in w for w in health["warnings"])

            camera.unplugged.clear()
            plugged = time.monotonic()
            assert await eventually(lambda: camera_clock_good(viewer, last=3), 5)
            back = time.monotonic() - plugged
            print(f"\npicture back {back:.2f} s after the camera was plugged in")
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{base}/healthz")).json()
            assert health["status"] == "ok" and not health["warnings"]
        finally:
            await viewer.close()


MISSING_MIC = SMALL_ROOM.replace(
    '[mic]\nkind = "test"', '[mic]\nkind = "alsa"\ndevice = "plughw:CARD=KhongCoMicro,DEV=0"'
)


async def test_a_missing_microphone_says_so_once_and_in_healthz(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A microphone whose ALSA device does not exist: the pupil still sees the camera,
    /healthz says `missing: true` for it (as for a missing camera), the failure is logged
    once (then once a minute), and alsa-lib's own lines (once a second) stay off stderr."""
    assert MISSING_MIC != SMALL_ROOM
    caplog.set_level(logging.DEBUG, logger="capture")
    config = write_site(tmp_path, {"r1": MISSING_MIC}, MEDIA_HERE)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        mic = service.rooms["r1"].pipelines[-1].source
        assert isinstance(mic, AlsaMicrophone)
        viewer = Viewer(f"{base}/whep/r1", token(service), video_lines=1, decode_clock=False)
        try:
            assert (await viewer.connect()).status_code == 201
            assert await eventually(lambda: viewer.stats["camera"].frames >= 15, 20)
            assert await eventually(lambda: mic.failing_since is not None, 10)
            failing_from = mic.failing_since
            assert failing_from is not None
            # past the pipeline's stall limit (3.5 s): retries after errors are no hang
            await eventually(lambda: time.monotonic() - failing_from > 5.0, 7)
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{base}/healthz")).json()
            assert viewer.stats["camera"].frames >= 40  # the picture goes on
        finally:
            await viewer.close()
    sources = health["rooms"]["r1"]["sources"]
    assert sources["mic"]["missing"] is True and sources["mic"]["state"] in ("failed", "opening")
    assert "KhongCoMicro" in sources["mic"]["error"]
    assert sources["camera"]["missing"] is False
    assert health["status"] == "degraded" and health["rooms"]["r1"]["device_missing"]
    assert any("Micro không có tín hiệu" in w and "không nghe" in w for w in health["warnings"])
    failures = [r for r in caplog.records if r.getMessage().startswith("source mic failed")]
    assert len(failures) >= 4  # retried every second ...
    assert [r.levelno for r in failures].count(logging.WARNING) == 1  # ... said once
    err = capfd.readouterr().err
    assert "ALSA lib" not in err, err[-2000:]


class Failing(Source):
    kind = "audio"

    def _run(self) -> None:
        raise SourceError("hw:CARD=KhongCo: no such device")


def test_a_source_that_keeps_failing_logs_again_once_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="capture.source")
    source = Failing("mic", retry_max=0.02)
    source.log_again_after = 0.3  # 60 s in the service
    source.start(lambda frame, at: None)
    time.sleep(1.0)
    source.stop()
    failures = [r for r in caplog.records if r.getMessage().startswith("source mic failed")]
    warnings = [r.getMessage() for r in failures if r.levelno == logging.WARNING]
    assert len(failures) >= 20, len(failures)
    assert 2 <= len(warnings) <= 5, warnings
    assert "failing for" not in warnings[0] and "(failing for " in warnings[1]


MISSING_SPEAKER = """
import time
import av, numpy as np
from capture.playback import Speaker
speaker = Speaker("plughw:CARD=KhongCoLoa,DEV=0")
speaker.start()
for _ in range(3):
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    frame.sample_rate = 48000
    speaker.play(frame)
    time.sleep(0.5)
speaker.stop()
print(speaker.error)
"""


def test_a_missing_speaker_says_so_without_alsa_lib_on_stderr() -> None:
    """The classroom speakers' device is missing: the speaker says why (the console shows
    it), and alsa-lib's own lines stay off stderr (a process of its own: the quieting is
    once per process)."""
    done = subprocess.run(
        [sys.executable, "-c", MISSING_SPEAKER],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "KhongCoLoa" in done.stdout, done.stdout
    assert "ALSA lib" not in done.stderr, done.stderr[-2000:]


async def test_a_missing_speaker_is_a_staff_warning(tmp_path: Path) -> None:
    """A pupil allowed to speak, and the classroom speakers' device missing: staff read
    why in /healthz's warnings (the console shows the same), in Vietnamese."""
    room = SMALL_ROOM + '[speaker]\nkind = "alsa"\ndevice = "plughw:CARD=KhongCoLoa,DEV=0"\n'
    config = write_site(tmp_path, {"r1": room}, MEDIA_HERE)  # the speaker in this process
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        media = service.rooms["r1"].media
        speaker = media.speaker if isinstance(media, LocalMedia) else None
        assert speaker is not None
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 960), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        speaker.play(frame)  # what a speaking pupil's WHIP session does
        assert await eventually(lambda: speaker.error is not None, 10)
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{base}/healthz")).json()
    worded = [w for w in health["warnings"] if w.startswith("Phòng r1: Loa lớp học")]
    assert worded and "KhongCoLoa" in worded[0] and "kiểm tra loa" in worded[0], health
