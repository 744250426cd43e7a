"""What the internet sends a media port: hostile UDP datagrams for the tests and the bench
(tests/test_hostile_datagrams.py, bench/hostile.py), sent on loopback from other
127.x addresses or, as root, spoofed as the pupil's own address and port (a raw socket
with IP_HDRINCL)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import random
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from OpenSSL import SSL

Address = tuple[str, int]

MAGIC = 0x2112A442
BINDING_REQUEST = 0x0001


def candidates(sdp: str) -> list[Address]:
    """The UDP host candidates (address, port) of an SDP."""
    found = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", sdp, re.IGNORECASE)
    return [(host, int(port)) for host, port in found]


# ------------------------------------------------------------------ datagrams


def stun(attributes: Iterable[tuple[int, bytes]], *, length_fix: int = 0) -> bytes:
    """A STUN binding request carrying `attributes` (type, value) as given, however
    wrong; `length_fix` makes the header's length lie."""
    body = b""
    for kind, value in attributes:
        body += struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)
    header = struct.pack("!HHI12s", BINDING_REQUEST, len(body) + length_fix, MAGIC, os.urandom(12))
    return header + body


def stun_short_priority() -> bytes:
    """PRIORITY (0x0024) of 2 bytes instead of 4: aioice's parser raises struct.error."""
    return stun([(0x0006, b"abcd:efgh"), (0x0024, b"\x00\x01")])


def stun_bad_integrity(username: str = "abcd:efgh") -> bytes:
    """A well-formed binding request whose MESSAGE-INTEGRITY is keyed with a guess."""
    head = [(0x0006, username.encode()), (0x0024, struct.pack("!I", 0x6E7F1EFF))]
    partial = stun(head)
    # the HMAC covers the message with its length counting MESSAGE-INTEGRITY (24 bytes)
    size = len(partial) - 20 + 24
    covered = partial[:2] + struct.pack("!H", size) + partial[4:]
    digest = hmac.new(b"not-the-password", covered, hashlib.sha1).digest()
    return covered + struct.pack("!HH", 0x0008, 20) + digest


def stun_truncated() -> bytes:
    """A binding request cut short: its header says more than came."""
    return stun_bad_integrity()[:-9]


def client_hello() -> bytes:
    """A real DTLS ClientHello, as a stranger would open a handshake."""
    connection = SSL.Connection(SSL.Context(SSL.DTLS_METHOD), None)
    connection.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):  # it waits for the ServerHello
        connection.do_handshake()
    hello: bytes = connection.bio_read(4096)
    return hello


def dtls_garbage(rng: random.Random, size: int = 120) -> bytes:
    """A handshake record header (content type 22, DTLS 1.2) around noise."""
    body = rng.randbytes(size)
    return struct.pack("!BHH6sH", 22, 0xFEFD, 0, rng.randbytes(6), len(body)) + body


def rtp(rng: random.Random, size: int = 1000, ssrc: int | None = None) -> bytes:
    """An RTP (or SRTP: the tag is noise too) packet of `size` bytes, payload type 96."""
    header = struct.pack(
        "!BBHII",
        0x80,
        96,
        rng.randrange(1 << 16),
        rng.randrange(1 << 32),
        rng.randrange(1 << 32) if ssrc is None else ssrc,
    )
    return header + rng.randbytes(max(0, size - len(header)))


def rtcp(rng: random.Random) -> bytes:
    """A receiver report with a PLI after it and an SRTCP-like trailer of noise."""
    rr = struct.pack("!BBHI", 0x81, 201, 7, rng.randrange(1 << 32)) + rng.randbytes(24)
    pli = struct.pack("!BBHII", 0x81, 206, 2, rng.randrange(1 << 32), rng.randrange(1 << 32))
    return rr + pli + struct.pack("!I", 0x80000001) + rng.randbytes(10)


@dataclass(frozen=True)
class Attack:
    """Datagrams of one kind: `make(rng)` gives the next one."""

    name: str
    make: Callable[[random.Random], bytes]
    count: int = 20


def attacks() -> list[Attack]:
    hello = client_hello()
    return [
        Attack("zero-length", lambda rng: b""),
        Attack("one byte", lambda rng: bytes([rng.choice((0x00, 0x16, 0x80, 0xFF))])),
        Attack("1,501 bytes RTP-like", lambda rng: rtp(rng, 1501)),
        Attack("65,507 bytes", lambda rng: rtp(rng, 65507), count=5),
        Attack("truncated STUN", lambda rng: stun_truncated()),
        Attack("STUN with a 2-byte PRIORITY", lambda rng: stun_short_priority()),
        Attack("STUN with bad integrity", lambda rng: stun_bad_integrity()),
        Attack("DTLS garbage", dtls_garbage),
        Attack("DTLS ClientHello (after the pupil's)", lambda rng: hello, count=5),
        Attack("forged RTP/SRTP", rtp, count=200),
        Attack("forged RTCP/SRTCP", rtcp, count=200),
    ]


def flood(rng: random.Random) -> Iterator[bytes]:
    """An endless mix of every attack but the giant datagrams."""
    kinds = [a for a in attacks() if a.name != "65,507 bytes"]
    while True:
        yield rng.choice(kinds).make(rng)


# ------------------------------------------------------------------ sending


def ip_udp(source: Address, target: Address, payload: bytes) -> bytes:
    """An IPv4 packet carrying a UDP datagram (checksum 0: none; the kernel fills in the
    IP checksum, identification and total length of a raw socket's packet)."""
    udp = struct.pack("!HHHH", source[1], target[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(target[0]),
    )
    return ip + udp


class Sender:
    """Datagrams to `target` from UDP sockets on other loopback addresses, and (as root)
    spoofed from any address and port."""

    def __init__(self, target: Address, strangers: Iterable[str] = ("127.0.0.2",)) -> None:
        self.target = target
        self.sockets = []
        for address in strangers:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self.sockets.append(sock)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = 0

    def send(self, payload: bytes, spoof: Address | None = None) -> None:
        """From a stranger (round robin), or from `spoof`."""
        try:
            if spoof is None:
                self.sockets[self.sent % len(self.sockets)].sendto(payload, self.target)
            else:
                self.raw.sendto(ip_udp(spoof, self.target, payload), (self.target[0], 0))
        except BlockingIOError:
            return  # a full send buffer drops it, as the internet would
        self.sent += 1

    def paced(
        self, payloads: Iterator[bytes], count: int, seconds: float, spoof: Address | None = None
    ) -> None:
        """`count` datagrams spread over about `seconds` (blocking: run it in a thread)."""
        started = time.monotonic()
        batch = max(1, count // max(1, int(seconds * 100)))
        for done in range(0, count, batch):
            for _ in range(min(batch, count - done)):
                self.send(next(payloads), spoof)
            ahead = started + seconds * (done + batch) / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def close(self) -> None:
        for sock in [*self.sockets, self.raw]:
            sock.close()
