"""Cheap load viewers: N WHEP viewers in one process that count RTP without decrypting it.

Each viewer makes its offer and answer with aiortc (recvonly video, video, audio, as
bench/viewers.py does) and lets aiortc do ICE and DTLS. Once the peer connection is
connected, `CheapPath` takes the data path over at the lowest layer there is in Python:
it replaces `datagram_received` of the ICE connection's UDP protocols (aioice), so SRTP
is never unprotected and aiortc's RTP parsing, jitter buffers, NACK generator and
decoder threads never see a packet. From the clear 12-byte RTP header it counts packets,
payload bytes and frames (RTP marker bits; audio: packets) per SSRC, tracks the highest
sequence number, loss and interarrival jitter (RFC 3550 A.1 and A.8), and about once a
second sends one receiver report with a block per SSRC, protected with the session's
SRTCP context. The server's RTCP (rare) is unprotected and its sender reports give the
LSR/DLSR fields, so the server can measure the round trip. STUN (consent) and DTLS
datagrams still go to aiortc.

aiortc 1.16 / aioice 0.13 private parts used (tests/test_cheap_viewer.py guards them):
`RTCIceTransport._connection` (the aioice `Connection`), `Connection._protocols` (its
`StunProtocol`s, whose `datagram_received` asyncio calls), `RTCDtlsTransport._rx_srtp`
(SRTCP unprotect), `RTCDtlsTransport._send_rtp` (SRTCP protect and send) and
`RTCDtlsTransport._ssl` (the negotiated SRTP profile: its auth tag length).

Protocol (JSON lines on stdout), as bench/viewers.py's: once connected,
`{"event": "ready", ...}`; each `snap` on stdin answers `{"event": "snap", ...}` with
cumulative counters per viewer and track and `cpu_seconds` (user+sys of this process);
`quit` (or end of stdin) closes the sessions and prints `{"event": "bye"}`.

    python bench/cheap_viewer.py --whep http://127.0.0.1:8080/whep/demo --token T --count 30
    python bench/cheap_viewer.py --count 10 --seconds 10    # own demo service: CPU per viewer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from struct import Struct
from typing import Any

import httpx
from aiortc import RTCPeerConnection
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, clamp_packets_lost

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from webrtc import gather_only
from webrtc.viewer import WhepViewer

TRACKS = ("camera", "board", "audio")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RTCP_SR = 200
MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"
TAG_BYTES = {  # SRTP auth tag of each DTLS-SRTP profile
    b"SRTP_AEAD_AES_256_GCM": 16,
    b"SRTP_AEAD_AES_128_GCM": 16,
    b"SRTP_AES128_CM_SHA1_80": 10,
    b"SRTP_AES128_CM_SHA1_32": 4,
}
TIMESTAMP = Struct("!I")
SENDER_REPORT = Struct("!IQ")  # sender SSRC, NTP timestamp


def process_cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of every thread of `pid` (this process by default), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


# ------------------------------------------------------------ one stream


class Stream:
    """What one SSRC brought: counts, sequence numbers, loss and jitter (RFC 3550)."""

    __slots__ = (
        "base_seq",
        "bytes",
        "clock_rate",
        "cycles",
        "expected_prior",
        "frames",
        "jitter_q4",
        "last_arrival",
        "last_timestamp",
        "lost_prior",
        "max_seq",
        "name",
        "packets",
        "pretend",
        "pretend_from",
        "ssrc",
        "tag",
        "video",
    )

    def __init__(self, ssrc: int, name: str, video: bool, tag: int, data: bytes) -> None:
        self.ssrc, self.name, self.video, self.tag = ssrc, name, video, tag
        self.clock_rate = 90_000 if video else 48_000
        self.packets = self.bytes = self.frames = self.cycles = self.jitter_q4 = 0
        self.expected_prior = self.lost_prior = 0
        self.pretend, self.pretend_from = 0.0, 0
        seq = (data[2] << 8) | data[3]
        self.base_seq = self.max_seq = (seq - 1) & 0xFFFF
        self.cycles = -0x10000 if seq == 0 else 0  # the first packet "wraps" to 0
        self.last_timestamp = -1
        self.last_arrival = 0
        self.add(data)
        self.base_seq = seq

    def add(self, data: bytes) -> None:
        """Count one SRTP packet (its header is in the clear)."""
        self.packets += 1
        first = data[0]
        header = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= header + 4:
            header += 4 + 4 * ((data[header + 2] << 8) | data[header + 3])
        self.bytes += len(data) - header - self.tag
        if not self.video or data[1] & 0x80:
            self.frames += 1
        seq = (data[2] << 8) | data[3]
        if (seq - self.max_seq) & 0xFFFF >= 0x8000:
            return  # late or repeated: no news for the highest number or jitter
        if seq < self.max_seq:
            self.cycles += 0x10000
        self.max_seq = seq
        timestamp = TIMESTAMP.unpack_from(data, 4)[0]
        if timestamp != self.last_timestamp:  # once per frame: the first packet
            arrival = int(time.monotonic() * self.clock_rate)
            if self.last_timestamp >= 0:
                transit = (arrival - self.last_arrival) - (
                    ((timestamp - self.last_timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                )
                self.jitter_q4 += abs(transit) - ((self.jitter_q4 + 8) >> 4)
            self.last_arrival, self.last_timestamp = arrival, timestamp

    @property
    def highest(self) -> int:
        """The extended highest sequence number received."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.highest - self.base_seq + 1

    def pretend_loss(self, share: float) -> None:
        """Claim as many packets lost as `share` of those received from now on, on top of
        the real loss (a test's way to see the server read the reports; counted from
        what came, not from the sequence numbers, which a server may make skip)."""
        self.pretend, self.pretend_from = share, self.packets

    def report(self, lsr: int, dlsr: int) -> RtcpReceiverInfo:
        """This stream's receiver report block (RFC 3550 6.4.2)."""
        expected = self.expected
        lost = expected - self.packets
        if self.pretend:
            lost += round((self.packets - self.pretend_from) * self.pretend)
        expected_interval = expected - self.expected_prior
        lost_interval = lost - self.lost_prior
        self.expected_prior, self.lost_prior = expected, lost
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=clamp_packets_lost(lost),
            highest_sequence=self.highest & 0xFFFFFFFF,
            jitter=self.jitter_q4 >> 4,
            lsr=lsr,
            dlsr=dlsr,
        )


