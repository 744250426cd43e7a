from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from edge.access.tokens import Grant, TokenError, TokenSigner, load_or_create_secret


def test_secret_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret"
    first = load_or_create_secret(path)
    assert len(first) == 32 and load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_round_trip_and_refusals(tmp_path: Path) -> None:
    signer = TokenSigner(load_or_create_secret(tmp_path / "secret"))
    grant = Grant("p101", "6A1", "0101000101", int(time.time()) + 60)
    token = signer.issue(grant)
    assert signer.verify(token) == grant and grant.kind == "student"
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=time.time() + 61)
    with pytest.raises(TokenError, match="signature"):
        TokenSigner(b"another secret of 32 bytes......").verify(token)
    payload, signature = token.split(".")
    forged = Grant("p101", "6A1", "9999999999", grant.expires)
    with pytest.raises(TokenError):
        signer.verify(signer.issue(forged).split(".")[0] + "." + signature)
    with pytest.raises(TokenError, match="malformed"):
        signer.verify("no-dot")
    assert payload
