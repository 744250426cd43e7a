"""Bad input gets a 4xx problem, never a 500, a traceback or a closed session.

Seeded fuzzing (a few hundred cases, the same ones every run) of a real service: WHEP
offers (a real aiortc offer with lines dropped, repeated, garbled, mids made equal,
numbers huge, bytes that are not UTF-8), trickle PATCH bodies, the class data channel
(deep JSON, huge strings, wrong types, not JSON), the staff JSON endpoints, and the
query strings of the report and recording pages. Meanwhile and afterwards the viewers
already watching keep their sessions (the chatting ones are still answered on their
data channel), the teacher's console still shows the room and a new viewer plays.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from edge.access.links import staff_key
from edge.config.settings import load
from tests.conftest import SMALL_ROOM, Service, run_service, write_site
from tests.whep_client import Viewer, eventually

SEED = 9457
ROOM, CLASS = "r1", "6A1"
OFFERS, PATCHES, STAFF_BODIES, QUERIES = 150, 80, 120, 40
ROUNDS, PARSED_PER_ROUND, UNPARSED_PER_ROUND = 2, 9, 12  # the channel takes 10 in 10 s
CHANNEL_WINDOW = 10.5  # seconds: the channel's rate window has passed
BAD_NUMBERS = ["0", "-1", "65536", "4294967296", "99999999999999999999999", "9" * 5000, "1e9"]
JUNK = [" ", ":", "=", "/", ";", "-", "x", "9", "\t", "\x00", "\x7f", "é", "\udcff", "\udcc0"]
"""Characters to garble with; "\\udcXX" is encoded as the byte XX (not UTF-8)."""
NOT_UTF8 = ["\udcff", "\udcc3(", "\udced\udca0\udc80"]
ODD_SDP_LINES = [
    *("a=mid:", "a=mid:0", "a=group:BUNDLE 7 8 9", "a=group:BUNDLE", "a=msid:", "a=rtcp:"),
    *("a=rtpmap:99", "a=rtpmap:abc H264/90000", "a=rtpmap:99 H264", "a=rtpmap:99 H264/abc"),
    *("a=fmtp:99", "a=fmtp:99 packetization-mode=x;profile-level-id=zz", "a=fmtp:98 apt=123"),
    *("a=rtcp-fb:99", "a=rtcp-fb:abc nack", "a=extmap:abc urn:x", "a=extmap:1/sendonly"),
    *("a=extmap:99999 urn:ietf:params:rtp-hdrext:sdes:mid", "a=ssrc:abc cname:x", "a=ssrc:1"),
    *("a=ssrc-group:FID", "a=ssrc-group:FID 1", "a=rtcp:abc IN IP4 x", "a=candidate:1"),
    *("a=candidate:1 1 udp x 127.0.0.1 9 typ host", "a=fingerprint:sha-256", "a=setup:bogus"),
    *("a=fingerprint:md5 00:11", "a=ice-ufrag:", "a=ice-pwd:", "a=ice-options:trickle"),
    *("a=sctp-port:x", "a=max-message-size:-5", "a=rid:1 send", "a=simulcast:send 1;2"),
    *("c=IN IP4 999.1.1.1", "c=IN IP6 ::1", "c=IN", "b=AS:x", "m=video 9 UDP/TLS/RTP/SAVPF"),
    *("m=video x y z", "m=audio 9 RTP/AVP 0", "m=text 9 RTP/AVP 0", "o=- x y IN IP4", "t=x"),
    *("m=application 9 UDP/DTLS/SCTP x", "a=", "=", "garbage"),
]
ODD_CANDIDATES = [
    *("a=candidate:1", "a=candidate:", "a=candidate:1 1 udp 2130706431 127.0.0.1"),
    "a=candidate:1 x udp 1 127.0.0.1 9 typ host",
    "a=candidate:1 1 udp x 127.0.0.1 9 typ host",
    "a=candidate:1 1 udp 1 127.0.0.1 x typ host",
    "a=candidate:1 1 udp 1 999.1.1.1 9 typ host",
    "a=candidate:1 1 udp 1 127.0.0.1 70000 typ host",
    "a=candidate:1 1 udp 1 127.0.0.1 -1 typ host",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ bogus",
    "a=candidate:1 1 udp 1 not-an-ip 9 typ host",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype x",
    "a=candidate:1 9 udp 1 ::1 9 typ host",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ srflx raddr",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ srflx raddr 1.2.3.4 rport x",
    "a=candidate:1 1 udp 99999999999999999999 127.0.0.1 9 typ host generation x",
    "a=candidate:1 1 udp 1 127.0.0.1 " + "9" * 5000 + " typ host",
]
WEIRD_VALUES: list[Any] = [
    *(None, True, 0, -1, 1.5, 10**30, "", "x" * 3000, "\x00", "\ud800", "9999-12-31"),
    *("0001-01-01", "../../etc/passwd", [], {}, [1, [2, [3]]], {"a": {"b": {}}}, ["a"] * 50),
]
"""What a mutated JSON body carries instead of the right value ("\\ud800" is a lone
surrogate: json.loads accepts it, nothing can encode it)."""
ODD_JSON = [
    *("NaN", "null", "[]", '"text"', "1e999", "\ufeff{}", "", "{", "}", "[{}]"),
    *('{"minutes": NaN}', '{"minutes": Infinity}', '{"minutes": 1e999}'),
    '{"minutes": ' + "9" * 5000 + "}",
    "{" + '"a": 1, ' * 1500 + '"b": 2}',
    '{"date": "\\ud800", "pupils": ["\\udfff"], "key": "\\ud83d", "text": "\\ud800"}',
]
STAFF_ENDPOINTS: list[tuple[str, dict[str, Any]]] = [
    (f"/api/rooms/{ROOM}/console", {"action": "lower_hand", "key": "nobody"}),
    (f"/api/rooms/{ROOM}/console", {"action": "preset", "name": "board"}),
    (f"/api/rooms/{ROOM}/console", {"action": "extend", "minutes": 5}),
    (f"/api/classes/{CLASS}/at-home", {"date": "2026-03-02", "pupils": []}),
    (f"/api/rooms/{ROOM}/lesson/extend", {"minutes": 5}),
    (f"/api/rooms/{ROOM}/camera", {"action": "nudge", "pan": 1, "tilt": 0, "zoom": 0}),
    (f"/api/rooms/{ROOM}/camera", {"action": "recall", "name": "board"}),
    (f"/api/admin/rooms/{ROOM}/config", {"text": SMALL_ROOM, "save": False}),
]
"""Staff JSON endpoints, each with a harmless body: nothing ends, starts or is saved."""
FIXED_KEYS = {"action", "save"}  # never mutated, so the bodies stay harmless
QUERY_VALUES = [
    *("9999-12-31", "0001-01-01", "2026-02-30", "", "x", "\x00", "%ff", "9" * 5000, "-1"),
    *("1e9", "../..", "2026-W01", "20260101", "nope", ROOM, "csv", "xlsx"),
]


@dataclass
class Findings:
    """How many cases of each kind ran, and what went wrong in them."""

    cases: dict[str, int] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def check(
        self, kind: str, what: str | bytes, answer: httpx.Response | Exception, page: bool = False
    ) -> None:
        """Count a case; note it when the answer is a 5xx, a traceback, no answer at all or
        (unless it is a `page`, HTML for people) a 4xx without a JSON problem body."""
        self.cases[kind] = self.cases.get(kind, 0) + 1
        if isinstance(answer, Exception):
            problem = f"{type(answer).__name__}: {answer}"
        elif answer.status_code >= 500:
            problem = f"{answer.status_code} {answer.text[:100]!r}"
        elif "Traceback" in answer.text:
            problem = f"{answer.status_code} with a traceback"
        elif (
            answer.status_code >= 400
            and not page
            and "json" not in answer.headers.get("content-type", "")
        ):
            problem = f"{answer.status_code} without a problem body: {answer.text[:100]!r}"
        else:
            return
        text = what.decode(errors="replace") if isinstance(what, bytes) else what
        self.fail(kind, f"{text[:160]!r}: {problem}")

    def fail(self, kind: str, what: str) -> None:
        self.failures.setdefault(kind, []).append(what)

    def summary(self) -> str:
        kinds = {**self.cases, **{k: 0 for k in self.failures if k not in self.cases}}
        lines = [f"{k}: {len(self.failures.get(k, []))} failed of {n}" for k, n in kinds.items()]
        for kind, found in self.failures.items():
            lines += [f"  {kind}: {one}" for one in found[:6]]
        return "\n".join(lines)


# ---------------------------------------------------------------- SDP


def _garble(rng: random.Random, line: str) -> str:
    start = rng.randrange(len(line) + 1)
    junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(0, 6)))
    return line[:start] + junk + line[start + rng.randint(0, 8) :]


def _drop(rng: random.Random, lines: list[str]) -> None:
    del lines[rng.randrange(len(lines))]


def _repeat(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])


def _garble_line(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines[i] = _garble(rng, lines[i])


def _truncate(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]


def _swap(rng: random.Random, lines: list[str]) -> None:
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]


def _huge_number(rng: random.Random, lines: list[str]) -> None:
    i = rng.choice([i for i, line in enumerate(lines) if re.search(r"\d", line)])
    number = rng.choice(list(re.finditer(r"\d+", lines[i])))
    line = lines[i]
    lines[i] = line[: number.start()] + rng.choice(BAD_NUMBERS) + line[number.end() :]


def _same_mids(rng: random.Random, lines: list[str]) -> None:
    mid = rng.choice(["0", "1", ""])
    lines[:] = [f"a=mid:{mid}" if line.startswith("a=mid:") else line for line in lines]


def _repeat_section(rng: random.Random, lines: list[str]) -> None:
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if starts:
        start = rng.choice(starts)
        end = next((s for s in starts if s > start), len(lines))
        at = rng.choice([*starts, len(lines)])
        lines[at:at] = lines[start:end]


def _odd_line(rng: random.Random, lines: list[str]) -> None:
    lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(ODD_SDP_LINES))


def _not_utf8(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    at = rng.randrange(len(lines[i]) + 1)
    lines[i] = lines[i][:at] + rng.choice(NOT_UTF8) + lines[i][at:]


OFFER_MUTATIONS: list[Callable[[random.Random, list[str]], None]] = [
    *(_drop, _repeat, _garble_line, _truncate, _swap, _huge_number, _same_mids),
    *(_same_mids, _repeat_section, _repeat_section, _odd_line, _odd_line, _not_utf8),
]


def mutated_offer(rng: random.Random, offer: str) -> bytes:
    lines = offer.rstrip("\r\n").split("\r\n")
    for _ in range(rng.randint(1, 3)):
        rng.choice(OFFER_MUTATIONS)(rng, lines)
    ending = rng.choice(["\r\n", "\r\n", "\r\n", "\n"])
    return (ending.join(lines) + ending).encode("utf-8", "surrogateescape")


def mutated_fragment(rng: random.Random, ufrag: str, pwd: str) -> tuple[bytes, str]:
    """A trickle-ice-sdpfrag body (RFC 8840) and its content type."""
    lines = [
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        "m=audio 9 RTP/AVP 0",
        "a=mid:0",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
    ]
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(8)
        if choice <= 2:
            lines[-1] = rng.choice(ODD_CANDIDATES)
        elif choice == 3:
            lines[-1] = _garble(rng, lines[-1])
        elif choice == 4:
            lines[3] = rng.choice(["a=mid:99", "a=mid:", "a=mid:" + "x" * 300])
        elif choice == 5:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(ODD_CANDIDATES + ODD_SDP_LINES))
        elif choice == 6:
            rng.choice([_drop, _repeat, _swap, _not_utf8, _huge_number])(rng, lines)
        else:
            lines[0] = "a=ice-ufrag:" + rng.choice(["other", "", ufrag + "x"])
    sdpfrag = "application/trickle-ice-sdpfrag"
    content_type = rng.choice([sdpfrag] * 6 + ["text/plain", "", "application/sdp"])
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape"), content_type


# ---------------------------------------------------------------- JSON


def deep(depth: int, opener: str = "[") -> str:
    return opener * depth + "1" + {"[": "]", '{"a":': "}"}[opener] * depth


def mutated_json(rng: random.Random, base: dict[str, Any]) -> tuple[bytes, str]:
    """A body and its content type: `base` with one value made odd, nested deep, cut
    short, not JSON, not UTF-8, or sent as another type."""
    text = json.dumps(base)
    kind = rng.randrange(8)
    if kind <= 2:
        keys = [k for k in base if k not in FIXED_KEYS]
        text = json.dumps({**base, rng.choice([*keys, "extra"]): rng.choice(WEIRD_VALUES)})
    elif kind == 3:
        nested = deep(rng.choice([64, 500, 999, 1500, 5000]), rng.choice(["[", '{"a":']))
        text = nested if rng.random() < 0.5 else text[:-1] + f', "x": {nested}}}'
    elif kind == 4:
        text = text[: rng.randrange(len(text))]
    elif kind == 5:
        text = rng.choice(ODD_JSON)
    elif kind == 6:
        raw, at = text.encode(), rng.randrange(len(text) + 1)
        return raw[:at] + rng.choice(NOT_UTF8).encode("utf-8", "surrogateescape") + raw[at:], (
            "application/json"
        )
    else:
        odd_type = rng.choice(["text/plain", "", "application/json; charset=utf-16"])
        return text.encode("utf-16" if "16" in odd_type else "utf-8"), odd_type
    return text.encode("utf-8", "surrogatepass"), "application/json"


# ---------------------------------------------------------------- the classroom channel


def channel_messages(rng: random.Random) -> tuple[list[str], list[str | bytes]]:
    """(messages the channel parses, at most 10 in 10 s; messages it drops unread, free
    of that limit: binary, or longer than 2000 characters)."""
    parsed = [
        *("[" * 1500, deep(999), deep(600, '{"a":'), "[" * 1999),
        '{"type": "hand", "up": ' + "[" * 1900,
        '{"type": "message", "text": ' + deep(900) + "}",
        '{"type": "message", "text": "\\ud800 lone"}',
    ]
    bases: list[dict[str, Any]] = [
        {"type": "hand", "up": True},
        {"type": "message", "text": "Thưa cô"},
    ]
    while len(parsed) < ROUNDS * PARSED_PER_ROUND:
        text = mutated_json(rng, rng.choice(bases))[0].decode("utf-8", "replace")
        if len(text) <= 2000:
            parsed.append(text)
    unread: list[str | bytes] = [b"[" * 1500, b'{"type": "hand", "up": true}', bytes(range(256))]
    unread += ["x" * 5000, "[" * 3000, "x" * 100_000, "[" * 65_000]
    unread += [rng.randbytes(rng.randint(1, 3000)) for _ in range(ROUNDS * UNPARSED_PER_ROUND)]
    return parsed, unread


@dataclass
class ChannelViewer(Viewer):
    """A `Viewer` of the camera alone with its classroom channel, as the page opens it."""

    video_lines: int = 1
    audio: bool = False
    channel: bool = True

    async def answered(self, within: float = 5.0) -> bool:
        """Whether a raised hand is still answered on the channel."""
        assert self.classroom is not None
        self.classroom.received.clear()
        said = await self.classroom.say({"type": "hand", "up": True})
        return said.status_code == 204 and await eventually(
            lambda: {"type": "hand", "up": True} in self.received, within
        )


# ---------------------------------------------------------------- the fuzzers


async def fuzz_offers(
    rng: random.Random, client: httpx.AsyncClient, service: Service, findings: Findings
) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # what the pupil's page offers
    for kind in ("video", "video", "audio"):
        pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = str(pc.localDescription.sdp)
    await pc.close()
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {service.token(ROOM)}"}
    for _ in range(OFFERS):
        body = mutated_offer(rng, offer)
        try:
            answer = await client.post(service.whep(ROOM), content=body, headers=headers)
        except httpx.HTTPError as exc:
            findings.check("offer", body, exc)
            continue
        findings.check("offer", body, answer)
        if answer.status_code == 201:
            await client.delete(str(httpx.URL(service.whep(ROOM)).join(answer.headers["location"])))


async def fuzz_patches(
    rng: random.Random, client: httpx.AsyncClient, viewer: Viewer, findings: Findings
) -> None:
    """Trickled candidates and wishes for a connected viewer's session (it must stay)."""
    assert viewer.location is not None
    ufrag = re.search(r"a=ice-ufrag:(\S+)", viewer.pc.localDescription.sdp)
    pwd = re.search(r"a=ice-pwd:(\S+)", viewer.pc.localDescription.sdp)
    assert ufrag is not None and pwd is not None
    for _ in range(PATCHES):
        if rng.random() < 0.25:
            body, content_type = mutated_json(rng, {"save_data": False})
        else:
            body, content_type = mutated_fragment(rng, ufrag.group(1), pwd.group(1))
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            answer = await client.patch(viewer.location, content=body, headers=headers)
        except httpx.HTTPError as exc:
            findings.check("patch", body, exc)
            continue
        findings.check("patch", body, answer)