# ------------------------------------------------------------ the SDP: which SSRC is which


@dataclass
class Section:
    mid: str
    video: bool
    ssrcs: set[int] = field(default_factory=set)
    payload_types: set[int] = field(default_factory=set)


@dataclass
class Layout:
    """The media sections of the remote description, to tell an SSRC's track."""

    sections: list[Section]
    mid_extension: int | None  # the header extension id that carries the mid

    @classmethod
    def parse(cls, sdp: str) -> Layout:
        sections: list[Section] = []
        mid_extension: int | None = None
        current: Section | None = None
        for line in sdp.splitlines():
            if line.startswith("m="):
                kind, _, _, *formats = line[2:].split()
                types = {int(t) for t in formats if t.isdigit()}
                current = Section("", kind == "video", payload_types=types)
                sections.append(current)
            elif current is None:
                continue
            elif line.startswith("a=mid:"):
                current.mid = line[6:].strip()
            elif line.startswith("a=ssrc:"):
                current.ssrcs.add(int(line[7:].split()[0]))
            elif line.startswith("a=extmap:") and line.split()[-1] == MID_EXTENSION:
                mid_extension = int(re.split("[ /]", line[9:])[0])
        return cls(sections, mid_extension)

    def section(self, ssrc: int, data: bytes) -> Section | None:
        """By the SSRCs the SDP names, else by the mid in the header extension, else by
        a payload type only one section has."""
        for section in self.sections:
            if ssrc in section.ssrcs:
                return section
        if self.mid_extension is not None:
            mid = header_extension(data, self.mid_extension)
            for section in self.sections:
                if mid is not None and section.mid == mid.decode(errors="replace"):
                    return section
        payload_type = data[1] & 0x7F
        having = [s for s in self.sections if payload_type in s.payload_types]
        return having[0] if len(having) == 1 else None


def header_extension(data: bytes, wanted: int) -> bytes | None:
    """The value of header extension `wanted` (RFC 8285, one- or two-byte form)."""
    if not data[0] & 0x10:
        return None
    pos = 12 + 4 * (data[0] & 0x0F)
    if len(data) < pos + 4:
        return None
    profile = (data[pos] << 8) | data[pos + 1]
    end = min(len(data), pos + 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3]))
    pos += 4
    one_byte = profile == 0xBEDE
    if not one_byte and profile & 0xFFF0 != 0x1000:
        return None
    while pos < end:
        if data[pos] == 0:  # padding
            pos += 1
            continue
        if one_byte:
            ident, length, pos = data[pos] >> 4, (data[pos] & 0x0F) + 1, pos + 1
            if ident == 15:
                return None
        else:
            if pos + 1 >= end:
                return None
            ident, length, pos = data[pos], data[pos + 1], pos + 2
        if ident == wanted:
            return data[pos : pos + length]
        pos += length
    return None


