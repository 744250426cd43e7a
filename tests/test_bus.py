"""The packet bus: bounded queues, joiners start at an IDR, laggards skip to the next."""

from __future__ import annotations

import asyncio
import functools

from webrtc import PacketBus
from webrtc.track import PacketTrack


class FakePacket:
    """Stands in for av.Packet: the bus only reads `is_keyframe` and `size`."""

    def __init__(self, n: int, keyframe: bool) -> None:
        self.n, self.is_keyframe, self.size = n, keyframe, 100


async def test_video_subscriber_starts_at_keyframe_and_skips_when_behind() -> None:
    requests: list[int] = []
    bus = PacketBus(
        "cam",
        "video",
        loop=asyncio.get_running_loop(),
        request_keyframe=lambda: requests.append(1),
        queue_size=5,
    )
    sub = bus.subscribe()
    assert requests == [1]  # a joiner asks for a fresh IDR
    for n in range(3):
        bus.publish(FakePacket(n, keyframe=False))  # type: ignore[arg-type]
    assert len(sub) == 0  # nothing before the first IDR
    bus.publish(FakePacket(3, keyframe=True))  # type: ignore[arg-type]
    for n in range(4, 12):  # a slow viewer: the queue overflows
        bus.publish(FakePacket(n, keyframe=False))  # type: ignore[arg-type]
    assert len(sub) == 0 and sub.waiting_for_keyframe and len(requests) == 2
    bus.publish(FakePacket(12, keyframe=True))  # type: ignore[arg-type]
    bus.publish(FakePacket(13, keyframe=False))  # type: ignore[arg-type]
    assert [(await sub.get()).n for _ in range(2)] == [12, 13]  # type: ignore[attr-defined]
    sub.close()
    assert bus.subscribers == 0


async def test_audio_drops_oldest_and_close_ends_get() -> None:
    bus = PacketBus("mic", "audio", loop=asyncio.get_running_loop(), queue_size=3)
    sub = bus.subscribe()
    for n in range(6):
        bus.publish(FakePacket(n, keyframe=True))  # type: ignore[arg-type]
    assert [(await sub.get()).n for _ in range(3)] == [3, 4, 5]  # type: ignore[attr-defined]
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    try:
        await asyncio.wait_for(waiter, 1)
        raise AssertionError("get() returned after close")
    except Exception as exc:  # MediaStreamError ends aiortc's sender loop
        assert type(exc).__name__ == "MediaStreamError"


async def test_publish_threadsafe_from_a_thread() -> None:
    bus = PacketBus("mic", "audio", loop=asyncio.get_running_loop())
    sub = bus.subscribe()
    await asyncio.to_thread(bus.publish_threadsafe, FakePacket(1, True))  # type: ignore[arg-type]
    assert (await asyncio.wait_for(sub.get(), 1)).n == 1  # type: ignore[attr-defined]


async def test_track_switches_renditions_on_a_keyframe_of_the_target() -> None:
    loop = asyncio.get_running_loop()
    requests: list[str] = []
    high, low = (
        PacketBus(
            f"room/camera/{name}",
            "video",
            loop=loop,
            request_keyframe=functools.partial(requests.append, name),
        )
        for name in ("high", "low")
    )
    track = PacketTrack("video", high)
    high.publish(FakePacket(1, keyframe=True))  # type: ignore[arg-type]
    assert (await track.recv()).n == 1  # type: ignore[attr-defined]
    track.switch(low)
    assert requests[-1] == "low" and track.target is low
    low.publish(FakePacket(10, keyframe=False))  # type: ignore[arg-type]
    high.publish(FakePacket(2, keyframe=False))  # type: ignore[arg-type]
    assert (await track.recv()).n == 2  # type: ignore[attr-defined]  # still high
    low.publish(FakePacket(11, keyframe=True))  # type: ignore[arg-type]
    high.publish(FakePacket(3, keyframe=False))  # type: ignore[arg-type]
    assert (await track.recv()).n == 11  # type: ignore[attr-defined]
    assert track.last_bus is low and high.subscribers == 0 and track.switches == 1

    track.switch(None)  # paused: recv waits
    low.publish(FakePacket(12, keyframe=True))  # type: ignore[arg-type]
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0.05)
    assert not waiting.done() and low.subscribers == 0
    track.switch(high)
    high.publish(FakePacket(4, keyframe=True))  # type: ignore[arg-type]
    assert (await asyncio.wait_for(waiting, 1)).n == 4  # type: ignore[attr-defined]
    track.stop()
    assert high.subscribers == 0


async def test_stills_are_not_repaired_once_they_play() -> None:
    requests: list[str] = []
    stills, video = (
        PacketBus(
            f"room/board/{name}",
            "video",
            loop=asyncio.get_running_loop(),
            request_keyframe=functools.partial(requests.append, name),
            self_contained=name == "stills",
        )
        for name in ("stills", "high")
    )
    for bus in (stills, video):
        track = PacketTrack("video", bus)
        assert requests.pop() == bus.rendition  # a subscriber asks for its first keyframe
        track.request_keyframe()  # a PLI before that keyframe came: passed on
        assert requests.pop() == bus.rendition
        track._last_request = -1e9  # past the rate limit
        bus.publish(FakePacket(1, keyframe=True))  # type: ignore[arg-type]
        assert (await track.recv()).n == 1  # type: ignore[attr-defined]
        track.request_keyframe()  # a PLI for a lost packet
        assert requests == ([] if bus is stills else ["high"])
        requests.clear()
        track.stop()


class ManualClock:
    """Stands in for the event loop's clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


def test_wire_bitrate_counts_a_whole_window() -> None:
    clock = ManualClock()
    stills = PacketBus("board/stills", "video", loop=clock, nominal_bitrate=50_000)  # type: ignore[arg-type]
    assert stills.wire_bitrate() == 50_000  # nothing seen yet: the nominal rate
    still = FakePacket(0, keyframe=True)
    still.size = 50_000
    for at in (0.0, 10.0, 11.0, 20.0, 30.0, 40.0):  # one each 10 s, and one for a joiner
        clock.now = at
        stills.publish(still)  # type: ignore[arg-type]
        if at == 11.0:  # young: the nominal rate stands in for the 14 s not seen yet
            assert 70_000 < stills.wire_bitrate() < 80_000
    clock.now = 41.0  # the window holds the stills of 20, 30 and 40 s
    per_still = (50_000 + 42 * 70) * 8
    assert stills.wire_bitrate() == 3 * per_still / 25


def test_a_bus_nobody_asks_keeps_only_a_window_of_packets() -> None:
    # the service's buses, whose viewers are in worker processes, are never asked for
    # their rate: they kept an entry for every packet, 0.6 MB a minute (bench/soak.py)
    clock = ManualClock()
    camera = PacketBus("camera/high", "video", loop=clock)  # type: ignore[arg-type]
    for frame in range(30 * 600):  # ten minutes at 30 fps
        clock.now = frame / 30
        camera.publish(FakePacket(frame, keyframe=frame % 60 == 0))  # type: ignore[arg-type]
    assert len(camera._recent) <= 30 * 25 + 1  # RATE_WINDOW's worth
    assert 29.9 < camera.packet_rate() <= 30.1
