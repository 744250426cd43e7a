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
    _check_lines(description)
    for m in media:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise OfferError(400, "Malformed SDP", f"m-line {m.kind} has no ICE ufrag/pwd")
        if m.dtls is None or not m.dtls.fingerprints:
            raise OfferError(400, "Malformed SDP", f"m-line {m.kind} has no DTLS fingerprint")
        if m.direction is None:
            raise OfferError(400, "Malformed SDP", f"m-line {m.kind} has no direction")
    return description


def _check_lines(description: SessionDescription) -> None:
    # What aiortc takes for granted and fails on later, not with a ValueError and with the
    # session half made (or in the session's RTP sender): m-lines it knows, one data
    # channel line, a short mid of its own on each line, a BUNDLE group of those mids,
    # header extension ids that fit.
    kinds = [m.kind for m in description.media]
    if not set(kinds) <= {"audio", "video", "application"} or kinds.count("application") > 1:
        raise OfferError(
            400, "Malformed SDP", "m-lines may be audio, video and one application line"
        )
    mids = [m.rtp.muxId for m in description.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise OfferError(400, "Malformed SDP", f"each m-line needs a mid of its own: {mids}")
    ids = [x.id for m in description.media for x in m.rtp.headerExtensions]
    if any(len(mid.encode()) > 255 for mid in mids) or not all(0 < i < 256 for i in ids):
        raise OfferError(400, "Malformed SDP", "a mid or an extmap id does not fit in RTP")
    for group in description.group:
        if group.semantic == "BUNDLE" and (
            len(set(group.items)) != len(group.items) or not set(group.items) <= set(mids)
        ):
            raise OfferError(400, "Malformed SDP", f"BUNDLE {group.items} are not the mids {mids}")


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
                candidate = _candidate(line[12:])
            except ValueError as exc:
                raise OfferError(400, "Malformed candidate", f"{line[:200]!r}: {exc}") from exc
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = max(index, 0)
            fragment.candidates.append(candidate)
        elif line == "a=end-of-candidates":
            fragment.end_of_candidates = True
    return fragment


def _candidate(text: str) -> RTCIceCandidate:
    # aiortc's parser asserts on fewer than 8 fields; aioice fails on numbers out of range
    # only later, in the session's ICE checks
    if len(text.split()) < 8:
        raise ValueError("a candidate has 8 fields or more")
    candidate = candidate_from_sdp(text)
    if not (
        1 <= candidate.component <= 256
        and 0 <= candidate.priority < 2**32
        and 0 <= candidate.port <= 65535
    ):
        raise ValueError("component, priority or port out of range")
    return candidate
