"""Chromium plays via Janus: the demo service in relay mode (`[relay] kind = "janus"`),
Debian's Janus in a namespace of its own between the service's and the viewer's.

The pupil's page gets its Janus grant from `POST /relay/demo`, plays the streaming plugin's
offer (camera, board and audio by mid), beats the service, rejoins by itself after the
network drops, and DELETEs its session on leaving; attendance shows the pupil's sessions.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.relay import mountpoint_id
from tests.conftest import ARTIFACTS, ROOT, run_service
from tests.janus_env import Janus, available, relay_hosts, run_janus
from tests.netns import available as netns_available

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (available() and netns_available() and Path("/usr/bin/chromium").exists()),
        reason="needs root, `ip netns`, Debian's janus and chromium (see README test command)",
    ),
]


def relay_config(tmp: Path, janus: Janus) -> Path:
    """The embedded demo with a [relay] table pointing at this Janus."""
    folder = tmp / "config"
    shutil.copytree(ROOT / "edge" / "demo", folder)
    (folder / "janus-admin.secret").write_text(janus.admin_secret + "\n")
    edge = folder / "edge.toml"
    edge.write_text(
        edge.read_text()
        + "\n[relay]\n"
        + 'kind = "janus"\n'
        + f'api_url = "{janus.api_url}"\n'
        + f'admin_url = "{janus.admin_url}"\n'
        + 'admin_secret_file = "janus-admin.secret"\n'
        + f'public_url = "{janus.viewer_api_url}"\n'
    )
    return edge


def test_chromium_plays_via_janus(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    result_path = tmp_path / "result.json"
    screenshot = ARTIFACTS / "join-relay-390x844.png"
    with relay_hosts() as hosts, run_janus(tmp_path, hosts) as janus:
        config = relay_config(tmp_path, janus)
        with run_service(
            tmp_path, ["--config", str(config)], hosts.service.address, hosts.service.command()
        ) as service:
            pupil = next(link for link in service.links() if link["kind"] == "student")
            subprocess.run(
                hosts.viewer.command(
                    sys.executable,
                    str(ROOT / "tests" / "relay_probe.py"),
                    f"{service.base}/join/{pupil['token']}",
                    str(result_path),
                    str(screenshot),
                    "30",
                    hosts.viewer.device,
                    hosts.viewer_side,
                ),
                check=True,
                timeout=240,
                cwd=ROOT,
            )
            data_dir = service.data_dir
    result = json.loads(result_path.read_text(encoding="utf-8"))
    (ARTIFACTS / "join-relay-result.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1)
    )

    # the page played from Janus: both videos decode at their sizes, the audio arrives
    stats, hook = result["stats"], result["hook"]
    assert hook["relay"] is True and hook["state"] == "live", hook
    assert hook["janus"]["mountpoint"] == mountpoint_id("demo"), hook
    assert sorted(hook["mids"]) == [["audio", "audio"], ["board", "video"], ["camera", "video"]]
    assert set(stats["video"]) == {"camera", "board"}, stats
    assert all(v["framesDecoded"] > 30 for v in stats["video"].values()), stats
    assert (stats["video"]["camera"]["width"], stats["video"]["camera"]["height"]) == (1280, 720)
    assert (stats["video"]["board"]["width"], stats["video"]["board"]["height"]) == (1920, 1080)
    assert stats["audio"]["packetsReceived"] > 0, stats
    assert hook["cameraPlaying"] == 1280 and hook["boardPlaying"] == 1920, hook
    assert hook["soundTracks"] == 1, hook
    assert result["played_after"] < 30, result
    # what it asked: a grant from the service, then Janus's own API; never WHEP
    requests = result["requests"]
    assert f"POST {service.base}/relay/demo" in requests, requests
    assert not [r for r in requests if "/whep/" in r], requests
    janus_calls = [r for r in requests if r.split(" ", 1)[1].startswith(janus.viewer_api_url)]
    assert any(r.startswith("GET ") and "maxev=" in r for r in janus_calls), janus_calls  # events
    session_url = hook["location"]
    assert session_url.startswith(f"{service.base}/relay/demo/"), hook
    assert f"POST {session_url}" in requests, requests  # a beat once connected
    # the pupil sees the lesson, in Vietnamese, named; no save-data switch (one rendition)
    assert str(pupil["name"]) in result["text"], result["text"]
    assert "Đang học trực tiếp" in result["text"], result["text"]
    assert hook["saveDataShown"] is False, hook
    assert screenshot.stat().st_size > 10_000
    assert not [line for line in result["console"] if line.startswith("pageerror")], result
    # the network drops: the page notices, then rejoins by itself through a new grant
    assert result["reconnecting_after"] is not None, result
    assert result["rejoined_after"] is not None and result["rejoined_after"] < 30, result
    rejoined = result["hook_after_drop"]
    assert rejoined["state"] == "live" and rejoined["location"] != session_url, rejoined
    # leaving the page ended its session at once (DELETE from pagehide)
    assert result["beat_after_leaving"] is not None, result

    # attendance: the pupil's relay sessions, the one before the drop and the one after
    with sqlite3.connect(data_dir / "lessons.db") as db:
        rows = db.execute(
            "SELECT session_id, pupil_id, verified, left_at FROM presence WHERE room = 'demo'"
        ).fetchall()
    sessions = {session_url.rsplit("/", 1)[1], str(rejoined["location"]).rsplit("/", 1)[1]}
    mine = [row for row in rows if row[0] in sessions]
    assert len(mine) == 2, rows
    assert all(row[1] == pupil["student_id"] and row[2] == 1 for row in mine), rows
    assert all(row[3] is not None for row in mine), rows  # both ended
