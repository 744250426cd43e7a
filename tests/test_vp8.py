"""Every browser plays: VP8 twins for offers without H.264, encoded once and only while
needed; an offer with no video codec in common still gets the sound."""

from __future__ import annotations

import gc
import re
import threading
import time

import av
import httpx
import numpy as np
import pytest

from capture import BackgroundEncoder, Packet, VideoEncoder, set_temporal_layer, temporal_layer
from tests.conftest import Service
from tests.whep_client import Viewer, eventually
from webrtc import OnDemand
from webrtc.sdp import parse_offer, with_rejected, without_sections
from webrtc.session import video_codec

OFFER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n" + "".join(
    f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
    f"a=recvonly\r\na=rtcp-mux\r\n{maps}{candidate}"
    for mid, kind, pts, maps, candidate in (
        (
            "0",
            "video",
            "100 96",
            "a=rtpmap:100 H264/90000\r\n"
            "a=fmtp:100 packetization-mode=1;profile-level-id=640c1f\r\n"
            "a=rtpmap:96 VP8/90000\r\n",
            "a=candidate:1 1 udp 2113937151 10.0.0.2 5000 typ host\r\n",
        ),
        ("1", "video", "98", "a=rtpmap:98 VP9/90000\r\n", ""),
        ("2", "audio", "111", "a=rtpmap:111 opus/48000/2\r\n", ""),
    )
)


def test_codec_choice_and_the_rejected_lines_sdp() -> None:
    camera, board, _ = parse_offer(OFFER).media
    # H.264 High profile only is not what the encoders send: VP8 it is
    assert video_codec(camera) == "vp8" and video_codec(board) is None
    served = without_sections(OFFER, {"0", "1"})
    assert "a=group:BUNDLE 2\r\n" in served and "m=video" not in served
    # the candidates the offer listed on its first line now sit on the line left
    assert "a=candidate:1 1 udp 2113937151 10.0.0.2 5000 typ host" in served
    answer = (
        "v=0\r\no=- 2 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 2\r\n"
        "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 10.0.0.1\r\na=mid:2\r\n"
        "a=ice-ufrag:wxyz\r\na=ice-pwd:zyxwvutsrqponmlkjihgf\r\na=setup:active\r\n"
        "a=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
    )
    full = with_rejected(answer, OFFER, {"0", "1"})
    sections = full.split("\r\nm=")
    assert sections[0].endswith("a=group:BUNDLE 0 2")
    tag, rejected, audio = sections[1:]
    assert tag.startswith("video 4000 UDP/TLS/RTP/SAVPF 100\r\n") and "a=inactive" in tag
    assert "a=ice-ufrag:wxyz" in tag and "a=rtpmap:100 H264/90000" in tag
    assert rejected.startswith("video 0 UDP/TLS/RTP/SAVPF 98\r\n") and "a=mid:1" in rejected
    assert audio.startswith("audio 4000 ")


def test_twins_run_while_needed_and_linger() -> None:
    now = [100.0]
    calls: list[bool] = []
    twins = OnDemand("twins", calls.append, linger=30.0, clock=lambda: now[0])
    twins.check()
    assert calls == [] and not twins.active
    twins.acquire()
    twins.acquire()  # a second VP8 viewer shares them
    assert calls == [True] and twins.users == 2
    twins.release()
    now[0] += 100
    twins.check()
    assert calls == [True], "one viewer still watches"
    twins.release()
    now[0] += 29
    twins.check()
    assert calls == [True], "off only after the linger"
    twins.acquire()  # back within the linger (a rejoin): no restart
    twins.release()
    now[0] += 29.9
    twins.check()
    assert calls == [True]
    now[0] += 0.1
    twins.check()
    assert calls == [True, False] and not twins.active and twins.starts == 1
    twins.acquire()
    assert calls == [True, False, True] and twins.starts == 2


async def test_stop_switches_twins_off() -> None:
    calls: list[bool] = []
    twins = OnDemand("twins", calls.append, poll=0.01)
    await twins.start()
    twins.acquire()
    await twins.stop()
    assert calls == [True, False] and twins._tasks == []


