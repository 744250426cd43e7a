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
import os
import secrets
import time
from pathlib import Path

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
    path = password_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(line + "\n")
    aside.replace(path)


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


async def check_password_off_loop(data_dir: Path, password: str) -> bool:
    """`check_password` in the hashing thread: a flood of logins waits its turn there and
    never holds up the event loop, where the pupils' media runs."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(HASHING, check_password, data_dir, password)


def session_cookie(staff_key: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    body = f"{expires}.{secrets.token_urlsafe(9)}"
    signature = hmac.new(staff_key.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{signature}"


def valid_cookie(staff_key: str, value: str, now: float | None = None) -> bool:
    try:
        expires, nonce, signature = value.split(".")
        body = f"{expires}.{nonce}"
        wanted = hmac.new(staff_key.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]
        return hmac.compare_digest(signature, wanted) and int(expires) > (now or time.time())
    except ValueError:
        return False


def csrf_token(staff_key: str, session: str) -> str:
    """A page's anti-CSRF token, bound to its staff session (cookie value, or "local")."""
    return hmac.new(staff_key.encode(), f"csrf|{session}".encode(), hashlib.sha256).hexdigest()[:32]
