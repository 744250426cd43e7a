"""Resync at a keyframe: sequence shifts on the wire, NACKs mapped back, retransmissions
limited, receiver reports read without the skipped numbers; and that the gap lets a
real aiortc jitter buffer go of a hole it would otherwise wait on for 512 packets."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket

from webrtc.resync import RESYNC_GAP, RETRANSMIT_TIMES, SequenceShift


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def send(shift: SequenceShift, first: int, count: int) -> list[int]:
    wires = []
    for sequence in range(first, first + count):
        wire = shift.outgoing_media(sequence % 0x10000)
        assert wire is not None
        shift.sent(wire, 1000)
        wires.append(wire)
    return wires


def test_no_resync_on_a_clean_stream() -> None:
    shift = SequenceShift(1, 2)
    shift.at_keyframe(switched=False)
    assert send(shift, 65530, 10) == [*range(65530, 65536), *range(0, 4)]
    assert shift.resyncs == 0


def test_a_nack_makes_the_next_keyframe_start_after_a_gap() -> None:
    shift = SequenceShift(1, 2, FakeClock())
    wires = send(shift, 1000, 50)
    assert shift.incoming_nack([wires[10]]) == [1010]
    assert shift.nacked == 1 and shift.unrecoverable == 0
    send(shift, 1050, 5)  # a delta frame: no resync mid-stream
    assert shift.resyncs == 0
    shift.at_keyframe(switched=False)
    after = send(shift, 1055, 3)
    assert after == [1055 + RESYNC_GAP, 1056 + RESYNC_GAP, 1057 + RESYNC_GAP]
    assert shift.resyncs == 1
    shift.at_keyframe(switched=False)  # no NACK since: the next keyframe flows on
    assert send(shift, 1058, 1) == [1058 + RESYNC_GAP]


def test_nacks_map_back_and_skip_what_the_resync_dropped() -> None:
    shift = SequenceShift(1, 2, FakeClock())
    send(shift, 0, 10)
    shift.at_keyframe(switched=True)
    wires = send(shift, 10, 10)
    assert shift.incoming_nack([wires[0] - 1, 5, wires[3]]) == [13]  # gap, old, current
    assert shift.outgoing_retransmission(13) == wires[3]
    assert shift.outgoing_retransmission(5) is None  # from before the resync


def test_retransmissions_are_spaced_and_counted() -> None:
    clock = FakeClock()
    shift = SequenceShift(1, 2, clock)
    wires = send(shift, 0, RTP_HISTORY_SIZE + 20)
    assert shift.incoming_nack([wires[-5]]) == [RTP_HISTORY_SIZE + 15]
    assert shift.incoming_nack([wires[-5]]) == [], "named again at once: not resent"
    for _ in range(RETRANSMIT_TIMES + 2):
        clock.now += 1
        shift.incoming_nack([wires[-5]])
    assert shift.retransmissions == RETRANSMIT_TIMES
    assert shift.unrecoverable >= 1, "resent in vain"
    before = shift.unrecoverable
    assert shift.incoming_nack([wires[0]]) == [], "out of the sender's history"
    assert shift.unrecoverable == before + 1


def test_receiver_reports_leave_the_gap_out_and_tell_what_got_through() -> None:
    clock = FakeClock()
    shift = SequenceShift(1, 2, clock)
    wires: list[int] = []
    for _ in range(10):  # 100 packets of 1000 bytes in one second
        wires += send(shift, len(wires), 10)
        clock.now += 0.1
    shift.receiver_report(wires[0], 0)
    shift.incoming_nack([wires[50]])
    shift.at_keyframe(switched=False)
    more: list[int] = []
    for _ in range(10):
        more += send(shift, 100 + len(more), 10)
        clock.now += 0.1
    # it lost 5 packets; to it the 512 skipped numbers are lost as well
    shift.receiver_report(more[-1], 5 + RESYNC_GAP)
    lost, expected = shift.take_loss()
    assert (lost, expected) == (5, 199)
    assert shift.delivered is not None
    assert 810_000 < shift.delivered < 825_000  # 199 kB in 1.9 s, 5 of 199 lost


def keyframe_stream(
    shift: SequenceShift, first: int, frames: int, lose: int | None
) -> list[RtpPacket]:
    """RTP packets of `frames` two-packet frames as the viewer gets them (`lose`: an
    internal number that never arrives)."""
    packets: list[RtpPacket] = []
    for frame in range(frames):
        if frame == 0:
            shift.at_keyframe(switched=False)
        for part in range(2):
            sequence = first + frame * 2 + part
            wire = shift.outgoing_media(sequence)
            assert wire is not None
            if sequence != lose:
                packet = RtpPacket(sequence_number=wire, timestamp=(first + frame * 2) * 3000)
                packet._data = b"\x00"  # type: ignore[attr-defined]
                packets.append(packet)
    return packets


def test_the_gap_frees_an_aiortc_jitter_buffer_stuck_on_a_hole() -> None:
    def frames_after_hole(resync: bool) -> int:
        shift = SequenceShift(1, 2)
        buffer = JitterBuffer(capacity=512, is_video=True)
        for packet in keyframe_stream(shift, 0, 20, lose=21):
            buffer.add(packet)
        if resync:
            shift.incoming_nack([(21 + shift.offset) % 0x10000])  # the viewer asked
        emitted = 0
        for packet in keyframe_stream(shift, 40, 20, lose=None):
            _, frame = buffer.add(packet)
            emitted += frame is not None
        return emitted

    assert frames_after_hole(resync=False) == 0, "aiortc waits for the lost packet"
    assert frames_after_hole(resync=True) >= 18
