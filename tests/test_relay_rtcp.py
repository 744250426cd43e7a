"""What the relay's forwarder hears back from Janus on a video stream's RTCP port."""

from __future__ import annotations

from webrtc.relay import keyframe_requested

SR = bytes([0x80, 200, 0, 6]) + bytes(24)  # a sender report without report blocks
RR = bytes([0x80, 201, 0, 1]) + bytes(4)
PLI = bytes([0x81, 206, 0, 2]) + bytes(8)
FIR = bytes([0x84, 206, 0, 4]) + bytes(16)
REMB = bytes([0x8F, 206, 0, 5]) + bytes(20)  # payload-specific too, but not a keyframe request


def test_a_pli_or_fir_asks_for_a_keyframe_alone_or_in_a_compound_packet() -> None:
    assert keyframe_requested(PLI) and keyframe_requested(FIR)
    assert keyframe_requested(SR + PLI) and keyframe_requested(RR + REMB + FIR)
    assert not keyframe_requested(SR) and not keyframe_requested(RR + REMB)
    assert not keyframe_requested(b"") and not keyframe_requested(b"\x00" * 40)  # not RTCP
    assert not keyframe_requested(bytes([0x80, 201, 0xFF, 0xFF]) + PLI)  # a length too long
