"""One viewer's media onto the wire with as little Python per packet as we can.

aiortc's sender (`RTCRtpSender._run_rtp`) builds an `RtpPacket` object per RTP packet,
serializes it (header extensions through a dict of ids, an NTP clock read through
`datetime` twice), then awaits a chain of coroutines per packet: our resequencer and
pacer layers on the DTLS transport, its `_send_rtp` (SRTP), aioice's `send`, `sendto`,
`send_data`. Here each `PacketTrack` sender runs a loop of ours instead: per frame it
takes the payloads the bus's shared packer cut once for every viewer, and per RTP
packet it writes the header into the sender's own buffer (a template made once by
aiortc's serializer, so the bytes are aiortc's: the MID and abs-send-time extensions it
writes; it never writes transport-cc), copies the payload after it, protects it in
place with libsrtp (the transport's SRTP session) and hands it to the ICE pair's
socket: one `sendto`. No coroutine per packet, except to wait for the pacer, and no
task switch per frame: while the loop waits, the track's doorbell (`track.Doorbell`)
has it send a packet from within the bus's `publish` that queued it; the task wakes
only for what must wait for the pacer, and to end.

What aiortc keeps doing: ICE, DTLS, RTCP (its sender reports read the counters this
loop updates), NACK handling and RTX (`_retransmit` finds the packets it resends in
`SentFrames`, which stands in for its RTP history), PLI and REMB.

Private aiortc 1.16 / aioice 0.13 / pylibsrtp 1.0 API used here, each guarded by
`tests/test_sendloop.py`: `RTCRtpSender.send` starts `self._run_rtp(codec)` (replaced
per sender), its `__rtp_started`/`__rtp_exited` events, `__rtp_history`, its report
counters (`__ntp_timestamp`, `__rtp_timestamp`, `__octet_count`, `__packet_count`);
`RTCDtlsTransport._state`, `_tx_srtp`, `__tx_bytes`, `__tx_packets`; `RTCIceTransport.
_connection`; aioice's `Connection._nominated` (the pair `sendto` uses); pylibsrtp's
cffi binding and `Session._srtp`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket
from aiortc.utils import random32
from pylibsrtp import SRTP_MAX_TRAILER_LEN
from pylibsrtp._binding import ffi, lib

from .pacer import WIRE_OVERHEAD, Pacer
from .resync import Resequencer, SequenceShift

if TYPE_CHECKING:
    from capture import Packet

    from .packer import SenderCodec
    from .track import PacketTrack

logger = logging.getLogger(__name__)

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
BUFFER_SIZE = 1500 + SRTP_MAX_TRAILER_LEN
_HEAD = struct.Struct("!BHI")  # marker and payload type, sequence number, timestamp
_WORD = struct.Struct("!I")


def ntp_time(now: float) -> int:
    """`now` (Unix seconds) as a 64-bit NTP timestamp, as `aiortc.clock` gives it."""
    seconds = int(now)
    return (seconds + NTP_EPOCH_OFFSET) << 32 | int((now - seconds) * (1 << 32))


def abs_send_time(ntp: int) -> int:
    """The abs-send-time extension's 24 bits (6.18 fixed point seconds), as aiortc."""
    return (ntp >> 14) & 0xFFFFFF


class SentFrames:
    """Stands in for aiortc's RTP history (`RTCRtpSender.__rtp_history`, a dict of the
    last `RTP_HISTORY_SIZE` packets by sequence number modulo that size, which only
    `_retransmit` reads, with `get`): the frames sent, as the shared payload lists; an
    `RtpPacket` is made only for a packet a NACK asks again."""

    def __init__(self, loop: SendLoop) -> None:
        self._loop = loop
        self._frames: collections.deque[tuple[int, int, list[bytes]]] = collections.deque(
            maxlen=RTP_HISTORY_SIZE  # frames: at least as many packets
        )
        self.add = self._frames.append  # (first sequence number, timestamp, payloads)

    def get(self, key: int, default: RtpPacket | None = None) -> RtpPacket | None:
        """The newest packet sent whose number is `key` modulo `RTP_HISTORY_SIZE`
        (aiortc checks the whole number)."""
        if not self._frames:
            return default
        first, _, payloads = self._frames[-1]
        newest = (first + len(payloads) - 1) % 0x10000
        sequence = (newest - (newest - key) % RTP_HISTORY_SIZE) % 0x10000
        for first, timestamp, payloads in reversed(self._frames):
            index = (sequence - first) % 0x10000
            if index < len(payloads):
                marker = index == len(payloads) - 1
                return self._loop.packet(sequence, timestamp, payloads[index], marker)
            if (newest - first) % 0x10000 >= RTP_HISTORY_SIZE:
                break
        return default


