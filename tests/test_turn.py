"""TURN with time-limited credentials from a shared secret, against Debian's coturn.

The credential math against a vector computed by openssl; aiortc gets a relay candidate
from coturn over UDP and TCP with minted credentials, and a wrong secret is logged with
coturn's answer; the page and WHEP hand out minted credentials, never the secret; Debian
Chromium restricted to relayed candidates plays the lesson through coturn (UDP, then TCP)
and with a wrong secret says it cannot connect while the service logs why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection

from tests.conftest import ARTIFACTS, ROOT, cli, run_service, write_site
from tests.turn_probe import Turn, coturn
from webrtc.ice import GatherPolicy, TurnRest, gather_in, rtc_configuration, turn_rest_password

SECRET = "north-wind-secret"
ROOM = (
    'class = "6A1"\nalways_live = true\n'
    '[camera]\nkind = "test"\n[board]\nkind = "test"\n[mic]\nkind = "test"\n'
    "[[camera_renditions]]\nwidth = 640\nheight = 360\nfps = 15\nbitrate_kbps = 300\n"
    "[[board_renditions]]\nwidth = 640\nheight = 360\nfps = 5\nbitrate_kbps = 100\n"
)


def test_credential_matches_openssl_vector() -> None:
    # printf '%s' '1700000000:demo.pupil' | openssl dgst -sha1 -hmac north-wind-secret -binary
    #   | base64
    assert turn_rest_password(SECRET.encode(), "1700000000:demo.pupil") == (
        "d3awsqMcmm0MMcIPFdmvz7nJMbM="
    )


def test_mint_gives_expiry_label_and_hmac() -> None:
    turn = TurnRest(("turn:t.test:3478?transport=udp",), b"k", ttl_seconds=600)
    server = turn.mint("demo.ab12", now=1_700_000_000.7)
    assert server.username == "1700000600:demo.ab12"
    expected = base64.b64encode(hmac.new(b"k", b"1700000600:demo.ab12", hashlib.sha1).digest())
    assert server.credential == expected.decode()
    assert server.urls == ("turn:t.test:3478?transport=udp",)
    assert "b'k'" not in repr(turn)  # the secret stays out of logs


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    with coturn(tmp_path_factory.mktemp("coturn"), SECRET) as server:
        yield server


async def relay_candidates(server: TurnRest) -> list[str]:
    pc = RTCPeerConnection(rtc_configuration([server.mint("test")]))
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
    finally:
        await pc.close()
    return [line for line in sdp.splitlines() if "typ relay" in line]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_aiortc_allocates_with_minted_credentials(turn: Turn, transport: str) -> None:
    before = turn.allocations()
    gather_in(GatherPolicy())
    try:
        found = await relay_candidates(TurnRest((turn.url(transport),), SECRET.encode(), 600))
    finally:
        gather_in(None)
    assert len(found) == 1 and " 127.0.0.1 " in found[0], found
    assert turn.allocations() > before


async def test_wrong_secret_is_logged_with_coturns_answer(
    turn: Turn, caplog: pytest.LogCaptureFixture
) -> None:
    gather_in(GatherPolicy())
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="webrtc.ice"):
            found = await relay_candidates(TurnRest((turn.url("udp"),), b"not-the-secret", 600))
    finally:
        gather_in(None)
    assert found == []
    assert time.monotonic() - started < 5
    assert any(
        "no relay candidate" in r.message and "401 - Unauthorized" in r.message
        for r in caplog.records
    ), caplog.text


def turn_site(tmp: Path, urls: list[str], secret: str = SECRET) -> Path:
    (tmp / "turn-secret").write_text(secret + "\n")
    return write_site(
        tmp,
        {"lop6a1": ROOM},
        site='school = "Trường Thử"\n'
        + "[webrtc]\nconnect_timeout = 8\n"
        + '[[webrtc.ice_servers]]\nurls = ["stun:stun.school.test:3478"]\n'
        + "[webrtc.turn]\nurls = "
        + json.dumps(urls)
        + '\nsecret_file = "turn-secret"\nttl_minutes = 60\n',
    )


def test_missing_secret_file_is_file_line_key(tmp_path: Path) -> None:
    config = turn_site(tmp_path, ["turn:t.test:3478"])
    (tmp_path / "turn-secret").unlink()
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    line = config.read_text().splitlines().index('secret_file = "turn-secret"') + 1
    assert f"{config}:{line}: webrtc.turn.secret_file: no such file" in result.stderr, result


def test_page_and_whep_get_minted_credentials(tmp_path: Path) -> None:
    config = turn_site(tmp_path, ["turn:turn.school.test:3478?transport=udp"])
    with run_service(tmp_path, ["--config", str(config)]) as service:
        token = service.token("lop6a1")
        pages = [httpx.get(f"{service.base}/join/{token}", timeout=10).text for _ in range(2)]
    servers = []
    for page in pages:
        assert SECRET not in page
        start = page.index('"ice_servers": ') + len('"ice_servers": ')
        servers.append(json.JSONDecoder().raw_decode(page, start)[0])
    for listed in servers:
        assert listed[0] == {"urls": ["stun:stun.school.test:3478"]}
        minted = listed[1]
        expiry, _, label = minted["username"].partition(":")
        assert abs(int(expiry) - (time.time() + 3600)) < 60
        assert label.startswith("lop6a1.")
        assert minted["credential"] == turn_rest_password(SECRET.encode(), minted["username"])
    assert servers[0][1]["username"] != servers[1][1]["username"]  # minted per page load


async def test_whep_link_headers_carry_minted_credentials(tmp_path: Path) -> None:
    from tests.whep_client import Viewer

    config = turn_site(tmp_path, ["turn:turn.school.test:3478?transport=udp"])
    with run_service(tmp_path, ["--config", str(config)]) as service:
        viewer = Viewer(service.whep("lop6a1"), service.token("lop6a1"), video_lines=1)
        try:
            response = await viewer.connect()
        finally:
            await viewer.close()
    assert response.status_code == 201, response.text
    links = response.headers.get_list("link")
    turn_links = [v for v in links if v.startswith("<turn:turn.school.test:3478?transport=udp>")]
    assert len(turn_links) == 1, links
    username = re.search(r'username="([^"]+)"', turn_links[0])
    credential = re.search(r'credential="([^"]+)"', turn_links[0])
    assert username and credential, turn_links
    assert credential.group(1) == turn_rest_password(SECRET.encode(), username.group(1))
    assert 'credential-type="password"' in turn_links[0]
    assert SECRET not in " ".join(links)


def chromium_relay(
    tmp: Path, urls: list[str], secret: str, seconds: float = 20
) -> tuple[dict[str, Any], str]:
    """The service on all addresses (so its own peer connections use TURN too), a pupil's
    page in Chromium allowed relayed candidates only: the probe's result and the log."""
    config = turn_site(tmp, urls, secret)
    with run_service(tmp, ["--config", str(config)], host="0.0.0.0") as service:
        token = service.token("lop6a1")
        url = f"http://127.0.0.1:{service.base.rsplit(':', 1)[1]}/join/{token}"
        result_path = tmp / "result.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "turn_probe.py"),
                url,
                str(result_path),
                str(seconds),
            ],
            check=True,
            timeout=120,
            cwd=ROOT,
        )
        time.sleep(0.5)
        log = service.log.read_text()
    result: dict[str, Any] = json.loads(result_path.read_text())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"turn-{tmp.name}.json").write_text(json.dumps(result, ensure_ascii=False))
    return result, log


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_chromium_plays_through_turn(tmp_path: Path, turn: Turn, transport: str) -> None:
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    result, log = chromium_relay(tmp_path, [turn.url(transport)], SECRET)
    stats = result["stats"]
    assert stats["policy"] == "relay", stats
    assert result.get("played_after") is not None and result["played_after"] < 20, result
    assert stats["pair"]["local"] == "relay", stats
    assert stats["pair"]["relayProtocol"] == transport, stats
    assert len(stats["frames"]) == 2 and min(stats["frames"].values()) > 30, stats
    assert stats["audioPackets"] > 0, stats
    assert stats["state"] == "live", stats
    assert "no relay candidate" not in log, log


