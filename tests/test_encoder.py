"""The shared encoders: H.264 constrained baseline, IDRs with SPS/PPS, keyframes on request."""

from __future__ import annotations

import itertools
import time

import av
import numpy as np

from capture import AudioEncoder, TestCamera, TestTone, VideoEncoder, read_timestamp
from capture.encoder import Packet


def nal_types(packet: Packet) -> list[int]:
    data = bytes(packet)
    types, i = [], data.find(b"\x00\x00\x01")
    while i != -1:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def frames(seconds: float, fps: float = 30.0) -> list[tuple[av.VideoFrame, float]]:
    camera = TestCamera(width=640, height=360)
    planes = camera._background
    out = []
    for i in range(int(seconds * fps)):
        out.append((av.VideoFrame.from_ndarray(planes.copy(), format="yuv420p"), i / fps))
    return out


def encode(
    encoder: VideoEncoder,
    items: list[tuple[av.VideoFrame, float]],
    request_at: set[int] | None = None,
) -> list[tuple[float, Packet]]:
    packets = []
    for index, (frame, at) in enumerate(items):
        if request_at and index in request_at:
            encoder.request_keyframe()
        packets += [(at, p) for p in encoder.encode(frame, at)]
    return packets


def test_h264_stream_shape() -> None:
    encoder = VideoEncoder(
        "v", width=640, height=360, fps=30, bitrate=300_000, origin=0.0, keyframe_interval=2.0
    )
    packets = encode(encoder, frames(7))
    keyframes = [at for at, p in packets if p.is_keyframe]
    assert keyframes[0] == 0.0
    assert max(b - a for a, b in itertools.pairwise(keyframes)) <= 2.0 + 1e-6
    for at, packet in packets:
        types = nal_types(packet)
        if packet.is_keyframe:  # Annex-B, SPS and PPS in-band before every IDR
            assert types[:2] == [7, 8] and 5 in types, types
        else:
            assert 5 not in types and 7 not in types
        assert packet.pts == packet.dts == round(at * 90000)  # no B-frames: no reordering
    sps = bytes(packets[0][1])
    start = sps.find(b"\x00\x00\x01\x67") + 4
    profile_idc, constraints = sps[start], sps[start + 1]
    assert profile_idc == 66 and constraints & 0x40  # constrained baseline (42e0..)
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for _, p in packets for f in decoder.decode(p)]
    assert len(decoded) == len(packets) and decoded[0].width == 640


def test_keyframe_on_request_is_rate_limited() -> None:
    encoder = VideoEncoder(
        "v",
        width=640,
        height=360,
        fps=30,
        bitrate=300_000,
        origin=0.0,
        keyframe_interval=10.0,
        min_forced_interval=1.0,
    )
    # requests at frames 15, 16, 17 (0.5 s) and 45 (1.5 s) and 90 (3 s)
    packets = encode(encoder, frames(4), request_at={15, 16, 17, 45, 90})
    keyframes = [at for at, p in packets if p.is_keyframe]
    # the first IDR (0 s) is periodic; 0.5 s requests wait until 1 s after the last forced
    assert keyframes[0] == 0.0
    assert len(keyframes) == 4, keyframes
    forced = keyframes[1:]
    assert all(b - a >= 1.0 - 1e-6 for a, b in itertools.pairwise(forced))
    assert forced[0] <= 0.5 + 1 / 30 + 1e-6  # nothing forced before, so served at once
    assert encoder.keyframe_requests == 5


def test_burned_clock_survives_encoding() -> None:
    got: list[av.VideoFrame] = []
    camera = TestCamera(width=1280, height=720, fps=30)
    camera.start(lambda frame, at: got.append(frame))  # type: ignore[arg-type]
    time.sleep(0.5)
    camera.stop()
    assert len(got) >= 8
    encoder = VideoEncoder("v", width=640, height=360, fps=30, bitrate=300_000, origin=0.0)
    decoder = av.CodecContext.create("h264", "r")
    for i, frame in enumerate(got):
        for packet in encoder.encode(frame, i / 30):
            for decoded in decoder.decode(packet):
                clock = read_timestamp(np.asarray(decoded.to_ndarray(format="gray"), np.uint8))
                assert abs(clock / 1000 - time.time()) < 5


def test_opus_packets_are_20ms_and_continuous() -> None:
    tone = TestTone()
    got: list[tuple[av.AudioFrame, float]] = []
    tone.start(lambda frame, at: got.append((frame, at)))  # type: ignore[arg-type]
    time.sleep(0.5)
    tone.stop()
    encoder = AudioEncoder("a", origin=got[0][1])
    packets = [p for frame, at in got for p in encoder.encode(frame, at)]
    assert len(packets) >= len(got) - 3
    pts = [p.pts or 0 for p in packets]
    assert all(b - a == 960 for a, b in itertools.pairwise(pts))
    decoder = av.CodecContext.create("opus", "r")
    samples = sum(f.samples for p in packets for f in decoder.decode(p))
    assert samples == 960 * len(packets)