class SendLoop:
    """Sends a `PacketTrack`'s packets for an aiortc sender (`install`), numbered and
    counted by the viewer's resequencer, paced by its pacer (both optional)."""

    def __init__(
        self,
        sender: RTCRtpSender,
        track: PacketTrack,
        codec: SenderCodec,
        pacer: Pacer | None = None,
        resequencer: Resequencer | None = None,
    ) -> None:
        self.sender = sender
        self.track = track
        self.codec = codec
        self.pacer = pacer
        self.resequencer = resequencer
        self.history = SentFrames(self)
        self.protect_errors = 0
        self._ssrc = 0  # the sender's, once it starts
        self._parameters: RTCRtpSendParameters | None = None
        self._payload_type = 0
        self._mid: str | None = None
        self._header = b""
        self._abs_at: int | None = None  # where the word ending with abs-send-time starts
        self._abs_prefix = 0  # that word's first byte, in place
        self._sequence = random_sequence_number()
        self._timestamp_origin = random32()
        self._cdata = ffi.new("char[]", BUFFER_SIZE)
        self._view = memoryview(ffi.buffer(self._cdata))
        self._length = ffi.new("int *")
        self._pair: Any = None  # the ICE pair last sent on, and its (sendto, address, copy)
        self._route: tuple[Any, tuple[str, int], bool] = (None, ("", 0), False)
        self._session: Any = None  # the transport's SRTP session, and its libsrtp handle
        self._srtp: Any = None
        # the frame being sent: payloads, timestamp, wire number of the first packet, the
        # next packet's index, the shift counting it and the pacer priority of its stream
        self._payloads: list[bytes] = []
        self._timestamp = self._wire = self._next = 0
        self._shift: SequenceShift | None = None
        self._priority: int | None = None
        self._waiting = False  # the task waits for packets: `_answer` may send them
        self._answering = False
        self._blocked: int | None = None  # `_answer` left a frame waiting for the pacer
        self._failed: Exception | None = None  # `_answer` failed: the task raises it

    def install(self) -> SendLoop:
        """Take over the sender's RTP: its `send()` starts this loop instead of aiortc's."""
        sender = self.sender
        send: Callable[[RTCRtpSendParameters], Awaitable[None]] = sender.send

        async def send_with(parameters: RTCRtpSendParameters) -> None:
            self._parameters = parameters
            await send(parameters)

        sender.send = send_with  # type: ignore[method-assign]
        sender._run_rtp = self.run  # type: ignore[method-assign]
        sender._RTCRtpSender__rtp_history = self.history  # type: ignore[attr-defined]
        return self

    def _configure(self, codec: RTCRtpCodecParameters) -> None:
        """The header template: what aiortc's serializer writes for this sender."""
        parameters = self._parameters
        self._ssrc = self.sender._ssrc
        assert codec.payloadType is not None, "a negotiated codec has its payload type"
        self._payload_type = codec.payloadType
        self._mid = parameters.muxId if parameters is not None else None
        extensions = HeaderExtensionsMap()
        if parameters is not None:
            extensions.configure(parameters)
        zero = self.packet(0, 0, b"", False, abs_time=0).serialize(extensions)
        ones = self.packet(0, 0, b"", False, abs_time=0xFFFFFF).serialize(extensions)
        differ = [at for at in range(len(zero)) if zero[at] != ones[at]]
        if differ:  # the word ending with the extension's 3 bytes, its first byte kept
            self._abs_at = differ[0] - 1
            self._abs_prefix = zero[differ[0] - 1] << 24
        self._header = zero
        self._view[: len(zero)] = zero

    def packet(
        self,
        sequence: int,
        timestamp: int,
        payload: bytes,
        marker: bool,
        abs_time: int | None = None,
    ) -> RtpPacket:
        """An `RtpPacket` as aiortc's sender makes it (numbered before any resync
        shift, like aiortc's own); abs-send-time now unless given."""
        packet = RtpPacket(
            payload_type=self._payload_type,
            marker=int(marker),
            sequence_number=sequence,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=payload,
        )
        packet.extensions.mid = self._mid
        if abs_time is None:
            abs_time = abs_send_time(ntp_time(time.time()))
        packet.extensions.abs_send_time = abs_time
        return packet

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        """Replaces `RTCRtpSender._run_rtp(codec)`: until the track ends, the transport
        closes or the sender stops (cancelled). While it waits for packets, `_answer`
        sends what comes at once, from the bus's `publish`; it only wakes this task for
        what has to wait for the pacer, or to end."""
        sender = self.sender
        sender._RTCRtpSender__rtp_started.set()  # type: ignore[attr-defined]
        track = self.track
        try:
            self._configure(codec)
            track.answer_with(self._answer)
            while True:
                if self._failed is not None:
                    raise self._failed
                if self._blocked is not None:  # the rest of a frame `_answer` began
                    size, self._blocked = self._blocked, None
                    await self._paced(size)
                    continue
                packet = track.poll()
                if packet is None:
                    self._waiting = True
                    try:
                        await track.wait()
                    finally:
                        self._waiting = False
                elif self._begin(packet):
                    await self._paced(self._advance())
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            logger.exception("sending RTP for %s", sender.kind)
        finally:
            track.answer_with(None)
            track.stop()
            sender._RTCRtpSender__rtp_exited.set()  # type: ignore[attr-defined]

    def _answer(self) -> bool:
        """A packet came for the track (`Doorbell`): while the task waits, send what
        may go now; True when nothing is left for the task to do."""
        if not self._waiting or self._answering:
            return not self._waiting  # answering already: the outer call sends it
        self._answering = True
        try:
            while True:
                packet = self.track.poll()
                if packet is None:
                    return True
                if self._begin(packet):
                    self._blocked = self._advance()
                    if self._blocked is not None:
                        break
        except MediaStreamError:
            pass  # the task meets it too
        except Exception as exc:  # never into the bus's publish: the task raises it
            self._failed = exc
        finally:
            self._answering = False
        self._waiting = False  # the task's turn, however many more packets come first
        return False

    async def _paced(self, size: int | None) -> None:
        """Send the rest of the frame, waiting for the pacer before each packet that
        may not go yet (`size`: the first one's)."""
        while size is not None:
            assert self.pacer is not None and self._priority is not None
            await self.pacer.acquire(size, self._priority)
            size = self._advance(granted=True)

    def _socket(self) -> tuple[Any, Any, tuple[str, int], bool]:
        """(the SRTP session, the selected pair's `sendto`, its remote address, whether
        the data must be copied before `sendto` returns); ConnectionError if the
        transport is not connected, as aiortc's `_send_rtp` raises."""
        transport = self.sender.transport
        if transport._state is not State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = transport.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        if pair is not self._pair:
            socket = pair.protocol.transport
            # asyncio's datagram transport copies what it cannot send at once; TURN's
            # keeps the data for a task: give it bytes of its own
            copy = not isinstance(socket, asyncio.DatagramTransport)
            self._pair, self._route = pair, (socket.sendto, pair.remote_addr, copy)
        session = transport._tx_srtp
        if session is not self._session:
            self._session, self._srtp = session, session._srtp[0]
        return (self._srtp, *self._route)

    def _begin(self, packet: Packet) -> bool:
        """Take `packet` as the frame to send (False: nothing to send of it)."""
        if not self.sender._enabled:  # aiortc reads and drops while disabled
            return False
        payloads, timestamp = self.codec.pack(packet)
        if not payloads:
            return False
        ssrc, first, count = self._ssrc, self._sequence, len(payloads)
        self._sequence = (first + count) % 0x10000
        timestamp = (self._timestamp_origin + timestamp) % 2**32
        self.history.add((first, timestamp, payloads))
        wire, shift, resequencer, pacer = first, None, self.resequencer, self.pacer
        if resequencer is not None:
            shift = resequencer.counted.get(ssrc)
            renumbered = resequencer.shifts.get(ssrc)
            if renumbered is not None:
                wire = renumbered.outgoing_frame(first, count)
        self._payloads, self._timestamp, self._wire, self._next = payloads, timestamp, wire, 0
        self._shift = shift
        self._priority = pacer.priorities.get(ssrc) if pacer is not None else None
        return True

    def _advance(self, granted: bool = False) -> int | None:
        """Send the frame's packets from the next one on while the pacer lets them go
        (`granted`: it let the next one go already); None once all are out, else the
        size of the one that has to wait."""
        srtp, sendto, address, copy = self._socket()
        payloads, timestamp, wire, shift = self._payloads, self._timestamp, self._wire, self._shift
        pacer, priority = self.pacer, self._priority
        view, cdata, length, protect = self._view, self._cdata, self._length, lib.srtp_protect
        header, head = len(self._header), _HEAD.pack_into
        ntp = ntp_time(time.time())
        if self._abs_at is not None:
            _WORD.pack_into(view, self._abs_at, self._abs_prefix | abs_send_time(ntp))
        at = shift.clock() if shift is not None else 0.0
        last, payload_type = len(payloads) - 1, self._payload_type
        payload_bytes = wire_bytes = srtp_bytes = sent = 0
        waits: int | None = None
        for index in range(self._next, len(payloads)):
            payload = payloads[index]
            end = header + len(payload)
            size = end + WIRE_OVERHEAD
            if pacer is not None:
                if priority is None:
                    pacer.debit(size)
                elif granted:
                    granted = False
                elif not pacer.try_take(size):
                    self._next, waits = index, size
                    break
            number = (wire + index) % 0x10000
            head(view, 1, payload_type | (0x80 if index == last else 0), number, timestamp)
            view[header:end] = payload
            length[0] = end
            if protect(srtp, cdata, length) != 0:
                self.protect_errors += 1
                continue
            data = view[: length[0]]
            sendto(bytes(data) if copy else data, address)
            srtp_bytes += length[0]
            payload_bytes += len(payload)
            wire_bytes += size
            sent += 1
            if shift is not None:
                shift.sent(number, size, at)
        self._count(ntp, timestamp, sent, payload_bytes, srtp_bytes, wire_bytes)
        return waits

    def _count(
        self, ntp: int, timestamp: int, sent: int, payload_bytes: int, srtp_bytes: int, wire: int
    ) -> None:
        """What aiortc's sender reports (RTCP SR, getStats) and its transport's stats
        count, and the pacer's count of what left."""
        sender, transport = self.sender, self.sender.transport
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += payload_bytes  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += sent  # type: ignore[attr-defined]
        transport._RTCDtlsTransport__tx_bytes += srtp_bytes  # type: ignore[attr-defined]
        transport._RTCDtlsTransport__tx_packets += sent  # type: ignore[attr-defined]
        if self.pacer is not None:
            self.pacer.sent_bytes += wire
            self.pacer.sent_by_ssrc[self._ssrc] += wire


def install(
    sender: RTCRtpSender,
    track: PacketTrack,
    codec: SenderCodec,
    pacer: Pacer | None = None,
    resequencer: Resequencer | None = None,
) -> SendLoop:
    """Send `track` (attached to `sender` with `packer.attach`) by our loop."""
    return SendLoop(sender, track, codec, pacer, resequencer).install()
