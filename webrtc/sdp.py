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


def _sections(text: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines of an SDP text and the lines of each m-section."""
    head: list[str] = []
    media: list[list[str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            head.append(line)
    return head, media


def _mid(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


def _join(head: list[str], media: list[list[str]]) -> str:
    return "\r\n".join(head + [line for section in media for line in section]) + "\r\n"


def without_sections(offer: str, mids: set[str]) -> str:
    """The offer without the m-sections of `mids` (and without them in its BUNDLE group),
    for a peer connection that cannot answer them. Their ICE candidates move to the first
    section left when it has none (a bundled offer may list them on the first only)."""
    head, media = _sections(offer)
    kept = [s for s in media if _mid(s) not in mids]
    gone = [s for s in media if _mid(s) in mids]
    if kept and not any(line.startswith("a=candidate:") for line in kept[0]):
        moved = [
            line
            for section in gone
            for line in section
            if line.startswith(("a=candidate:", "a=end-of-candidates"))
        ]
        kept[0] = kept[0] + list(dict.fromkeys(moved))
    head = [
        " ".join(w for w in line.split(" ") if w not in mids)
        if line.startswith("a=group:BUNDLE")
        else line
        for line in head
    ]
    return _join(head, kept)


def _bundle(head: list[str]) -> list[str]:
    line = next((x for x in head if x.startswith("a=group:BUNDLE")), "")
    return line.split()[1:]


TRANSPORT = ("c=", "a=candidate:", "a=end-of-candidates", "a=ice-", "a=fingerprint:", "a=setup:")


def with_rejected(answer: str, offer: str, mids: set[str]) -> str:
    """`answer` (to the offer without `mids`) with those m-sections put back in the
    offer's order as rejected ones: port 0, inactive, outside the BUNDLE group.

    Except the offer's BUNDLE tag (its first bundled m-section): a browser that bundles
    everything on it (Chromium with max-bundle) cannot move its transport to another
    line ("Failed to setup RTCP mux"), so that one stays in the bundle, inactive, with
    the offer's first codec named and nothing ever sent on it."""
    head, answered = _sections(answer)
    offer_head, offered = _sections(offer)
    by_mid = {_mid(s): s for s in answered}
    tag = next(iter(_bundle(offer_head)), None)
    kept_tag = tag if tag in mids and answered else None
    media: list[list[str]] = []
    for section in offered:
        mid = _mid(section)
        kind, _port, proto, *formats = section[0][2:].split(" ")
        first = formats[0] if formats else "0"
        if mid is not None and mid == kept_tag:
            transport = answered[0]
            port = transport[0].split(" ")[1]
            rtpmap = [
                x for x in section if x.startswith((f"a=rtpmap:{first} ", f"a=fmtp:{first} "))
            ]
            lines = [x for x in transport[1:] if x.startswith(TRANSPORT)]
            opening = f"m={kind} {port} {proto} {first}"
            media.append([opening, *lines, "a=inactive", f"a=mid:{mid}", "a=rtcp-mux", *rtpmap])
        elif mid in mids:
            media.append(
                [f"m={kind} 0 {proto} {first}", "c=IN IP4 0.0.0.0", "a=inactive", f"a=mid:{mid}"]
            )
        elif mid in by_mid:
            media.append(by_mid[mid])
    if kept_tag is not None:
        head = [
            f"a=group:BUNDLE {' '.join([kept_tag, *_bundle(head)])}"
            if line.startswith("a=group:BUNDLE")
            else line
            for line in head
        ]
    return _join(head, media)
