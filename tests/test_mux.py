"""The MP4 writer on its own: packets from the shared encoders, a gap that stays a gap,
a file that is whole at every fragment, its SHA-256 known as it closes."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from capture import AudioEncoder, Packet, VideoEncoder
from capture.mux import Mp4Writer, TrackSpec, annexb_units, h264_parameter_sets, opus_head, probe


def camera_packets(moments: list[float]) -> list[Packet]:
    encoder = VideoEncoder("camera/high", width=320, height=180, fps=30, bitrate=300_000, origin=0)
    packets = []
    for moment in moments:
        planes = np.full((270, 320), int(moment * 40) % 200 + 20, dtype=np.uint8)
        packets += encoder.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p"), moment)
    return packets


def test_parameter_sets_come_from_the_keyframe() -> None:
    keyframe = camera_packets([0.0])[0]
    assert keyframe.is_keyframe
    units = annexb_units(bytes(keyframe))
    assert [u[0] & 0x1F for u in units][:2] == [7, 8]  # SPS, PPS before the IDR
    extradata = h264_parameter_sets(bytes(keyframe))
    assert extradata is not None and extradata.count(b"\x00\x00\x00\x01") == 2
    assert h264_parameter_sets(b"\x00\x00\x01\x41\x9a") is None  # a P slice alone
    head = opus_head(1)
    assert head[:8] == b"OpusHead" and len(head) == 19 and head[9] == 1


def test_a_camera_gap_stays_a_gap_and_the_sound_goes_on(tmp_path: Path) -> None:
    # 2 s of picture, the camera away for 3 s, 2 s more; the sound never stops
    moments = [i / 30 for i in range(60)] + [5 + i / 30 for i in range(60)]
    video = camera_packets(moments)
    audio_encoder = AudioEncoder("mic", origin=0)
    audio = []
    tone = (np.sin(np.arange(960) / 8) * 3000).astype(np.int16).reshape(1, -1)
    for index in range(350):
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = 48000
        audio += audio_encoder.encode(frame, index * 0.02)
    extradata = h264_parameter_sets(bytes(video[0]))
    assert extradata is not None
    path = tmp_path / "presenter.mp4"
    writer = Mp4Writer(
        path,
        [
            TrackSpec("camera/high", "video", 320, 180, extradata=extradata),
            TrackSpec("mic", "audio", extradata=opus_head(1)),
        ],
        zero=Fraction(0),
    )
    every = [("camera/high", p) for p in video] + [("mic", p) for p in audio]
    every.sort(key=lambda item: float((item[1].pts or 0) * (item[1].time_base or 1)))
    for name, packet in every:
        writer.write(name, packet)
    assert not writer.write("camera/high", video[0])  # time never runs backwards
    written = writer.close()
    assert written.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert written.size == path.stat().st_size

    with av.open(str(path)) as container:
        times = [
            float(frame.pts * frame.time_base)
            for frame in container.decode(container.streams.video[0])
            if frame.pts is not None and frame.time_base is not None
        ]
    assert len(times) == 120
    gaps = np.diff(times)
    assert 2.9 < gaps.max() < 3.1, gaps.max()  # the camera's absence, kept
    assert np.median(gaps) < 0.04  # the rest runs at 30 fps, not faster
    assert abs(times[-1] - (5 + 59 / 30)) < 0.01
    duration, packets = probe(path)
    # Opus's first packet carries its lookahead (pts -312): before time zero, left out
    assert (audio[0].pts or 0) < 0
    assert 6.9 < duration < 7.1 and packets == len(video) + len(audio) - 1
