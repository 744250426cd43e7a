"""Real capture paths that can run here: the X11 screen (Xvfb) and ALSA (its null device).
V4L2 needs a camera: only its failure path is checked."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import av
import pytest

from capture import AlsaMicrophone, AudioEncoder, ScreenGrab, V4L2Camera, VideoEncoder


@pytest.fixture
def display() -> Iterator[str]:
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (the test command installs it)")
    number = 90 + int(time.time()) % 9
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        assert server.poll() is None, "Xvfb did not start"
        yield f":{number}.0"
    finally:
        server.terminate()
        server.wait(5)


def test_screen_grab_frames_encode(display: str) -> None:
    frames: list[av.VideoFrame] = []
    screen = ScreenGrab("board", display, fps=10)
    screen.start(lambda frame, at: frames.append(frame))  # type: ignore[arg-type]
    time.sleep(1.5)
    screen.stop()
    assert screen.error is None
    assert len(frames) >= 5
    assert (frames[0].width, frames[0].height) == (1280, 720)
    encoder = VideoEncoder("board", width=1280, height=720, fps=10, bitrate=500_000, origin=0.0)
    packets = [p for i, f in enumerate(frames) for p in encoder.encode(f, i / 10)]
    assert packets and packets[0].is_keyframe


def test_alsa_microphone_reads_and_encodes() -> None:
    frames: list[tuple[av.AudioFrame, float]] = []
    microphone = AlsaMicrophone("mic", "null")
    microphone.start(lambda frame, at: frames.append((frame, at)))  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while sum(f.samples for f, _ in frames[:30000]) < 20 * 960 and time.monotonic() < deadline:
        time.sleep(0.05)
    microphone.stop()
    assert microphone.error is None, microphone.error
    assert frames, "no audio from ALSA's null device"
    encoder = AudioEncoder("mic", origin=frames[0][1])
    samples = 0
    packets = []
    for frame, at in frames:
        packets += encoder.encode(frame, at)
        samples += frame.samples
        if samples >= 20 * 960:
            break
    assert len(packets) >= 15, (len(frames), samples)
    pts = [p.pts or 0 for p in packets]
    assert pts == sorted(pts)


def test_missing_camera_reports_and_retries() -> None:
    camera = V4L2Camera("camera", "/dev/v4l/by-id/usb-none-video-index0")
    camera.start(lambda frame, at: None)
    time.sleep(1.0)
    camera.stop()
    assert camera.frames == 0
    assert camera.error and "usb-none" in camera.error