@pytest.mark.browser
def test_chromium_with_a_wrong_secret_fails_cleanly(tmp_path: Path, turn: Turn) -> None:
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    result, log = chromium_relay(tmp_path, [turn.url("udp")], "not-the-secret", seconds=40)
    stats = result["stats"]
    assert result.get("played_after") is None, result
    assert "live" not in result["states"] and stats["pair"] is None, result
    assert any(e["code"] == 401 for e in stats["errors"]), stats  # coturn said Unauthorized
    # the page gives up on the attempt within its 20 s connect timer, says so, retries
    assert result.get("reconnecting_after") is not None, result
    assert result["reconnecting_after"] < 30, result
    assert "Chưa vào được lớp học" in result["text"], result["text"]
    assert "Traceback" not in log, log
    assert re.search(r"TURN turn:127\.0\.0\.1:\d+\?transport=udp: no relay candidate: .*401", log)


async def test_the_drill_allocates_with_minted_credentials(tmp_path: Path, turn: Turn) -> None:
    from edge.config.settings import load
    from edge.ops.drill import check_turn_credentials

    config = turn_site(tmp_path, [turn.url("udp"), turn.url("tcp")])
    steps = await check_turn_credentials(load(config))
    assert [s.status for s in steps] == ["pass", "pass"], [s.en for s in steps]
    assert all("relay" in s.en and "minted credentials" in s.en for s in steps)
    (tmp_path / "turn-secret").write_text("not-the-secret\n")
    [wrong, _] = await check_turn_credentials(load(config))
    assert wrong.status == "fail" and "(wrong secret?)" in wrong.en, wrong.en
    assert "sai khóa bí mật" in wrong.vi
