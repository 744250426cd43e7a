"""Resynchronizing a viewer's video at a keyframe, after loss or a rendition switch.

A receiver waits for every packet it misses. aiortc's jitter buffer emits nothing past
a hole until 512 newer packets have come (20 s of camera low), and a retransmission
lost on a thin link leaves such a hole for good: aiortc names a missing packet again
only when a newer one goes missing. So when a viewer's stream had NACKs since its
last keyframe, or switched rendition, its next keyframe goes out after a gap of
`RESYNC_GAP` sequence numbers. Every receiver drops what it still waited for and
starts again at that keyframe: aiortc's buffer lets go of anything 512 behind,
Chrome NACKs the gap once and clears it when the keyframe completes.

The send loop (webrtc/sendloop.py) numbers a sender's packets as aiortc's own loop
would, without gaps, and writes each with its wire number (`outgoing_frame`); aiortc
resends from that loop's history, so an RTX packet names the unshifted number and is
shifted on its way out (the DTLS transport's `_send_rtp`, aiortc 1.16 private API like
the pacer's), and NACKs are shifted back before the sender retransmits
(`RTCRtpSender._handle_rtcp_packet`); `tests/test_resync.py` and
`tests/test_sendloop.py` guard them.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from aiortc import RTCDtlsTransport, RTCRtpSender
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    is_rtcp,
)

from .pacer import WIRE_OVERHEAD, SendRtp, interpose

RESYNC_GAP = 512  # aiortc's video jitter buffer holds 512 packets; Chrome clears >1000
RECENT_NACKS = 1024  # sequence numbers remembered, so a repeated NACK is not new loss
RETRANSMIT_SPACING = 0.25  # seconds between two retransmissions of one packet, at least
RETRANSMIT_TIMES = 2  # retransmissions of one packet, at most
SENT_LOG = 4096  # packets whose send time is kept, to tell what the receiver got (2^n)

Clock = Callable[[], float]


def _signed(delta: int) -> int:
    """A 16-bit sequence-number difference as -32768..32767."""
    return (delta + 0x8000) % 0x10000 - 0x8000


class SequenceShift:
    """The wire sequence numbers of one video sender: aiortc's own plus `offset`,
    which grows by `RESYNC_GAP` at each resync."""

    def __init__(self, media_ssrc: int, rtx_ssrc: int, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.media_ssrc = media_ssrc
        self.rtx_ssrc = rtx_ssrc
        self.offset = 0
        self.segment_start: int | None = None  # aiortc's number of the last resync
        self.newest: int | None = None  # aiortc's number of the newest packet out
        self.armed = False
        self.nacked_since_keyframe = False
        self.resyncs = 0
        self.nacked = 0  # distinct packets named lost
        self.unrecoverable = 0  # of those, ones gone from its history or resent in vain
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_NACKS)
        self._resent: dict[int, tuple[float, int]] = {}  # seq -> (last time, times)
        self.retransmissions = 0
        self._gaps: collections.deque[int] = collections.deque(maxlen=64)  # wire starts
        self._last_report: tuple[int, int] | None = None
        self._sent_bytes = 0
        self.sent_packets = 0
        # the last SENT_LOG packets, at wire seq % SENT_LOG: (wire seq, time, bytes so far)
        self._sent_log: list[tuple[int, float, int] | None] = [None] * SENT_LOG
        self.expected = 0  # packets the receiver reports expected since `take_loss()`
        self.lost = 0  # and of those lost, resync gaps left out
        self.delivered: float | None = None  # bits/s through in the last reported interval
        self.delivered_at = -math.inf  # when that report came

    @property
    def clock(self) -> Clock:
        return self._clock

    def at_keyframe(self, switched: bool) -> None:
        """A keyframe is about to go out: resync before it if the viewer may be
        missing anything, or its stream changed rendition."""
        if switched or self.nacked_since_keyframe:
            self.armed = True
        self.nacked_since_keyframe = False

    def _in_segment(self, sequence: int) -> bool:
        return self.segment_start is None or _signed(sequence - self.segment_start) >= 0

    def outgoing_media(self, sequence: int) -> int | None:
        """The wire number for aiortc's `sequence` (None: do not send it)."""
        if self.newest is None or _signed(sequence - self.newest) > 0:
            if self.armed:
                self.armed = False
                self.offset = (self.offset + RESYNC_GAP) % 0x10000
                self.segment_start = sequence
                self._gaps.append((sequence + self.offset) % 0x10000)
                self.resyncs += 1
            self.newest = sequence
        elif not self._in_segment(sequence):
            return None  # a retransmission (without RTX) from before the resync
        return (sequence + self.offset) % 0x10000

    def outgoing_frame(self, first: int, count: int) -> int:
        """The wire number of the first of `count` new packets numbered from aiortc's
        `first` on (the rest follow it): `outgoing_media` for each, in one call."""
        wire = self.outgoing_media(first)
        assert wire is not None, "a new packet is never from before the resync"
        self.newest = (first + count - 1) % 0x10000
        return wire

    def sent(self, wire: int, size: int, at: float | None = None) -> None:
        """A packet of `size` bytes on the wire went out with number `wire` (at `at` on
        the clock, now by default)."""
        self._sent_bytes += size
        self.sent_packets += 1
        self._sent_log[wire % SENT_LOG] = (
            wire,
            self._clock() if at is None else at,
            self._sent_bytes,
        )

    def _sent(self, wire: int) -> tuple[float, int] | None:
        """(when, bytes sent up to it) of packet `wire`, if it is still in the log."""
        entry = self._sent_log[wire % SENT_LOG]
        return entry[1:] if entry is not None and entry[0] == wire else None

    def receiver_report(self, highest: int, cumulative_lost: int) -> None:
        """Count a receiver report on this stream (its extended highest sequence number
        and cumulative loss); the numbers a resync skipped are not loss. What got
        through is what was sent between the two reports' highest numbers, less the
        loss, over the time it took to send."""
        if self._last_report is not None:
            last_highest, last_lost = self._last_report
            first = self._sent(last_highest % 0x10000)
            last = self._sent(highest % 0x10000)
            expected = highest - last_highest
            lost = cumulative_lost - last_lost
            if expected < 0:
                expected = lost = 0  # reordered or reset reports
            low, span = last_highest % 0x10000, expected
            skipped = [g for g in self._gaps if 0 < (g - low) % 0x10000 <= span]
            for gap in skipped:
                self._gaps.remove(gap)
            expected -= RESYNC_GAP * len(skipped)
            lost -= RESYNC_GAP * len(skipped)
            expected, lost = max(expected, 0), min(max(lost, 0), max(expected, 0))
            self.expected += expected
            self.lost += lost
            if first is not None and last is not None and last[0] > first[0] and expected:
                bits = (last[1] - first[1]) * 8 * (1 - lost / expected)
                self.delivered = bits / (last[0] - first[0])
                self.delivered_at = self._clock()
        self._last_report = (highest, cumulative_lost)

    def take_loss(self) -> tuple[int, int]:
        """(packets lost, packets expected) in the receiver reports since the last call."""
        taken = self.lost, self.expected
        self.lost = self.expected = 0
        return taken

    def outgoing_retransmission(self, original: int) -> int | None:
        """The wire number an RTX packet names for aiortc's `original`."""
        if not self._in_segment(original):
            return None
        return (original + self.offset) % 0x10000

    def incoming_nack(self, lost: list[int]) -> list[int]:
        """aiortc's numbers for the wire numbers a NACK names, the ones worth resending:
        none from before the last resync (the receiver starts again there), none resent
        less than `RETRANSMIT_SPACING` ago or `RETRANSMIT_TIMES` already. aiortc names
        every packet it misses again in each NACK; resending all each time multiplied
        the traffic of a thin link that already lost a third of it."""
        now = self._clock()
        wanted = []
        for wire in lost:
            sequence = (wire - self.offset) % 0x10000
            if not self._in_segment(sequence) or self.newest is None:
                continue
            age = _signed(self.newest - sequence)
            if age < 0:
                continue
            self.nacked_since_keyframe = True
            resent = self._resent.get(sequence)
            if resent is None:
                if len(self._recent) == self._recent.maxlen:
                    self._resent.pop(self._recent[0], None)
                self._recent.append(sequence)
                self._resent[sequence] = resent = (-math.inf, 0)
                self.nacked += 1
                if age >= RTP_HISTORY_SIZE:
                    self.unrecoverable += 1
            last, times = resent
            if now - last < RETRANSMIT_SPACING:
                continue
            if times >= RETRANSMIT_TIMES:
                self.unrecoverable += 1  # resent and lost again: wait for a keyframe
                self._resent[sequence] = (now, times + 1)
            elif age < RTP_HISTORY_SIZE:
                self._resent[sequence] = (now, times + 1)
                self.retransmissions += 1
                wanted.append(sequence)
        return wanted


