"""Who may do what over HTTP: problem bodies, bearer tokens, staff."""

from __future__ import annotations

import hmac
import html
import socket
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote, urlsplit

import ifaddr
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from edge.access.connections import body_deadline
from edge.access.staff import COOKIE, StaffSessions, csrf_token
from webrtc.client_json import parse_client_json


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem body."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


OWN_ADDRESSES_SECONDS = 30.0
_own: tuple[float, frozenset[str]] = (-OWN_ADDRESSES_SECONDS, frozenset())


def own_addresses() -> frozenset[str]:
    """This machine's addresses (loopback and every interface's), looked up at most
    every 30 s: a request from one of them comes from the board's own browser."""
    global _own
    now = time.monotonic()
    if now - _own[0] >= OWN_ADDRESSES_SECONDS:
        found = {"127.0.0.1", "::1"}
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                found.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0].split("%")[0])
        _own = (now, frozenset(found))
    return _own[1]


def own_names(*places: str | None) -> set[str]:
    """The names this machine answers to as the board's own page: its host name, and the
    hosts of `places` (the bind address, URLs such as `http.public_url`)."""
    hostname = socket.gethostname().lower()
    names = {hostname, f"{hostname}.local"}
    for place in filter(None, places):
        host = urlsplit(place).hostname if "://" in place else place
        if host and host not in ("0.0.0.0", "::"):
            names.add(host.lower())
    return names


def host_name(host: str) -> str:
    """The name in a `Host` header, without the port or an IPv6 address's brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


class Staff:
    """Who counts as staff: the mini-PC itself (the smart board's browser, from one of
    this machine's addresses, asking for one of its own names: a page elsewhere that
    rebinds a name to 127.0.0.1 is not), the staff key (`Authorization: Bearer`), or a
    staff login's cookie while its session lasts."""

    def __init__(self, key: str, sessions: StaffSessions, names: Collection[str]) -> None:
        self.key = key
        self.sessions = sessions
        self.names = frozenset(n.lower() for n in names) | {"localhost"}

    def own_host(self, request: Request) -> bool:
        """The request names this machine (`Host`): a configured name or an own address."""
        name = host_name(request.headers.get("host", ""))
        return name in self.names or name in own_addresses()

    def at_the_board(self, request: Request) -> bool:
        return (
            client_address(request) in own_addresses()
            and "x-forwarded-for" not in request.headers
            and self.own_host(request)
        )

    def holds_key(self, request: Request) -> bool:
        key = bearer(request)
        return key is not None and hmac.compare_digest(key.encode(), self.key.encode())


def is_staff(request: Request, staff: Staff) -> bool:
    """The board itself, the staff key, or a staff login (see `Staff`)."""
    if staff.at_the_board(request) or staff.holds_key(request):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and staff.sessions.valid(cookie)


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to pass `limit` bytes (from
    Content-Length, else while it streams in): nothing larger is ever held in memory.
    Raises `connections.BodyTimeout` (answered 408) when the body takes longer than
    `connections.BODY_SECONDS` in all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async with body_deadline():
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, limit: int = 16_384) -> dict[str, Any] | JSONResponse:
    """A staff command's JSON object body, or the problem to answer. JSON only: a page
    elsewhere that the board's browser opens cannot send it without a CORS preflight,
    which these routes never grant (no cross-site commands)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return problem(415, "Unsupported Media Type", "send application/json")
    body = await bounded_body(request, limit)
    if body is None:
        return problem(413, "Too large", f"at most {limit} bytes")
    try:
        wish = parse_client_json(body or b"{}")
    except ValueError as exc:
        return problem(400, "Malformed request", f"send a JSON object ({exc})")
    if not isinstance(wish, dict):
        return problem(400, "Malformed request", "send a JSON object")
    return wish


def staff_csrf(request: Request, staff: Staff) -> str:
    """The CSRF token this staff caller's page must send back (`X-CSRF-Token`)."""
    return csrf_token(staff.key, request.cookies.get(COOKIE) or "local")


def csrf_refusal(request: Request, staff: Staff) -> JSONResponse | None:
    """None when a staff change request may go ahead: a staff-key caller (no ambient
    credentials), or a page that sends back the token it was given; else the 403."""
    if staff.holds_key(request):
        return None
    sent = request.headers.get("x-csrf-token", "")
    if sent and hmac.compare_digest(sent.encode(), staff_csrf(request, staff).encode()):
        return None
    return problem(403, "CSRF token missing or wrong", "reload the page and try again")


def cors_headers(request: Request, origins: list[str], methods: str) -> dict[str, str]:
    """CORS answer headers for a player on another site (`[http] cors_origins`), the same
    for the WHEP and the relay endpoints; none for an origin not allowed."""
    origin = request.headers.get("origin")
    allowed = "*" if "*" in origins else (origin if origin in origins else None)
    if allowed is None:
        return {}
    headers = {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
        "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, Retry-After",
        "Access-Control-Max-Age": "600",
    }
    if allowed != "*":
        headers["Vary"] = "Origin"
    return headers


def staff_page_refusal(
    request: Request, staff: Staff, rooms: Collection[str], room: str
) -> Response | None:
    """For a staff page of `room` (HTML, read by a person): an unknown room is a page that
    says so, anyone but staff goes to the login and comes back; None: go ahead."""
    if room not in rooms:
        known = ", ".join(sorted(rooms))
        return HTMLResponse(
            '<!doctype html><html lang="vi"><meta charset="utf-8"><link rel="icon" href="data:,">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>Không có phòng này</title>"
            '<body style="font-family:sans-serif;max-width:30em;margin:3em auto;padding:0 1em">'
            f"<h1>Không có phòng {html.escape(room)}</h1>"
            f"<p>Các phòng ở đây: {html.escape(known)}.</p></body></html>",
            status_code=404,
        )
    if not is_staff(request, staff):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return None
