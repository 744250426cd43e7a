"""HTTPS from the config's certificate and key: the service serves https only, its links
say https, a real aiortc viewer plays over it, the staff cookie is Secure, and in
Chromium the pupil's page is a secure context (the microphone is allowed there).
Missing or mismatched files are config problems with FILE:LINE."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.access.staff import set_password
from tests.browser_probe import chromium
from tests.conftest import SMALL_ROOM, cli, run_service, write_site
from tests.whep_client import Viewer, eventually

ROOM = SMALL_ROOM
SITE = """school = "Trường Thử"
[http]
certificate = "tls/edge.pem"
private_key = "tls/edge.key"
"""


def self_signed(folder: Path, name: str = "edge") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "classroom-edge test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_files_are_checked(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}:3: http.certificate: no such file {tmp_path}/tls/edge.pem (expected a PEM file)"
    ]
    self_signed(tmp_path / "tls")
    self_signed(tmp_path / "other", "edge")
    (tmp_path / "tls" / "edge.key").write_bytes((tmp_path / "other" / "edge.key").read_bytes())
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{config}:3: http.certificate: cannot use {tmp_path}/tls/edge.pem")
    assert "(expected a PEM certificate chain and its unencrypted private key)" in line
    half = write_site(tmp_path / "half", {"r1": ROOM}, 'school = "T"\n[http]\ncertificate = "x"\n')
    result = cli("check-config", "--config", str(half), check=False)
    assert "http: certificate and private_key go together" in result.stderr


def test_https_serves_links_viewers_cookies_and_a_secure_page(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path / "tls")
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    trust = ssl.create_default_context(cafile=str(cert))
    with run_service(tmp_path, ["--config", str(config)]) as service:
        base = service.base.replace("http://", "https://")
        assert f"serving on {base}" in service.log.read_text()
        assert httpx.get(f"{base}/healthz", verify=trust, timeout=10).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{service.base}/healthz", timeout=5)  # plain http is not served
        links = service.links("r1")
        assert all(str(link["url"]).startswith("https://") for link in links)
        token = str(next(link for link in links if link["kind"] == "class")["token"])

        async def play() -> int:
            viewer = Viewer(f"{base}/whep/r1", token, video_lines=1)
            async with httpx.AsyncClient(verify=trust, timeout=20) as client:
                try:
                    assert (await viewer.connect(client)).status_code == 201
                    await eventually(lambda: viewer.stats["camera"].frames >= 20, 20)
                    return viewer.stats["camera"].frames
                finally:
                    await viewer.close(client)

        assert asyncio.run(play()) >= 20

        set_password(service.data_dir, "mật-khẩu-thử")
        login = httpx.post(
            f"{base}/login",
            data={"password": "mật-khẩu-thử", "next": "/reports"},
            headers={"X-Forwarded-For": "198.51.100.7"},
            verify=trust,
            timeout=10,
        )
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie

        page_url = f"{base}/join/{token}"
        with chromium(["--ignore-certificate-errors"]) as context:
            page = context.new_page()
            page.goto(page_url)
            secure = page.evaluate(
                "() => window.isSecureContext && !!(navigator.mediaDevices"
                " && navigator.mediaDevices.getUserMedia)"
            )
        assert secure is True
