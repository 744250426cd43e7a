"""Chromium plays via Janus: the demo service in relay mode (`[relay] kind = "janus"`),
Debian's Janus in a namespace of its own between the service's and the viewer's.

The pupil's page gets its Janus grant from `POST /relay/demo`, plays the streaming plugin's
offer (camera, board and audio by mid), beats the service, rejoins by itself after the
network drops, DELETEs its session on leaving (a reload) and says so when staff end the
lesson; attendance shows the pupil's sessions.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.live.relay import mountpoint_id
from tests.conftest import ARTIFACTS, ROOT, run_service
from tests.janus_env import admin_request, available, relay_config, relay_hosts, run_janus, tokens
from tests.netns import available as netns_available

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (available() and netns_available() and Path("/usr/bin/chromium").exists()),
        reason="needs root, `ip netns`, Debian's janus and chromium (see README test command)",
    ),
]


def test_chromium_plays_via_janus(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    result_path = tmp_path / "result.json"
    screenshot = ARTIFACTS / "join-relay-390x844.png"
    with relay_hosts() as hosts, run_janus(tmp_path, hosts) as janus:
        config = relay_config(tmp_path, janus, always_live=False)
        with run_service(
            tmp_path, ["--config", str(config)], hosts.service.address, hosts.service.command()
        ) as service:
            links = service.links()
            pupil = next(link for link in links if link["kind"] == "student")
            class_link = next(link for link in links if link["kind"] == "class")
            subprocess.run(
                hosts.viewer.command(
                    sys.executable,
                    str(ROOT / "tests" / "relay_probe.py"),
                    f"{service.base}/join/{pupil['token']}",
                    str(result_path),
                    str(screenshot),
                    "--seconds=45",
                    f"--drop={hosts.viewer.device}",
                    f"--gateway={hosts.viewer_side}",
                    f"--staff-key={(service.data_dir / 'staff-key').read_bytes().hex()}",
                    f"--class-link={service.base}/join/{class_link['token']}",
                ),
                check=True,
                timeout=240,
                cwd=ROOT,
            )
            data_dir = service.data_dir
            # Janus's sessions now (the service keeps none of its own), its tokens
            janus_sessions = admin_request(janus, hosts, {"janus": "list_sessions"})["sessions"]
            janus_tokens = tokens(janus, hosts)
    result = json.loads(result_path.read_text(encoding="utf-8"))
    (ARTIFACTS / "join-relay-result.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1)
    )

    # before the lesson: the waiting room, in Vietnamese; then staff start the lesson and
    # the page joins by itself (the 409 says when to ask again: within 15 s)
    assert result["waiting_after"] is not None, result
    assert "Chưa đến giờ học" in result["text_waiting"], result["text_waiting"]
    assert result["start_status"] == 201, result
    # the page played from Janus: both videos decode at their sizes, the audio arrives
    stats, hook = result["stats"], result["hook"]
    assert hook["relay"] is True and hook["state"] == "live", hook
    assert hook["janus"]["mountpoint"] == mountpoint_id("demo"), hook
    assert sorted(hook["mids"]) == [
        ["audio", "audio"],
        ["board", "video"],
        ["camera", "video"],
        ["ducked", "audio"],  # the room's microphone, quieter, for a pupil who speaks
    ]
    assert set(stats["video"]) == {"camera", "board"}, stats
    assert all(v["framesDecoded"] > 30 for v in stats["video"].values()), stats
    assert (stats["video"]["camera"]["width"], stats["video"]["camera"]["height"]) == (1280, 720)
    assert (stats["video"]["board"]["width"], stats["video"]["board"]["height"]) == (1920, 1080)
    assert stats["audio"]["packetsReceived"] > 0, stats
    assert hook["cameraPlaying"] == 1280 and hook["boardPlaying"] == 1920, hook
    assert hook["soundTracks"] == 1, hook
    # the page asks again within 15 s (the 409's Retry-After); the board needs 6 s for 30 frames
    assert result["first_picture_after"] < 15 + 5, result
    assert result["played_after"] < 15 + 5 + 15, result
    # what it asked: a grant from the service, then Janus's own API; never WHEP
    requests = result["requests"]
    assert requests.count(f"POST {service.base}/relay/demo") >= 2, requests  # 409, then 201
    assert not [r for r in requests if "/whep/" in r], requests
    janus_calls = [r for r in requests if r.split(" ", 1)[1].startswith(janus.viewer_api_url)]
    assert any(r.startswith("GET ") and "maxev=" in r for r in janus_calls), janus_calls  # events
    session_url = hook["location"]
    assert session_url.startswith(f"{service.base}/relay/demo/"), hook
    # a beat once connected, naming the page's Janus session
    assert f"POST {session_url}?janus={hook['janus']['session']}" in requests, requests
    # the pupil sees the lesson, in Vietnamese, named, and can save data (Janus simulcasts)
    assert str(pupil["name"]) in result["text"], result["text"]
    assert "Đang học trực tiếp" in result["text"], result["text"]
    assert hook["saveDataShown"] is True, hook
    assert screenshot.stat().st_size > 10_000
    assert not [line for line in result["console"] if line.startswith("pageerror")], result
    # the network drops: the page notices, then rejoins by itself through a new grant
    assert result["reconnecting_after"] is not None, result
    assert result["rejoined_after"] is not None and result["rejoined_after"] < 30, result
    rejoined = result["hook_after_drop"]
    assert rejoined["state"] == "live" and rejoined["location"] != session_url, rejoined
    # a reload: the page's pagehide DELETE ends its session at once; the new page plays
    assert result["left_session"] == rejoined["location"], result
    assert result["beat_after_leaving"] is not None, result
    reloaded = result["hook_after_reload"]
    assert result["reloaded_after"] is not None and reloaded["state"] == "live", result
    # a class link: the pupil picks a name (the second of the list), then plays via Janus
    assert result["class_picking_after"] is not None, result
    classmate = result["class_hook"]
    assert result["class_played_after"] is not None and classmate["relay"] is True, result
    assert f"Em là {result['class_picked']}" in result["class_text"], result["class_text"]
    # staff end the lesson: Janus hangs up, the page asks again and says the lesson ended
    assert result["end_status"] == 200, result
    assert result["ended_after"] is not None and result["ended_after"] < 15, result
    assert "Buổi học đã kết thúc" in result["text_after_end"], result["text_after_end"]
    assert "Cảm ơn em đã tham gia buổi học." in result["text_after_end"]
    assert "Tiết Toán đã kết thúc lúc" in result["text_after_end"]  # the room's outlook
    assert (ARTIFACTS / "join-relay-390x844-ended.png").stat().st_size > 10_000
    assert result["classmate_ended_after"] is not None, result

    # the page destroyed the Janus session it left on reload; the lesson's end took the
    # tokens back and destroyed the last page's session too (not left to Janus's timeout)
    assert rejoined["janus"]["session"] not in janus_sessions, (rejoined, janus_sessions)
    assert reloaded["janus"]["session"] not in janus_sessions, (reloaded, janus_sessions)
    assert janus_tokens == [], janus_tokens

    # attendance comes from the classroom channels: the pupil's, verified; the
    # classmate's, by the picked name, not verified; all ended
    with sqlite3.connect(data_dir / "lessons.db") as db:
        rows = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT session_id, pupil_id, verified, left_at FROM presence WHERE room = 'demo'"
            )
        }
    # the drop kept the page's channel (unless it outlasted the channel's grace), the
    # reload opened another
    channels = {str(h["channel"]) for h in (hook, rejoined, reloaded)}
    assert reloaded["channel"] != hook["channel"] and len(rows) == len(channels) + 1, rows
    assert all(rows[c][:2] == (pupil["student_id"], 1) for c in channels), rows
    picked = next(link for link in links if link["name"] == result["class_picked"])
    assert rows[str(classmate["channel"])][:2] == (picked["student_id"], 0)
    assert all(row[2] is not None for row in rows.values()), rows
