"""Re-watching: `/recordings/{class}` for holders of that class's links only, files by
signed URLs with HTTP range requests, and the page (Debian Chromium) playing the board
and the camera side by side, kept together."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from capture import AudioEncoder, VideoEncoder, burn_timestamp
from capture.mux import Mp4Writer, TrackSpec, h264_parameter_sets, opus_head
from edge.access.links import signer_for
from edge.access.tokens import Grant
from edge.config.settings import load
from edge.recording.recordings import LessonRecord, MediaFile, Part, RecordingStore
from edge.school.lessons import Lesson
from tests.conftest import ARTIFACTS, Service, run_service, write_site

ZONE = dt.timezone(dt.timedelta(hours=7))
SECONDS = 8
BOARD_LATER = 0.6  # s: the board's file starts this much after the camera's


def encode_file(path: Path, kind: str, seconds: float, start: float) -> MediaFile:
    """A real recording: H.264 (and Opus for the presenter) muxed as the recorder does."""
    width, height, fps = (640, 360, 30) if kind == "presenter" else (1280, 720, 5)
    video = VideoEncoder(kind, width=width, height=height, fps=fps, bitrate=400_000, origin=0)
    packets = []
    for index in range(int(seconds * fps)):
        moment = start + index / fps
        planes = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        planes[: height // 2, : int(width * (index % fps) / fps)] = 200  # a moving bar
        burn_timestamp(planes[:height], int(moment * 1000))
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        packets += [("video", p) for p in video.encode(frame, moment)]
    if kind == "presenter":
        audio = AudioEncoder("mic", origin=0)
        tone = (0.1 * np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 32767).astype(np.int16)
        for index in range(int(seconds * 50)):
            sound = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
            sound.sample_rate = 48000
            packets += [("mic", p) for p in audio.encode(sound, start + index * 0.02)]
    packets.sort(key=lambda item: float((item[1].pts or 0) * (item[1].time_base or 1)))
    first = next(p for name, p in packets if name == "video")
    extradata = h264_parameter_sets(bytes(first))
    assert extradata is not None and first.pts is not None and first.time_base is not None
    tracks = [TrackSpec("video", "video", width, height, extradata=extradata)]
    if kind == "presenter":
        tracks.append(TrackSpec("mic", "audio", extradata=opus_head(1)))
    writer = Mp4Writer(path, tracks, zero=Fraction(first.pts) * first.time_base)
    for name, packet in packets:
        writer.write(name, packet)
    written = writer.close()
    bus = "camera/high" if kind == "presenter" else "board/high"
    return MediaFile(
        name=path.name,
        kind=kind,
        tracks=[bus, "mic"] if kind == "presenter" else [bus],
        size=written.size,
        sha256=written.sha256,
        duration=written.duration,
        offset=start,
    )


def recorded(data_dir: Path, class_name: str, hour: int) -> LessonRecord:
    recordings = RecordingStore(data_dir / "recordings", ZONE)
    start = dt.datetime.now(ZONE).replace(hour=hour, minute=0, second=0, microsecond=0)
    lesson = Lesson(
        id=f"r1-{start:%Y%m%d-%H%M}",
        room="r1",
        kind="timetable",
        class_name=class_name,
        subject="Toán",
        teacher="Nguyễn Thị Lan",
        period=1,
        session="morning",
        start=start,
        end=start + dt.timedelta(minutes=45),
        ends_at=None,
    )
    folder = recordings.folder(lesson.id)
    folder.mkdir(parents=True)
    files = [
        encode_file(folder / "presenter.mp4", "presenter", SECONDS, 0.0),
        encode_file(folder / "presentation.mp4", "presentation", SECONDS, BOARD_LATER),
    ]
    record = LessonRecord.for_lesson(lesson, "Trường Thử")
    record.parts = [
        Part(
            number=1,
            start=start,
            end=start + dt.timedelta(seconds=SECONDS),
            ended="closed",
            files=files,
        )
    ]
    record.state = "complete"
    recordings.write(record)
    return record


@pytest.fixture(scope="module")
def rewatch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("rewatch")
    (tmp / "roster.csv").write_text(
        "Mã định danh,Họ và tên,Lớp\n079215000123,Trần Thị Bình,6A1\n", encoding="utf-8"
    )
    site = 'school = "Trường Thử"\nroster = "roster.csv"\n'
    config = write_site(tmp, {"r1": 'class = "6A1"\n[mic]\nkind = "test"\n'}, site)
    data = tmp / "data"
    recorded(data, "6A1", 7)
    recorded(data, "6A2", 8)  # another class's lesson: never listed for 6A1
    signer = signer_for(load(config, data_dir=data))
    later = int(time.time()) + 3600
    tokens = {
        "6A1": signer.issue(Grant("r1", "6A1", None, later)),
        "pupil": signer.issue(Grant("r1", "6A1", "079215000123", later)),
        "6A2": signer.issue(Grant("r2", "6A2", None, later)),
        "expired": signer.issue(Grant("r1", "6A1", None, int(time.time()) - 1)),
    }
    with run_service(tmp, ["--config", str(config)]) as service:
        yield service, tokens


def listing(service: Service, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(f"{service.base}/api/recordings/6A1", headers=headers, timeout=10)


def test_only_the_class_s_links_list_and_fetch_its_lessons(
    rewatch: tuple[Service, dict[str, str]],
) -> None:
    service, tokens = rewatch
    for who in ("6A1", "pupil"):
        found = listing(service, tokens[who])
        assert found.status_code == 200, found.text
        lessons = found.json()["lessons"]
        assert [x["lesson"] for x in lessons] == [lessons[0]["lesson"]] and lessons[0]["subject"]
    assert listing(service, tokens["6A2"]).status_code == 403  # a pupil of another class
    assert listing(service, tokens["expired"]).status_code == 401
    assert listing(service, "not-a-token").status_code == 401
    away = listing(service, None, **{"X-Forwarded-For": "203.0.113.7"})
    assert away.status_code == 401  # no link, not the mini-PC itself
    page = httpx.get(f"{service.base}/recordings/6A1", params={"t": tokens["6A2"]}, timeout=10)
    assert page.status_code == 403 and "lớp khác" in page.text
    page = httpx.get(f"{service.base}/recordings/6A1", params={"t": tokens["pupil"]}, timeout=10)
    assert page.status_code == 200 and "Xem lại bài giảng" in page.text

    part = listing(service, tokens["pupil"]).json()["lessons"][0]["parts"][0]
    url = service.base + part["presenter"]["url"]
    whole = httpx.get(url, timeout=10)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    ranged = httpx.get(url, headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert ranged.status_code == 206, ranged.status_code
    assert ranged.headers["content-range"] == f"bytes 1000-1999/{len(whole.content)}"
    assert ranged.content == whole.content[1000:2000]
    tampered = url.replace("presenter.mp4", "presentation.mp4")
    assert httpx.get(tampered, timeout=10).status_code == 403  # the signature is per file
    expired = url.split("?")[0] + "?e=1&s=x"
    assert httpx.get(expired, timeout=10).status_code == 403


def test_the_page_plays_board_and_camera_side_by_side_in_chromium(
    rewatch: tuple[Service, dict[str, str]],
) -> None:
    from tests.browser_probe import chromium

    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (README test command)"
    service, tokens = rewatch
    samples: list[dict[str, Any]] = []
    with chromium(viewport={"width": 1280, "height": 720}) as context:
        page = context.new_page()
        page.goto(f"{service.base}/recordings/6A1?t={tokens['pupil']}")
        page.wait_for_selector("#lessons button", timeout=15_000)
        assert "Toán" in page.inner_text("#lessons")
        page.click("#lessons button")
        page.wait_for_function("document.getElementById('camera').readyState >= 2", timeout=15_000)
        page.evaluate("document.getElementById('camera').muted = true")  # autoplay rules
        page.evaluate("document.getElementById('camera').play()")
        for _ in range(12):
            time.sleep(0.4)
            samples.append(
                page.evaluate(
                    """() => { const c = document.getElementById('camera'),
                                     b = document.getElementById('board');
                      return {camera: c.currentTime, board: b.currentTime, paused: b.paused,
                              width: b.videoWidth, cameraWidth: c.videoWidth}; }"""
                )
            )
        page.evaluate("document.getElementById('camera').currentTime = 5")
        time.sleep(1.0)
        seeked = page.evaluate(
            "() => [document.getElementById('camera').currentTime,"
            " document.getElementById('board').currentTime]"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "rewatch-1280x720.png"))
    (ARTIFACTS / "rewatch-samples.json").write_text(json.dumps(samples, indent=1))
    playing = [s for s in samples if s["camera"] > BOARD_LATER + 0.5]
    assert playing and samples[-1]["camera"] > 2, samples
    assert all(s["width"] == 1280 and s["cameraWidth"] == 640 for s in playing), samples
    # the board file starts 0.6 s later: its clock runs 0.6 s behind the camera's
    for sample in playing:
        assert abs(sample["board"] - (sample["camera"] - BOARD_LATER)) < 0.5, sample
        assert not sample["paused"], sample
    assert abs(seeked[1] - (seeked[0] - BOARD_LATER)) < 0.5, seeked


def test_metrics_parse_and_tell_the_archive_and_the_disk(
    rewatch: tuple[Service, dict[str, str]],
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    service, _ = rewatch
    text = httpx.get(f"{service.base}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "classroom_edge_lesson_live",
        "classroom_edge_archive_queue_depth",
        "classroom_edge_disk_free_bytes",
        "classroom_edge_disk_low",
    ):
        assert name in families, sorted(families)
    assert families["classroom_edge_disk_free_bytes"].samples[0].value > 1e6
    assert families["classroom_edge_disk_low"].samples[0].value == 0
    live = {s.labels["room"]: s.value for s in families["classroom_edge_lesson_live"].samples}
    assert live == {"r1": 0.0}
    state = httpx.get(f"{service.base}/api/rooms/r1/lesson", timeout=10).json()
    assert state["warnings"] == [] and state["recording"] is None, state