# ------------------------------------------------------------ the data path


class CheapPath:
    """Takes over the receive path of a peer connection once it is connected (see the
    module's docstring); `names` maps the mids to track names."""

    def __init__(self, pc: RTCPeerConnection, names: Mapping[str, str] | None = None) -> None:
        self.pc = pc
        self.names = dict(names or {})
        self.streams: dict[int, Stream] = {}
        self.pretended = 0.0  # share of the packets claimed lost (`pretend_loss`)
        self.ssrc = random.getrandbits(32)  # ours, as the reporter
        self.sender_reports = 0  # SRs from the server, unprotected
        self.receiver_reports = 0  # RRs we sent
        self.rtcp_errors = 0
        self.unknown = 0  # packets of an SSRC no section claims (counted under its SSRC)
        self.taken_at: float | None = None
        self.first_at: dict[str, float] = {}  # track name -> when its first packet came
        self._lsr: dict[int, tuple[int, float]] = {}  # sender SSRC -> (LSR, when)
        self._task: asyncio.Task[None] | None = None
        self._layout: Layout | None = None
        self._tag = 0
        self.dtls: Any = None  # the RTCDtlsTransport, once connected
        if pc.connectionState == "connected":
            self._take_over()
        else:
            pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        if self.pc.connectionState == "connected" and self.taken_at is None:
            self._take_over()
        elif self.pc.connectionState in ("closed", "failed"):
            self.stop()

    def _take_over(self) -> None:
        dtls: Any = self.pc.getTransceivers()[0].receiver.transport
        self.dtls = dtls
        self._layout = Layout.parse(self.pc.remoteDescription.sdp)
        self._tag = TAG_BYTES.get(dtls._ssl.get_selected_srtp_profile(), 10)
        connection = dtls.transport._connection  # aioice
        for protocol in connection._protocols:
            protocol.datagram_received = self._hook(protocol.datagram_received)
        self.taken_at = time.monotonic()
        self._task = asyncio.ensure_future(self._report_loop())

    def _hook(
        self, passthrough: Callable[[bytes, tuple[Any, ...]], None]
    ) -> Callable[[bytes, tuple[Any, ...]], None]:
        streams = self.streams
        rtcp = self._rtcp
        new_stream = self._new_stream

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if 127 < data[0] < 192 and len(data) >= 12:
                if 191 < data[1] < 224:
                    rtcp(data)
                    return
                stream = streams.get(int.from_bytes(data[8:12], "big"))
                if stream is None:
                    new_stream(data)
                else:
                    stream.add(data)
                return
            passthrough(data, addr)  # STUN, DTLS

        return datagram_received

    def _new_stream(self, data: bytes) -> None:
        assert self._layout is not None
        ssrc = int.from_bytes(data[8:12], "big")
        section = self._layout.section(ssrc, data)
        if section is None:
            self.unknown += 1
            name, video = f"ssrc-{ssrc}", bool(data[1] & 0x80)
        else:
            name, video = self.names.get(section.mid, section.mid), section.video
        self.first_at.setdefault(name, time.monotonic())
        stream = self.streams[ssrc] = Stream(ssrc, name, video, self._tag, data)
        if self.pretended:
            stream.pretend_loss(self.pretended)

    def pretend_loss(self, share: float) -> None:
        """From now on, report `share` of the packets of every stream lost on top of the
        real loss: the server's rate controller must see it (tests/test_cheap_viewer.py)."""
        self.pretended = share
        for stream in list(self.streams.values()):
            stream.pretend_loss(share)

    def _rtcp(self, data: bytes) -> None:
        try:
            clear = self.dtls._rx_srtp.unprotect_rtcp(data)
        except Exception:  # pylibsrtp.Error: replayed, damaged
            self.rtcp_errors += 1
            return
        pos = 0
        while pos + 4 <= len(clear):
            length = 4 * (((clear[pos + 2] << 8) | clear[pos + 3]) + 1)
            if clear[pos + 1] == RTCP_SR and pos + 16 <= len(clear):
                ssrc, ntp = SENDER_REPORT.unpack_from(clear, pos + 4)
                self._lsr[ssrc] = ((ntp >> 16) & 0xFFFFFFFF, time.monotonic())
                self.sender_reports += 1
            pos += length

    def reports(self) -> RtcpRrPacket:
        """One receiver report, a block per SSRC (at most 31)."""
        now = time.monotonic()
        blocks = []
        for ssrc, stream in list(self.streams.items())[:31]:
            lsr, dlsr = 0, 0
            if ssrc in self._lsr:
                lsr, at = self._lsr[ssrc]
                dlsr = min(int((now - at) * 65536), 0xFFFFFFFF)
            blocks.append(stream.report(lsr, dlsr))
        return RtcpRrPacket(ssrc=self.ssrc, reports=blocks)

    async def _report_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(0.5 + random.random())  # as aiortc: 0.5–1.5 s
                if not self.streams:
                    continue
                try:
                    await self.dtls._send_rtp(bytes(self.reports()))
                except ConnectionError:
                    return
                self.receiver_reports += 1

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Per track name: packets, payload bytes and frames (video: RTP markers; audio:
        packets), summed over its SSRCs."""
        tracks: dict[str, dict[str, int]] = {}
        for stream in list(self.streams.values()):
            track = tracks.setdefault(stream.name, {"packets": 0, "bytes": 0, "frames": 0})
            track["packets"] += stream.packets
            track["bytes"] += stream.bytes
            track["frames"] += stream.frames
        return tracks

    def lost(self) -> int:
        return sum(max(s.expected - s.packets, 0) for s in self.streams.values())


# ------------------------------------------------------------ a WHEP viewer


@dataclass
class CheapViewer(WhepViewer):
    """A WHEP viewer (webrtc.viewer's offer and POST) whose data path `CheapPath` takes
    over: nothing is decrypted or decoded."""

    clocks: tuple[str, ...] = ()
    path: CheapPath | None = None

    async def connect(self, client: httpx.AsyncClient | None = None) -> httpx.Response:
        response = await super().connect(client)
        for task in self._tasks:  # the frame readers: no frame will ever come
            task.cancel()
        if response.status_code == 201:
            names = {t.mid: name for name, t in self._transceivers if t.mid is not None}
            self.path = CheapPath(self.pc, names)
        return response

    def flowing(self) -> bool:
        if self.path is None or self.pc.connectionState != "connected":
            return False
        counts = self.path.counts()
        return all(counts.get(name, {}).get("packets", 0) > 0 for name in self.stats)

    async def close(self, client: httpx.AsyncClient | None = None) -> None:
        if self.path is not None:
            self.path.stop()
        await super().close(client)


class CheapLoad:
    """`count` cheap viewers of `whep`; the last `save_data` ask for the cheapest renditions."""

    def __init__(
        self, whep: str, token: str, count: int, concurrency: int = 4, save_data: int = 0
    ) -> None:
        saving = f"{whep}?save_data=1"
        self.viewers = [
            CheapViewer(saving if i >= count - save_data else whep, token) for i in range(count)
        ]
        self.errors: list[str] = []
        self._concurrency = asyncio.Semaphore(concurrency)

    async def _connect(self, index: int, viewer: CheapViewer, client: httpx.AsyncClient) -> None:
        async with self._concurrency:
            try:
                response = await viewer.connect(client)
            except Exception as exc:
                self.errors.append(f"viewer {index}: {type(exc).__name__}: {exc}")
                return
            if response.status_code != 201:
                self.errors.append(f"viewer {index}: HTTP {response.status_code} {response.text}")

    async def connect(self, client: httpx.AsyncClient, limit: float) -> dict[str, Any]:
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(self._connect(i, v, client) for i, v in enumerate(self.viewers))),
            limit,
        )
        while time.monotonic() - started < limit:
            if all(v.flowing() for v in self.viewers if v.location):
                break
            await asyncio.sleep(0.2)
        return {
            "event": "ready",
            "viewers": len(self.viewers),
            "flowing": sum(1 for v in self.viewers if v.flowing()),
            "seconds": round(time.monotonic() - started, 2),
            "errors": self.errors,
        }

    def snapshot(self) -> dict[str, Any]:
        viewers = []
        for viewer in self.viewers:
            path = viewer.path
            state = viewer.pc.connectionState if viewer._transceivers else "none"
            tracks: dict[str, dict[str, int]] = {}
            if path is not None:
                tracks = {
                    name: {**counts, "plis": 0, "nacks": 0}
                    for name, counts in path.counts().items()
                }
            viewers.append(
                {
                    "state": state,
                    "cheap": True,
                    "tracks": tracks,
                    "lost": path.lost() if path else 0,
                    "receiver_reports": path.receiver_reports if path else 0,
                    "sender_reports": path.sender_reports if path else 0,
                }
            )
        return {
            "event": "snap",
            "t": time.monotonic(),
            "cpu_seconds": process_cpu_seconds(),
            "viewers": viewers,
            "decoder_latencies_ms": {},
        }

    async def close(self, client: httpx.AsyncClient) -> None:
        async def close_one(viewer: CheapViewer) -> None:
            if viewer._transceivers:
                with contextlib.suppress(Exception):
                    await viewer.close(client)

        await asyncio.gather(*(close_one(v) for v in self.viewers))


# ------------------------------------------------------------ command line


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    """Driven over stdin/stdout (bench/service.py's `ViewersProcess`)."""
    gather_only(["127.0.0.1"])
    load = CheapLoad(args.whep, args.token, args.count, args.concurrency, args.save_data)
    async with httpx.AsyncClient(timeout=20) as client:
        try:
            emit(await load.connect(client, args.connect_timeout))
        except TimeoutError:
            emit({"event": "ready", "viewers": args.count, "flowing": 0, "errors": ["timeout"]})
        while True:
            command = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if command == "snap":
                emit(load.snapshot())
            elif command in ("quit", ""):
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.close(client), 15)
    emit({"event": "bye"})


async def measure(args: argparse.Namespace, whep: str, token: str) -> dict[str, Any]:
    """Connect, warm up, then this process's CPU and what each viewer got over a window."""
    load = CheapLoad(whep, token, args.count, args.concurrency, args.save_data)
    async with httpx.AsyncClient(timeout=20) as client:
        ready = await load.connect(client, args.connect_timeout)
        await asyncio.sleep(args.warmup)
        before = load.snapshot()
        await asyncio.sleep(args.seconds)
        after = load.snapshot()
        await asyncio.wait_for(load.close(client), 15)
    seconds = after["t"] - before["t"]
    cpu = 100 * (after["cpu_seconds"] - before["cpu_seconds"]) / seconds
    rates: dict[str, list[float]] = {}
    for old, new in zip(before["viewers"], after["viewers"], strict=True):
        for name, track in new["tracks"].items():
            for key in ("packets", "frames", "bytes"):
                got = track[key] - old["tracks"].get(name, {}).get(key, 0)
                rates.setdefault(f"{name} {key}/s", []).append(got / seconds)
    return {
        "viewers": args.count,
        "flowing": ready["flowing"],
        "errors": ready["errors"],
        "process_cpu_percent": round(cpu, 2),
        "cpu_percent_per_viewer": round(cpu / args.count, 3),
        "mean_per_viewer": {k: round(sum(v) / len(v), 1) for k, v in sorted(rates.items())},
        "receiver_reports": sum(v["receiver_reports"] for v in after["viewers"]),
        "sender_reports": sum(v["sender_reports"] for v in after["viewers"]),
    }


def measure_alone(args: argparse.Namespace) -> None:
    """Against a demo service of our own on loopback (bench/service.py's `loopback_service`)."""
    import tempfile

    from bench.service import loopback_service

    with (
        tempfile.TemporaryDirectory(prefix="cheap-viewer-") as folder,
        loopback_service(Path(folder)) as service,
    ):
        token = service.token()
        time.sleep(args.settle)
        result = asyncio.run(measure(args, service.whep(), token))
    print(json.dumps(result, indent=1))
    print(
        f"cheap viewer: {result['cpu_percent_per_viewer']:.2f} % of one core per viewer"
        f" ({result['process_cpu_percent']:.1f} % for {args.count})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whep", help="WHEP endpoint URL (none: a demo service of our own)")
    parser.add_argument("--token", help="bearer token (with --whep)")
    parser.add_argument("--count", type=int, required=True, help="viewers")
    parser.add_argument("--concurrency", type=int, default=4, help="offers in flight at once")
    parser.add_argument(
        "--save-data", type=int, default=0, help="how many of them (the last ones) save data"
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument(
        "--seconds", type=float, help="measure own CPU over this window, print it and exit"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="before the window")
    parser.add_argument("--settle", type=float, default=2.0, help="own service alone first")
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="exit no matter what after this long"
    )
    args = parser.parse_args()
    watchdog = threading.Timer(args.max_seconds, os._exit, args=(3,))
    watchdog.daemon = True
    watchdog.start()
    if args.whep is None:
        if args.seconds is None:
            parser.error("without --whep, give --seconds (measure against our own service)")
        measure_alone(args)
    elif args.token is None:
        parser.error("--whep needs --token")
    elif args.seconds is not None:
        gather_only(["127.0.0.1"])
        result = asyncio.run(measure(args, args.whep, args.token))
        print(json.dumps(result, indent=1))
    else:
        asyncio.run(serve(args))
    sys.stdout.flush()
    os._exit(0)  # aiortc's idle decoder threads are not daemons


if __name__ == "__main__":
    main()
