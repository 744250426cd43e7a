"""Debian Chromium, driven by Playwright, watches the demo lesson from a join link.

Chromium offers no loopback ICE candidate: the service and the browser each get a
network namespace of the test's own, joined by a veth pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, ROOT, cli, free_port
from tests.netns import Host, available, two_hosts

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]


@contextlib.contextmanager
def service_in(host: Host, data_dir: Path) -> Iterator[str]:
    port = free_port()
    log = (data_dir.parent / "service.log").open("w")
    process = subprocess.Popen(
        host.command(
            sys.executable,
            "-m",
            "edge",
            "run",
            "--demo",
            "--data-dir",
            str(data_dir),
            "--host",
            host.address,
            "--port",
            str(port),
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://{host.address}:{port}"
    try:
        deadline = time.monotonic() + 30
        probe = host.command(
            sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('{base}/healthz')"
        )
        while subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
            assert process.poll() is None, "service exited"
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_chromium_plays_the_lesson(tmp_path: Path) -> None:
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    with two_hosts() as (server, viewer), service_in(server, data_dir) as base:
        links = json.loads(
            cli("links", "demo", "--demo", "--data-dir", str(data_dir), "--json").stdout
        )
        pupil = next(link for link in links if link["kind"] == "student")
        url = f"{base}/join/{pupil['token']}"
        result_path = tmp_path / "result.json"
        screenshot = ARTIFACTS / "join-390x844.png"
        subprocess.run(
            viewer.command(
                sys.executable,
                str(ROOT / "tests" / "browser_probe.py"),
                url,
                str(result_path),
                str(screenshot),
                "15",
                viewer.device,
            ),
            check=True,
            timeout=180,
            cwd=ROOT,
        )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    stats = result["stats"]
    (ARTIFACTS / "join-result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    videos = list(stats["video"].values())
    assert len(videos) == 2, stats
    assert all(v["framesDecoded"] > 30 for v in videos), stats
    assert sorted((v["width"], v["height"]) for v in videos) == [(1280, 720), (1920, 1080)]
    assert stats["audio"]["packetsReceived"] > 0, stats
    assert result["played_after"] < 15
    assert pupil["name"] in result["text"]
    assert screenshot.stat().st_size > 10_000
    assert not [line for line in result["console"] if line.startswith("pageerror")], result
    # the network drops: the page notices, then rejoins by itself once the link is back
    assert result["reconnecting_after"] is not None, result
    assert result["rejoined_after"] is not None and result["rejoined_after"] < 30, result
