"""N aiortc WHEP viewers in one process, driven by bench/fanout.py over stdin/stdout.

Viewer 0 decodes everything (the health check: decoded fps, glass-to-glass latency
from the burned-in capture clock; `--decoders K` makes the first K decode, 0 none). The
others do not decode: aiortc's receiver still depacketizes and reassembles frames in its
jitter buffer, but the decoder thread (`aiortc.rtcrtpreceiver.decoder_worker`) is
replaced by a drain that only counts the reassembled frames. Every receiver counts its
RTP packets, payload bytes, keyframes (packets carrying an SPS) and the PLIs and NACKs
it sends, and notes when its first packet and its first keyframe (first and last
packet) arrived.

Importing this module patches aiortc for the whole process (`uninstall()` undoes it).

Protocol (JSON lines on stdout): once connected, `{"event": "ready", ...}`; then each
`snap` line on stdin answers `{"event": "snap", ...}` with cumulative counters, each
`frames SINCE` (a `time.monotonic()`, one clock for every process) answers
`{"event": "frames", ...}` with the times viewer 0 decoded each video frame since then
and its clock reads (time, glass-to-glass ms), and `quit` (or end of stdin) closes the
sessions, prints `{"event": "bye"}` and exits.

    python bench/viewers.py --whep http://127.0.0.1:8080/whep/demo --token T --count 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCRtpReceiver, rtcrtpreceiver
from aiortc.rtp import RtpPacket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.whep_client import Viewer
from webrtc import gather_only

TRACKS = ("camera", "board", "audio")

# ------------------------------------------------------------ aiortc patches

_decoder_worker = rtcrtpreceiver.decoder_worker
_handle_rtp_packet = RTCRtpReceiver._handle_rtp_packet
_send_rtcp_pli = RTCRtpReceiver._send_rtcp_pli
_send_rtcp_nack = RTCRtpReceiver._send_rtcp_nack
H264_SPS, H264_STAP_A = 7, 24


@dataclass
class ReceiverCounts:
    packets: int = 0
    bytes: int = 0  # RTP payload
    keyframes: int = 0  # RTP packets carrying an H.264 SPS (sent before every IDR)
    plis: int = 0  # picture loss indications this receiver sent
    nacks: int = 0  # NACK requests it sent


first_packet_at: dict[int, float] = {}
"""`id()` of a receiver → `time.monotonic()` when its first RTP packet arrived."""
first_keyframe_at: dict[int, float] = {}
"""`id()` of a receiver → `time.monotonic()` when its first packet carrying an SPS arrived."""
first_keyframe_done_at: dict[int, float] = {}
"""`id()` of a receiver → when the last packet (RTP marker) of that first keyframe arrived."""
first_keyframe_bytes: dict[int, int] = {}
"""`id()` of a receiver → RTP payload bytes of that first keyframe (SPS to marker)."""
decoding_queues: set[int] = set()
"""`id()` of the track queues whose receiver really decodes."""
drained_frames: dict[int, int] = {}
"""`id()` of a track queue → reassembled frames the drain counted."""
receiver_counts: dict[int, ReceiverCounts] = {}
"""`id()` of a receiver → its counters."""


def drain_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    """Stands in for aiortc's decoder thread: count reassembled frames, decode none
    (except for the receivers listed in `decoding_queues`)."""
    key = id(output_q)
    if key in decoding_queues:
        _decoder_worker(loop, input_q, output_q, decode_error)
        return
    drained_frames.setdefault(key, 0)
    while input_q.get() is not None:
        drained_frames[key] += 1
    with contextlib.suppress(RuntimeError):  # the loop is gone
        asyncio.run_coroutine_threadsafe(output_q.put(None), loop)


def queue_key(receiver: RTCRtpReceiver) -> int:
    """What the decoder thread of `receiver` knows it by: its track's frame queue."""
    return id(receiver.track._queue)  # type: ignore[attr-defined]


def counts_of(receiver: RTCRtpReceiver) -> ReceiverCounts:
    return receiver_counts.setdefault(id(receiver), ReceiverCounts())


def carries_sps(payload: bytes) -> bool:
    if len(payload) < 4:
        return False
    nal = payload[0] & 0x1F
    return nal == H264_SPS or (nal == H264_STAP_A and payload[3] & 0x1F == H264_SPS)