def _rtx_header_length(data: bytes | bytearray) -> int:
    length = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        length += 4 + 4 * int.from_bytes(data[length + 2 : length + 4], "big")
    return length


class Resequencer:
    """The sequence shifts of one viewer's video senders, on its transport."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.shifts: dict[int, SequenceShift] = {}  # media or RTX SSRC -> its shift
        self.counted: dict[int, SequenceShift] = {}  # media SSRC -> its (maybe unshifted)

    def watch(
        self,
        sender: RTCRtpSender,
        on_unrecoverable: Callable[[], None] | None = None,
        *,
        renumber: bool = True,
    ) -> SequenceShift:
        """Count `sender`'s receiver reports and NACKs and, with `renumber` (video),
        shift its sequence numbers; `on_unrecoverable` runs when the viewer asks for a
        packet the sender no longer has."""
        shift = SequenceShift(sender._ssrc, sender._rtx_ssrc, self._clock)
        self.counted[shift.media_ssrc] = shift
        if renumber:
            self.shifts[shift.media_ssrc] = self.shifts[shift.rtx_ssrc] = shift
        handle = sender._handle_rtcp_packet

        async def handle_shifted(packet: object) -> None:
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for report in packet.reports:
                    if report.ssrc == shift.media_ssrc:
                        shift.receiver_report(report.highest_sequence, report.packets_lost)
            elif renumber and isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                before = shift.unrecoverable
                packet.lost = shift.incoming_nack(packet.lost)
                if shift.unrecoverable > before and on_unrecoverable is not None:
                    on_unrecoverable()
            await handle(packet)  # type: ignore[arg-type]

        sender._handle_rtcp_packet = handle_shifted  # type: ignore[method-assign]
        return shift

    def wrap(self, transport: RTCDtlsTransport) -> None:
        """Shift the numbers of `transport`'s outgoing RTP (idempotent)."""
        interpose(transport, self, self._send)

    async def _send(self, data: bytes, send: SendRtp) -> None:
        if len(data) >= 12 and not is_rtcp(data):
            ssrc = int.from_bytes(data[8:12], "big")
            shift = self.shifts.get(ssrc)
            if shift is not None:
                rewritten = self._rewrite(shift, data)
                if rewritten is None:
                    return
                data = rewritten
            counted = self.counted.get(ssrc)
            if counted is not None:
                counted.sent(int.from_bytes(data[2:4], "big"), len(data) + WIRE_OVERHEAD)
        await send(data)

    @staticmethod
    def _rewrite(shift: SequenceShift, data: bytes) -> bytes | None:
        packet = bytearray(data)
        if int.from_bytes(data[8:12], "big") == shift.media_ssrc:
            wire = shift.outgoing_media(int.from_bytes(data[2:4], "big"))
            if wire is None:
                return None
            packet[2:4] = wire.to_bytes(2, "big")
        else:
            at = _rtx_header_length(data)
            if len(data) < at + 2:
                return data
            wire = shift.outgoing_retransmission(int.from_bytes(data[at : at + 2], "big"))
            if wire is None:
                return None
            packet[at : at + 2] = wire.to_bytes(2, "big")
        return bytes(packet)
