"""Checking WHEP offers and parsing trickle-ice-sdpfrag bodies (RFC 8840)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription, candidate_from_sdp

MAX_OFFER_BYTES = 64 * 1024


class OfferError(ValueError):
    """The offer cannot be answered; `status` is the HTTP status to return."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def parse_offer(text: str) -> SessionDescription:
    """Parse an SDP offer or raise `OfferError(400, ...)` saying what is wrong."""
    if not text.lstrip().startswith("v=0"):
        raise OfferError(
            400, "Malformed SDP", "the body is not an SDP session description (no v=0)"
        )
    try:
        description = SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises many types on garbage
        raise OfferError(400, "Malformed SDP", f"the SDP offer cannot be parsed: {exc}") from exc
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise OfferError(400, "Malformed SDP", "the offer has no audio or video m-line")
    for m in media:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise OfferError(400, "Malformed SDP", f"m-line {m.kind} has no ICE ufrag/pwd")
        if m.dtls is None or not m.dtls.fingerprints:
            raise OfferError(400, "Malformed SDP", f"m-line {m.kind} has no DTLS fingerprint")
    return description


@dataclass
class SdpFragment:
    """What a PATCH body trickles: ICE credentials, candidates per mid, end flag."""

    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[RTCIceCandidate] = field(default_factory=list)
    end_of_candidates: bool = False


def parse_sdpfrag(text: str) -> SdpFragment:
    fragment = SdpFragment()
    mid: str | None = None
    index = -1
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=ice-ufrag:"):
            fragment.ufrag = line[12:]
        elif line.startswith("a=ice-pwd:"):
            fragment.pwd = line[10:]
        elif line.startswith("a=candidate:"):
            try:
                candidate = candidate_from_sdp(line[12:])
            except (ValueError, IndexError) as exc:
                raise OfferError(400, "Malformed candidate", f"{line!r}: {exc}") from exc
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = max(index, 0)
            fragment.candidates.append(candidate)
        elif line == "a=end-of-candidates":
            fragment.end_of_candidates = True
    return fragment
