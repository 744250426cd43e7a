"""CPU per RTP packet per viewer on the send path, aiortc's loop against ours, in process.

N viewers' video senders, each on a DTLS transport made to look connected (SRTP keyed,
the ICE connection's nominated pair a real loopback UDP socket that nobody reads: the
kernel drops what overflows), watch one bus, wrapped as a viewer session wraps them (the
resequencer and an unpaced pacer on the transport, the shift watching the sender). The
bus gets camera-like frames (about 5 kB, an IDR of 60 kB every 60th) at full speed; the
process CPU time from the first frame until every viewer sent every packet, over viewers
× packets, is the cost of one packet for one viewer: `aiortc` (`RTCRtpSender._run_rtp`,
what the service ran before webrtc/sendloop.py) and `lean` (webrtc/sendloop.py).

    python bench/sendpath.py --viewers 16 --frames 600

Nothing passes or fails: it prints a line per path and run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
from aioice import Candidate
from aioice.ice import CandidatePair, StunProtocol
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpSender
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from pylibsrtp import Policy, Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from capture import Packet
from webrtc import PacketBus, packer, sendloop
from webrtc.pacer import Pacer
from webrtc.resync import Resequencer
from webrtc.track import PacketTrack

PARAMETERS = RTCRtpSendParameters(
    codecs=[
        RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=103, parameters={"apt": 102}
        ),
    ],
    headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        ),
    ],
    muxId="0",
    rtcp=RTCRtcpParameters(cname="bench", ssrc=1),
)


class Viewer:
    def __init__(self, bus: PacketBus, lean: bool, sink: tuple[str, int]) -> None:
        self.bus, self.lean, self.sink = bus, lean, sink
        self.pacer = Pacer(rate=1e9)
        self.resequencer = Resequencer()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ice = RTCIceTransport(RTCIceGatherer())
        dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
        policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        policy.allow_repeat_tx, policy.window_size = True, 1024
        dtls._state, dtls._tx_srtp = State.CONNECTED, Session(policy)
        connection = ice._connection
        self.transport, protocol = await loop.create_datagram_endpoint(
            lambda: StunProtocol(connection), local_addr=("127.0.0.1", 0)
        )
        remote = Candidate("1", 1, "udp", 1, self.sink[0], self.sink[1], "host")
        connection._nominated[1] = CandidatePair(protocol, remote)
        self.sender = sender = RTCRtpSender("video", dtls)
        self.track = track = PacketTrack("video", self.bus)
        codec = packer.attach(sender, track)
        self.pacer.priorities[sender._ssrc] = 0
        self.pacer.retransmission_ssrcs.add(sender._rtx_ssrc)
        self.shift = codec.shift = self.resequencer.watch(sender, track.request_keyframe)
        if self.lean:
            sendloop.install(sender, track, codec, self.pacer, self.resequencer)
        self.pacer.wrap(dtls)
        self.resequencer.wrap(dtls)
        await self.pacer.start()
        await sender.send(PARAMETERS)

    async def stop(self) -> None:
        await self.sender.stop()
        await self.pacer.stop()
        self.transport.close()


def frame(number: int) -> Packet:
    keyframe = number % 60 == 0
    size = 60_000 if keyframe else 5_000
    packet = av.Packet(b"\x00\x00\x00\x01" + (b"\x65" if keyframe else b"\x41") + b"\x5a" * size)
    packet.pts, packet.time_base = number * 3000, Fraction(1, 90000)
    packet.is_keyframe = keyframe
    return packet


async def measure(lean: bool, viewers: int, frames: int) -> float:
    """Microseconds of process CPU per RTP packet per viewer."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    bus = PacketBus("bench/camera/high", "video", loop=asyncio.get_running_loop())
    party = [Viewer(bus, lean, sink.getsockname()) for _ in range(viewers)]
    try:
        for viewer in party:
            await viewer.start()
        await asyncio.sleep(0.2)
        packets = [frame(n) for n in range(frames)]
        per_viewer = sum(len(bus.packer.pack(p)[0]) for p in packets)  # packed once, cached
        started, cpu = time.monotonic(), time.process_time()
        for packet in packets:
            bus.publish(packet)
            while True:  # never so far ahead that a viewer's queue overflows
                await asyncio.sleep(0)
                if all(len(v.track.current or ()) < 20 for v in party):
                    break
        while any(v.shift.sent_packets < per_viewer for v in party):
            if time.monotonic() - started > 120:
                raise TimeoutError("packets missing")
            await asyncio.sleep(0.001)
        used = time.process_time() - cpu
        return used / (per_viewer * viewers) * 1e6
    finally:
        for viewer in party:
            await viewer.stop()
        sink.close()


async def run(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {name: [] for name in args.paths}
    for _ in range(args.repeat):
        for name in results:
            cost = await measure(name == "lean", args.viewers, args.frames)
            results[name].append(cost)
            print(f"{name:6}: {cost:.2f} µs of CPU per RTP packet per viewer", flush=True)
    for name, costs in results.items():
        print(f"{name:6}: median {statistics.median(costs):.2f} µs over {len(costs)} run(s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    paths = ("aiortc", "lean")
    parser.add_argument("--paths", nargs="+", choices=paths, default=list(paths))
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
