"""Join tokens: HMAC-SHA256 signed grants for a room, a class and optionally a pupil."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SECRET_BYTES = 32
SIGNATURE_BYTES = 16


class TokenError(ValueError):
    """A token that must be refused; the message says why (for logs, not for pupils)."""


@dataclass(frozen=True)
class Grant:
    room: str
    class_name: str
    pupil_id: str | None
    expires: int
    """Unix time after which the token is refused."""
    generation: int = 0
    """The pupil's (or the class link's) generation when issued; revoking raises it."""

    @property
    def kind(self) -> str:
        return "student" if self.pupil_id else "class"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the canonical unpadded URL-safe form, so one grant has one string."""
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64")
    return data


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret too short")
        self._secret = secret

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    def sign(self, text: str) -> str:
        """A signature of `text` (signed media URLs)."""
        return _b64(self._sign(b"sign:" + text.encode()))

    def signed(self, text: str, signature: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.sign(text).encode())

    def issue(self, grant: Grant) -> str:
        body: dict[str, object] = {"r": grant.room, "c": grant.class_name, "e": grant.expires}
        if grant.pupil_id:
            body["p"] = grant.pupil_id
        if grant.generation:
            body["g"] = grant.generation
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str, now: float | None = None) -> Grant:
        try:
            payload_text, signature_text = token.split(".")
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except ValueError:
            raise TokenError("malformed token") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise TokenError("bad signature")
        try:
            body = json.loads(payload)
            grant = Grant(
                str(body["r"]), str(body["c"]), body.get("p"), int(body["e"]), int(body.get("g", 0))
            )
        except (ValueError, KeyError, TypeError):
            raise TokenError("malformed payload") from None
        if (time.time() if now is None else now) >= grant.expires:
            raise TokenError("expired")
        return grant


def load_or_create_secret(path: Path) -> bytes:
    """The token secret, created (random, mode 0600) on first use."""
    try:
        secret = path.read_bytes()
        if len(secret) >= 16:
            return secret
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)  # never replace a secret another process just made
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes()
