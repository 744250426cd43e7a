"""What a room sends the school hub is signed with the room's own key: HMAC-SHA256 over
the room's name, the time of sending and the body. The hub knows every room's key; a
body signed with one room's key is that room's and no other's."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path

ROOM_HEADER = "X-Edge-Room"
TIME_HEADER = "X-Edge-Time"
SIGNATURE_HEADER = "X-Edge-Signature"


def read_key(path: Path) -> bytes:
    """The key in `path` (surrounding spaces and newlines are not part of it)."""
    return path.read_bytes().strip()


def signature(key: bytes, room: str, sent: str, body: bytes) -> str:
    message = room.encode() + b"\n" + sent.encode() + b"\n" + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_headers(key: bytes, room: str, now: dt.datetime, body: bytes) -> dict[str, str]:
    """The headers that carry `body` as room `room`'s, sent at `now`."""
    sent = now.astimezone(dt.UTC).isoformat()
    return {
        ROOM_HEADER: room,
        TIME_HEADER: sent,
        SIGNATURE_HEADER: signature(key, room, sent, body),
        "Content-Type": "application/json",
    }


def sent_at(headers: dict[str, str]) -> dt.datetime:
    """When a request `verify` accepted was signed."""
    return dt.datetime.fromisoformat(headers[TIME_HEADER.lower()])


def verify(
    keys: dict[str, bytes],
    headers: dict[str, str],
    body: bytes,
    now: dt.datetime,
    max_skew: float,
) -> tuple[int, str] | str:
    """The room that signed `body`, or (status, why not): 401 unsigned, unknown room,
    a stale time or a wrong signature; 403 signed with another room's key. `headers`
    with lower-case names."""
    room = headers.get(ROOM_HEADER.lower(), "")
    sent = headers.get(TIME_HEADER.lower(), "")
    given = headers.get(SIGNATURE_HEADER.lower(), "")
    key = keys.get(room)
    if key is None:
        return 401, f"{ROOM_HEADER}: not a room of this school"
    try:
        moment = dt.datetime.fromisoformat(sent)
    except ValueError:
        return 401, f"{TIME_HEADER}: an ISO 8601 time with offset"
    if moment.tzinfo is None or abs((now - moment).total_seconds()) > max_skew:
        return 401, f"{TIME_HEADER}: more than {max_skew:.0f} s from the hub's time"
    if not hmac.compare_digest(given, signature(key, room, sent, body)):
        for other, other_key in keys.items():
            if other != room and hmac.compare_digest(given, signature(other_key, room, sent, body)):
                return 403, f"room {other}'s key cannot write room {room}'s rows"
        return 401, f"{SIGNATURE_HEADER}: wrong signature for room {room}"
    return room
