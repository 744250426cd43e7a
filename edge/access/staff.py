"""Staff login (the principal's reports, the console from another machine): one staff
password, set with `classroom-edge staff-password`, kept as a slow scrypt hash; a login
gives a signed, HttpOnly, SameSite=Strict cookie for 12 hours. The mini-PC itself (the
smart board) and the staff key (`Authorization: Bearer`) count as staff too."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from edge.config.files import write_atomically

COOKIE = "ce_staff"
SESSION_SECONDS = 12 * 3600
SCRYPT = {"n": 2**15, "r": 8, "p": 1}  # ~0.1 s and 32 MiB per check


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 2**20, dklen=32, **SCRYPT)


def password_file(data_dir: Path) -> Path:
    return data_dir / "staff-password"


def set_password(data_dir: Path, password: str) -> None:
    if len(password) < 8:
        raise ValueError("the staff password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    line = "scrypt$" + "$".join(
        base64.b64encode(part).decode() for part in (salt, _hash(password, salt))
    )
    write_atomically(password_file(data_dir), line + "\n", mode=0o600)


def check_password(data_dir: Path, password: str) -> bool:
    try:
        kind, salt, digest = password_file(data_dir).read_text().strip().split("$")
    except (OSError, ValueError):
        return False  # no password set: nobody logs in from afar
    if kind != "scrypt":
        return False
    return hmac.compare_digest(_hash(password, base64.b64decode(salt)), base64.b64decode(digest))


HASHING = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scrypt")
"""One scrypt at a time (32 MiB, ~0.1 s of a core each), in a thread of its own."""
MOST_WAITING = 64  # checks queued at once (~6 s of hashing); past it: come back shortly
_waiting = 0


class HashingBusy(RuntimeError):
    """Too many password checks are waiting (a flood of logins): try again shortly."""


async def check_password_off_loop(data_dir: Path, password: str) -> bool:
    """`check_password` in the hashing thread: a flood of logins waits its turn there and
    never holds up the event loop, where the pupils' media runs; past MOST_WAITING queued
    checks it raises `HashingBusy` at once (the flood does not queue minutes of work)."""
    global _waiting
    if _waiting >= MOST_WAITING:
        raise HashingBusy("too many password checks waiting")
    _waiting += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(HASHING, check_password, data_dir, password)
    finally:
        _waiting -= 1


def _password_tag(data_dir: Path) -> str:
    """Which staff password is set now ("" for none): a new one ends every login."""
    try:
        return hashlib.sha256(password_file(data_dir).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


class StaffSessions:
    """The staff logins this service holds, kept in the data dir (a restart keeps them).
    A cookie is valid only while its session is here: logout ends it, and a new staff
    password (`classroom-edge staff-password`, another process) ends them all, since
    each session notes the password it was opened under."""

    MOST = 1000  # sessions kept at once; the oldest go first

    def __init__(self, data_dir: Path, key: str, clock: Callable[[], float] = time.time) -> None:
        self.data_dir, self._key, self._clock = data_dir, key, clock
        self._path = data_dir / "staff-sessions.json"
        self._sessions: dict[str, tuple[int, str]] = {}  # nonce -> (expires, password tag)
        self._tag: tuple[tuple[int, int, int] | None, str] = (None, "")
        try:
            kept = json.loads(self._path.read_text(encoding="utf-8"))
            self._sessions = {str(n): (int(e), str(t)) for n, (e, t) in kept.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # none yet, or unreadable: nobody is logged in

    def _current_tag(self) -> str:
        try:
            info = password_file(self.data_dir).stat()
            seen: tuple[int, int, int] | None = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            seen = None
        if seen != self._tag[0]:
            self._tag = (seen, _password_tag(self.data_dir) if seen else "")
        return self._tag[1]

    def _signature(self, body: str) -> str:
        return hmac.new(self._key.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]

    def _save(self) -> None:
        now = self._clock()
        live = sorted(
            ((n, v) for n, v in self._sessions.items() if v[0] > now), key=lambda nv: nv[1][0]
        )
        self._sessions = dict(live[-self.MOST :])
        write_atomically(self._path, json.dumps(self._sessions), mode=0o600)

    def open(self) -> str:
        """A new login: the cookie's value."""
        expires = int(self._clock() + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(12)
        self._sessions[nonce] = (expires, self._current_tag())
        self._save()
        body = f"{expires}.{nonce}"
        return f"{body}.{self._signature(body)}"

    def _nonce(self, cookie: str) -> str | None:
        expires, _, rest = cookie.partition(".")
        nonce, _, signature = rest.partition(".")
        if not hmac.compare_digest(signature, self._signature(f"{expires}.{nonce}")):
            return None
        return nonce

    def valid(self, cookie: str) -> bool:
        nonce = self._nonce(cookie)
        held = self._sessions.get(nonce) if nonce is not None else None
        if held is None:
            return False
        expires, tag = held
        return expires > self._clock() and bool(tag) and tag == self._current_tag()

    def end(self, cookie: str) -> None:
        """Logout: this cookie is refused from now on."""
        nonce = self._nonce(cookie)
        if nonce is not None and self._sessions.pop(nonce, None) is not None:
            self._save()


def csrf_token(staff_key: str, session: str) -> str:
    """A page's anti-CSRF token, bound to its staff session (cookie value, or "local")."""
    return hmac.new(staff_key.encode(), f"csrf|{session}".encode(), hashlib.sha256).hexdigest()[:32]