async def counting_handle_rtp_packet(
    self: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int
) -> None:
    counts = counts_of(self)
    if not counts.packets:
        first_packet_at[id(self)] = time.monotonic()
    counts.packets += 1
    counts.bytes += len(packet.payload)
    if self.track is not None and self.track.kind == "video" and carries_sps(packet.payload):
        if not counts.keyframes:
            first_keyframe_at[id(self)] = time.monotonic()
        counts.keyframes += 1
    key = id(self)
    if key in first_keyframe_at and key not in first_keyframe_done_at:
        first_keyframe_bytes[key] = first_keyframe_bytes.get(key, 0) + len(packet.payload)
        if packet.marker:
            first_keyframe_done_at[key] = time.monotonic()
    await _handle_rtp_packet(self, packet, arrival_time_ms)


async def counting_send_rtcp_pli(self: RTCRtpReceiver, media_ssrc: int) -> None:
    counts_of(self).plis += 1
    await _send_rtcp_pli(self, media_ssrc)


async def counting_send_rtcp_nack(self: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    counts_of(self).nacks += 1
    await _send_rtcp_nack(self, media_ssrc, lost)


def install() -> None:
    """Patch aiortc's receivers (done on import; again after `uninstall()`)."""
    rtcrtpreceiver.decoder_worker = drain_worker
    RTCRtpReceiver._handle_rtp_packet = counting_handle_rtp_packet  # type: ignore[method-assign]
    RTCRtpReceiver._send_rtcp_pli = counting_send_rtcp_pli  # type: ignore[method-assign]
    RTCRtpReceiver._send_rtcp_nack = counting_send_rtcp_nack  # type: ignore[method-assign]


def uninstall() -> None:
    """Give aiortc its own decoder thread and receive path back (for tests sharing a process)."""
    rtcrtpreceiver.decoder_worker = _decoder_worker
    RTCRtpReceiver._handle_rtp_packet = _handle_rtp_packet  # type: ignore[method-assign]
    RTCRtpReceiver._send_rtcp_pli = _send_rtcp_pli  # type: ignore[method-assign]
    RTCRtpReceiver._send_rtcp_nack = _send_rtcp_nack  # type: ignore[method-assign]


install()

# ------------------------------------------------------------ viewers


class Load:
    def __init__(
        self,
        whep: str,
        token: str,
        count: int,
        concurrency: int,
        decoders: int = 1,
        save_data: int = 0,
        clock_every: int | None = None,
    ) -> None:
        # the last `save_data` viewers ask for the cheapest renditions (camera low, stills)
        saving = f"{whep}?save_data=1"
        clock: dict[str, Any] = {}
        if clock_every is not None:  # read the clock more often: find its size once
            clock = {"clock_every": clock_every, "cache_clock_square": True}
        self.viewers = [
            Viewer(saving if index >= count - save_data else whep, token, **clock)
            for index in range(count)
        ]
        self.decoders = decoders  # the first `decoders` viewers decode
        self.errors: list[str] = []
        self._concurrency = asyncio.Semaphore(concurrency)

    @property
    def decoder(self) -> Viewer:
        return self.viewers[0]

    def _receivers(self, viewer: Viewer) -> list[RTCRtpReceiver]:
        if not hasattr(viewer, "pc"):
            return []
        return [t.receiver for t in viewer.pc.getTransceivers()]

    async def _connect(self, index: int, viewer: Viewer, client: httpx.AsyncClient) -> None:
        async with self._concurrency:
            try:
                response = await viewer.connect(client)
            except Exception as exc:
                self.errors.append(f"viewer {index}: {type(exc).__name__}: {exc}")
                return
            if response.status_code != 201:
                self.errors.append(f"viewer {index}: HTTP {response.status_code} {response.text}")
                return
            if index < self.decoders:  # before the receivers start (after ICE and DTLS)
                for receiver in self._receivers(viewer):
                    decoding_queues.add(queue_key(receiver))

    def _flowing(self, viewer: Viewer) -> bool:
        receivers = self._receivers(viewer)
        return (
            viewer.location is not None
            and viewer.pc.connectionState == "connected"
            and len(receivers) == len(TRACKS)
            and all(counts_of(r).packets > 0 for r in receivers)
        )

    async def connect(self, client: httpx.AsyncClient, limit: float) -> dict[str, Any]:
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(self._connect(i, v, client) for i, v in enumerate(self.viewers))),
            limit,
        )
        while time.monotonic() - started < limit:
            if all(self._flowing(v) for v in self.viewers if v.location):
                break
            await asyncio.sleep(0.2)
        flowing = sum(1 for v in self.viewers if self._flowing(v))
        return {
            "event": "ready",
            "viewers": len(self.viewers),
            "flowing": flowing,
            "seconds": round(time.monotonic() - started, 2),
            "errors": self.errors,
        }

    def snapshot(self) -> dict[str, Any]:
        viewers = []
        for index, viewer in enumerate(self.viewers):
            tracks: dict[str, dict[str, int]] = {}
            for name, receiver in zip(TRACKS, self._receivers(viewer), strict=False):
                track = tracks[name] = asdict(counts_of(receiver))
                if index < self.decoders:
                    track["frames"] = viewer.stats[name].frames
                elif receiver.track is not None:
                    track["frames"] = drained_frames.get(queue_key(receiver), 0)
            state = viewer.pc.connectionState if hasattr(viewer, "pc") else "none"
            viewers.append({"state": state, "tracks": tracks})
        latencies = {
            name: [round(x, 1) for x in self.decoder.stats[name].latencies_ms]
            for name in ("camera", "board")
            if name in self.decoder.stats
        }
        return {
            "event": "snap",
            "t": time.monotonic(),
            "viewers": viewers,
            "decoder_latencies_ms": latencies,
        }

    def frames(self, since: float) -> dict[str, Any]:
        """When viewer 0 decoded each video frame since `since`, and its clock reads."""
        arrivals, clocks = {}, {}
        for name in ("camera", "board"):
            stats = self.decoder.stats.get(name)
            if stats is None:
                continue
            arrivals[name] = [round(at, 4) for at in stats.arrivals if at >= since]
            clocks[name] = [
                (round(at, 4), round(ms, 1))
                for at, ms in zip(stats.clock_at, stats.latencies_ms, strict=True)
                if at >= since
            ]
        return {"event": "frames", "t": time.monotonic(), "arrivals": arrivals, "clock": clocks}

    async def close(self, client: httpx.AsyncClient) -> None:
        async def close_one(viewer: Viewer) -> None:
            if hasattr(viewer, "pc"):
                with contextlib.suppress(Exception):
                    await viewer.close(client)

        await asyncio.gather(*(close_one(v) for v in self.viewers))


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    gather_only(["127.0.0.1"])
    load = Load(
        args.whep,
        args.token,
        args.count,
        args.concurrency,
        args.decoders,
        args.save_data,
        args.clock_every,
    )
    async with httpx.AsyncClient(timeout=20) as client:
        try:
            emit(await load.connect(client, args.connect_timeout))
        except TimeoutError:
            emit({"event": "ready", "viewers": args.count, "flowing": 0, "errors": ["timeout"]})
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.strip()
            if command == "snap":
                emit(load.snapshot())
            elif command.startswith("frames "):
                emit(load.frames(float(command.split()[1])))
            elif command in ("quit", ""):
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.close(client), 15)
    emit({"event": "bye"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whep", required=True, help="WHEP endpoint URL")
    parser.add_argument("--token", required=True, help="bearer token")
    parser.add_argument("--count", type=int, required=True, help="viewers (see --decoders)")
    parser.add_argument("--concurrency", type=int, default=4, help="offers in flight at once")
    parser.add_argument(
        "--decoders", type=int, default=1, help="how many of them (the first ones) decode"
    )
    parser.add_argument(
        "--save-data", type=int, default=0, help="how many of them (the last ones) save data"
    )
    parser.add_argument(
        "--clock-every",
        type=int,
        default=None,
        help="decoders read the clock of every N-th video frame (default: every 10th)",
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="exit no matter what after this long"
    )
    args = parser.parse_args()
    watchdog = threading.Timer(args.max_seconds, os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()
    asyncio.run(run(args))
    # aiortc decoder threads are not daemons; never let one keep the process alive
    os._exit(0)


if __name__ == "__main__":
    main()