def test_background_encoder_encodes_vp8_in_its_own_thread() -> None:
    got: list[tuple[str, Packet, str]] = []
    encoder = BackgroundEncoder(
        "camera/vp8/low", width=320, height=240, fps=30, bitrate=300_000, origin=0.0, codec="vp8"
    )
    encoder.sink = lambda name, packet: got.append((name, packet, threading.current_thread().name))
    decoder = av.CodecContext.create("vp8", "r")
    picture = np.zeros((240 * 3 // 2, 320), np.uint8)
    try:
        for i in range(15):
            picture[:240, i * 10 : i * 10 + 20] = 255  # something moves
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            now = time.monotonic()
            assert encoder.wants(now)
            assert encoder.encode(frame, now) == []  # handed over, nothing inline
            time.sleep(0.04)
        deadline = time.monotonic() + 5
        while encoder.frames < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        encoder.close()
    assert encoder.frames >= 10 and len(got) >= 10, (encoder.frames, encoder.dropped_frames)
    assert {name for name, _, _ in got} == {"camera/vp8/low"}
    assert {thread for _, _, thread in got} == {"encode-camera/vp8/low"}
    assert got[0][1].is_keyframe
    decoded = [f for _, packet, _ in got for f in decoder.decode(packet)]
    assert len(decoded) == len(got) and decoded[-1].width == 320
    assert encoder._thread is None and not any(
        t.name == "encode-camera/vp8/low" for t in threading.enumerate()
    )
    encoder.active = False  # a twin off: wanted no more, codec let go
    assert not encoder.wants(time.monotonic() + 1) and encoder._codec is None


async def test_temporal_layers_give_half_the_frames_from_one_encode() -> None:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    from webrtc import LayerView, PacketBus

    encoder = VideoEncoder(
        "camera/vp8/high", width=320, height=240, fps=30, bitrate=600_000, origin=0.0,
        codec="vp8", temporal_layers=2,
    )  # fmt: skip
    full = PacketBus("r/camera/vp8/high", "video", codec="vp8")
    half = LayerView("r/camera/vp8/half", full, nominal_bitrate=360_000)
    everything, base = full.subscribe(), half.subscribe()
    picture = np.zeros((240 * 3 // 2, 320), np.uint8)
    for i in range(24):
        picture[:240, i * 10 : i * 10 + 20] = 200
        if i == 13:
            encoder.request_keyframe()  # a forced keyframe on an odd frame
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        for packet in encoder.encode(frame, i / 30):
            full.publish(packet)
    got = [p for p in iter(everything.pop, None)]
    kept = [p for p in iter(base.pop, None)]
    assert len(got) == 24 and [temporal_layer(p) for p in got[:4]] == [0, 1, 0, 1]
    assert [p for p in got if temporal_layer(p) == 0 or p.is_keyframe] == kept and len(kept) == 13
    # the receiver is told each frame's layer; the base layer counts its own frames
    descriptors = [VpxPayloadDescriptor.parse(full.packer.pack(p)[0][0])[0] for p in got]
    assert [d.tid[0] for d in descriptors[:4]] == [0, 1, 0, 1]  # type: ignore[index]
    tl0 = [d.tl0picidx or 0 for d in descriptors]
    assert tl0[1] == tl0[0] and tl0[2] == (tl0[0] + 1) % 256
    ids = [d.picture_id or 0 for d in descriptors]
    assert ids[1] == (ids[0] + 1) % (1 << 15)  # one numbering, shared by both buses
    # the base layer alone decodes to the very pictures the whole stream gives: its
    # frames refer to base frames only, also after the keyframe that restarted the
    # pattern (libvpx without a layering pattern chains every frame to the one before,
    # and a base layer alone then decodes to garbage, or not at all in a browser)
    whole, alone = av.CodecContext.create("vp8", "r"), av.CodecContext.create("vp8", "r")
    pictures = {id(p): whole.decode(p)[0].to_ndarray() for p in got}
    decoded = [(p, f.to_ndarray()) for p in kept for f in alone.decode(p)]
    assert len(decoded) == len(kept) and half.wire_bitrate() > 0
    assert all(np.array_equal(pictures[id(p)], picture) for p, picture in decoded)


def video_codecs(answer: str) -> list[set[str]]:
    """The codec names each video m-section of an SDP answers with (rtx aside)."""
    sections = answer.split("\r\nm=")[1:]
    return [
        {c.upper() for c in re.findall(r"a=rtpmap:\d+ ([\w-]+)/", s)} - {"RTX"}
        for s in sections
        if s.startswith("video")
    ]


def renditions(service: Service) -> dict[str, dict[str, object]]:
    room = service.health(detail=True)["rooms"]["demo"]  # type: ignore[index]
    return room["renditions"]  # type: ignore[no-any-return]


async def test_vp8_viewer_gets_the_shared_twins(demo_service: Service) -> None:
    before = renditions(demo_service)
    assert {"camera/vp8/high", "board/vp8/high"} <= set(before)
    assert all(r["packets"] == 0 for name, r in before.items() if "/vp8/" in name), (
        "twins run before anyone needs them"
    )
    vp8 = [Viewer(demo_service.whep(), demo_service.token(), video_codec="vp8") for _ in range(2)]
    h264 = Viewer(demo_service.whep(), demo_service.token(), audio=False)
    try:
        for viewer in (*vp8, h264):
            response = await viewer.connect()
            assert response.status_code == 201, response.text
        assert video_codecs(vp8[0].response.text) == [{"VP8"}, {"VP8"}]  # type: ignore[union-attr]
        assert video_codecs(h264.response.text) == [{"H264"}, {"H264"}]  # type: ignore[union-attr]
        assert await eventually(
            lambda: all(
                v.stats[name].frames >= 10 for v in (*vp8, h264) for name in ("camera", "board")
            ),
            20,
        ), {name: s.frames for v in (*vp8, h264) for name, s in v.stats.items()}
        assert vp8[0].stats["camera"].width == 1280 and vp8[0].stats["board"].width >= 1280
        assert await eventually(lambda: vp8[0].stats["audio"].frames >= 25, 10)
        now = renditions(demo_service)
        watched = {name: r["viewers"] for name, r in now.items() if "/vp8/" in name}
        # both VP8 viewers on the same twin buses (one encode each), none on H.264's share
        assert watched["camera/vp8/high"] == 2 and watched["board/vp8/high"] == 2, watched
        assert now["camera/high"]["viewers"] == before["camera/high"]["viewers"] + 1  # type: ignore[operator]
        async with httpx.AsyncClient(timeout=10) as client:
            state = (await client.get(vp8[0].location or "")).json()
        assert state["codecs"] == ["vp8", "vp8"] and state["video"]["camera"] == "high"
    finally:
        for viewer in (*vp8, h264):
            await viewer.close()


async def test_audio_only_offer_gets_audio(demo_service: Service) -> None:
    viewer = Viewer(demo_service.whep(), demo_service.token(), video_lines=0)
    try:
        response = await viewer.connect()
        assert response.status_code == 201, response.text
        assert await eventually(lambda: viewer.stats["audio"].frames >= 25, 10)
    finally:
        await viewer.close()


async def test_no_video_codec_in_common_still_answers_audio(demo_service: Service) -> None:
    viewer = Viewer(demo_service.whep(), demo_service.token())
    await viewer.offer()
    offer = viewer.pc.localDescription.sdp
    await viewer.pc.close()
    # what a browser offering only VP9 and AV1 sends: the same lines, other codecs
    offer = re.sub(r"(a=rtpmap:\d+ )(?:VP8|H264)/90000", r"\1VP9/90000", offer)
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            demo_service.whep(),
            content=offer,
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {demo_service.token()}",
            },
        )
        assert response.status_code == 201, response.text
        answer = response.text
        sections = answer.split("\r\nm=")[1:]
        ports = [section.split(" ")[:2] for section in sections]
        mids = [re.findall(r"a=mid:(\S+)", section)[0] for section in sections]
        # the board's line is rejected; the camera's, the offer's BUNDLE tag, stays in the
        # bundle (browsers cannot move it) but inactive: nothing is ever sent on it
        assert ports[1] == ["video", "0"] and "a=inactive" in sections[1], ports
        assert ports[0][0] == "video" and "a=inactive" in sections[0], sections[0]
        assert "VP9/90000" in sections[0] and "H264" not in answer and "VP8" not in answer
        audio = sections[2]
        assert ports[2][0] == "audio" and ports[2][1] != "0", ports
        assert "opus/48000" in audio and "a=sendonly" in audio
        bundle = re.search(r"a=group:BUNDLE ([^\r\n]*)", answer)
        assert bundle is not None and bundle.group(1).split() == [mids[0], mids[2]], answer
        state = (
            await client.get(str(httpx.URL(demo_service.whep()).join(response.headers["location"])))
        ).json()
        assert state["codecs"] == [None, None] and state["video"] == {"camera": None, "board": None}
        await client.delete(str(httpx.URL(demo_service.whep()).join(response.headers["location"])))


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def test_a_packets_layer_outlives_other_packets() -> None:
    # PyAV keys `opaque` by the value's id() and drops the key when any packet holding
    # it is freed: with plain ints, one freed base-layer packet unmarked all the others
    # (and a "half" viewer was sent keyframes it could not place, so hardly any frame)
    packets = [av.Packet(b"x") for _ in range(4)]
    for i, packet in enumerate(packets):
        set_temporal_layer(packet, i % 2)
    del packets[0]
    gc.collect()
    assert [temporal_layer(p) for p in packets] == [1, 0, 1]
    set_temporal_layer(packets[1], None)
    assert temporal_layer(packets[1]) is None and temporal_layer(av.Packet(b"y")) is None
