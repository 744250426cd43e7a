"""Who may do what over HTTP: problem bodies, bearer tokens, staff."""

from __future__ import annotations

import hmac
import html
import json
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote

import ifaddr
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .staff import COOKIE, csrf_token, valid_cookie


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


def is_staff(request: Request, staff_key: str) -> bool:
    """The mini-PC itself (the smart board's console, at 127.0.0.1 or at the address the
    service prints), the staff key, or a staff login."""
    if client_address(request) in own_addresses() and "x-forwarded-for" not in request.headers:
        return True
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and valid_cookie(staff_key, cookie):
        return True
    key = bearer(request)
    return key is not None and hmac.compare_digest(key.encode(), staff_key.encode())


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to pass `limit` bytes (from
    Content-Length, else while it streams in): nothing larger is ever held in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
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
        wish = json.loads(body or b"{}")
    except ValueError:
        wish = None
    if not isinstance(wish, dict):
        return problem(400, "Malformed request", "send a JSON object")
    return wish


def staff_csrf(request: Request, staff_key: str) -> str:
    """The CSRF token this staff caller's page must send back (`X-CSRF-Token`)."""
    return csrf_token(staff_key, request.cookies.get(COOKIE) or "local")


def csrf_refusal(request: Request, staff_key: str) -> JSONResponse | None:
    """None when a staff change request may go ahead: a staff-key caller (no ambient
    credentials), or a page that sends back the token it was given; else the 403."""
    key = bearer(request)
    if key is not None and hmac.compare_digest(key.encode(), staff_key.encode()):
        return None
    sent = request.headers.get("x-csrf-token", "")
    if sent and hmac.compare_digest(sent.encode(), staff_csrf(request, staff_key).encode()):
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
    request: Request, staff_key: str, rooms: Collection[str], room: str
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
    if not is_staff(request, staff_key):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return None