async def fuzz_staff(
    rng: random.Random, client: httpx.AsyncClient, service: Service, key: str, findings: Findings
) -> None:
    for _ in range(STAFF_BODIES):
        path, base = rng.choice(STAFF_ENDPOINTS)
        body, content_type = mutated_json(rng, base)
        headers = {"Authorization": f"Bearer {key}"}
        if content_type:
            headers["Content-Type"] = content_type
        what = path.encode() + b" " + body
        try:
            answer = await client.post(f"{service.base}{path}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            findings.check("staff", what, exc)
            continue
        findings.check("staff", what, answer)


async def fuzz_queries(
    rng: random.Random, client: httpx.AsyncClient, service: Service, key: str, findings: Findings
) -> None:
    """The query strings and paths of the reports, at-home and recordings."""
    for _ in range(QUERIES):
        value, other = rng.choice(QUERY_VALUES), rng.choice(QUERY_VALUES)
        later = str(int(time.time()) + 60)
        path, params = rng.choice(
            [
                ("/reports", {"date": value, "room": rng.choice(["", ROOM, other])}),
                ("/reports/export", {"date": value, "room": other, "format": other}),
                (f"/api/classes/{CLASS}/at-home", {"date": value}),
                ("/media/r1-20260302-0800/lesson.mp4", {"e": value, "s": other}),
                (f"/media/{quote(value, safe='')}/lesson.mp4", {"e": later, "s": other}),
                (f"/api/recordings/{CLASS}", {}),
                (f"/recordings/{CLASS}", {"t": value}),
            ]
        )
        headers = {"Authorization": f"Bearer {rng.choice([key, 'x.y', 'AAAA'])}"}
        what = f"{path} {params}"
        try:
            answer = await client.get(f"{service.base}{path}", params=params, headers=headers)
        except httpx.HTTPError as exc:
            findings.check("query", what, exc)
            continue
        findings.check("query", what, answer, page=True)


async def fuzz_channels(
    rng: random.Random,
    client: httpx.AsyncClient,
    viewers: list[ChannelViewer],
    findings: Findings,
) -> None:
    plans = [channel_messages(rng) for _ in viewers]
    for round_ in range(ROUNDS):
        if round_:
            await asyncio.sleep(CHANNEL_WINDOW)
        for viewer, (parsed, unread) in zip(viewers, plans, strict=True):
            assert viewer.classroom is not None and viewer.classroom.location is not None
            batch: list[str | bytes] = [
                *parsed[round_ * PARSED_PER_ROUND : (round_ + 1) * PARSED_PER_ROUND],
                *unread[round_ * UNPARSED_PER_ROUND : (round_ + 1) * UNPARSED_PER_ROUND],
            ]
            headers = {**viewer.classroom.headers, "Content-Type": "application/json"}
            for message in batch:
                try:
                    answer = await client.post(
                        viewer.classroom.location, content=message, headers=headers
                    )
                except httpx.HTTPError as exc:
                    findings.check("channel", message, exc)
                    continue
                findings.check("channel", message, answer)
                await asyncio.sleep(0.02)


# ---------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """The service with a small always-live room, and its staff key."""
    tmp = tmp_path_factory.mktemp("fuzz")
    config = write_site(tmp, {ROOM: SMALL_ROOM})
    with run_service(tmp, ["--config", str(config)]) as service:
        yield service, staff_key(load(config, data_dir=service.data_dir))


async def test_bad_input_gets_4xx_and_the_service_goes_on(fuzzed: tuple[Service, str]) -> None:
    service, key = fuzzed
    rng = [random.Random(SEED + n) for n in range(5)]  # one each: the fuzzers interleave
    findings = Findings()
    chatting = [ChannelViewer(service.whep(ROOM), service.token(ROOM)) for _ in range(2)]
    patched = Viewer(service.whep(ROOM), service.token(ROOM), video_lines=1, audio=False)
    viewers = [*chatting, patched]
    # idle connections dropped before the service's 5 s keep-alive ends: a ReadError is
    # then the service's doing (after a 500 it closes the connection the client reuses)
    limits = httpx.Limits(keepalive_expiry=2)
    try:
        for viewer in viewers:
            assert (await viewer.connect()).status_code == 201
        assert await eventually(lambda: all(v.stats["camera"].frames for v in viewers), 10)
        assert all([await viewer.answered() for viewer in chatting])
        async with httpx.AsyncClient(timeout=20, limits=limits) as client:
            await asyncio.gather(
                fuzz_channels(rng[0], client, chatting, findings),
                fuzz_offers(rng[1], client, service, findings),
                fuzz_patches(rng[2], client, patched, findings),
                fuzz_staff(rng[3], client, service, key, findings),
                fuzz_queries(rng[4], client, service, key, findings),
            )
            for number, viewer in enumerate(viewers):
                name, frames = f"viewer {number}", viewer.stats["camera"].frames
                if not await eventually(lambda: viewer.stats["camera"].frames > frames + 5, 5):  # noqa: B023
                    findings.fail("session", f"{name}: no more frames")
                if isinstance(viewer, ChannelViewer) and not await viewer.answered():
                    findings.fail("session", f"{name}: no answer to a raised hand")
            console = await client.get(f"{service.base}/api/rooms/{ROOM}/console")
            findings.check("console", "the console after the fuzzing", console)
        print(f"\n{findings.summary()}")
        assert not findings.failures, findings.summary()
        fresh = Viewer(service.whep(ROOM), service.token(ROOM), video_lines=1, audio=False)
        try:
            assert (await fresh.connect()).status_code == 201
            assert await eventually(lambda: fresh.stats["camera"].frames >= 5, 10)
        finally:
            await fresh.close()
    finally:
        for viewer in viewers:
            await viewer.close()
