"""Taking part, in Debian Chromium: a pupil and the teacher's console (tests/talk_probe.py),
on both media paths: the built-in WHEP, and Janus (`[relay]`) in a namespace between.

The service runs in a network namespace of the test's own with a real ALSA playback
device for the classroom speakers: an ALSA `file` PCM (in the service's own ~/.asoundrc)
that writes what it plays to a file, the lowest layer there is without a sound card.
The browser, in another namespace, holds three pages: the pupil's, the class link with
the same name picked, and the console (staff login cookie). The console shows the two
apart (verified, and not). The pupil's hand and message reach the console within 1 s;
allowed to speak, the pupil's (fake, 440 Hz) microphone comes out of the classroom
speakers, and the pupil hears the ducked classroom microphone meanwhile (WHEP: the
service sends it; Janus: the page takes the mountpoint's `ducked` stream); "save data"
switches the camera to its cheapest rendition (Janus: another simulcast substream);
removed, the page says so at once, while the class-link tab plays on; the day's
attendance has the pupil once, with the minutes of their own link only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.access.links import staff_key
from edge.access.staff import StaffSessions, set_password
from edge.config.settings import load
from tests.conftest import ARTIFACTS, ROOT, run_service, write_site
from tests.janus_env import available as janus_available
from tests.janus_env import relay_hosts, run_janus
from tests.netns import Host, available, two_hosts

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason="needs root and `ip netns` (the CI runs as root)"),
]

TONE_HZ = 440
ROOM = """class = "6A1"
always_live = true
[camera]
kind = "test"
width = 640
height = 360
[mic]
kind = "test"
[speaker]
kind = "alsa"
device = "classroom"
[[camera_renditions]]
width = 640
height = 360
fps = 15
bitrate_kbps = 400
[[camera_renditions]]
name = "low"
width = 320
height = 180
fps = 15
bitrate_kbps = 100
"""
ROSTER = "Mã định danh,Họ và tên,Lớp\n0101000001,Nguyễn Văn An,6A1\n"


def write_tone(path: Path, seconds: float = 20.0) -> None:
    samples = np.arange(int(48000 * seconds))
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * TONE_HZ * samples / 48000)).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(pcm.tobytes())


def dominant_hz(raw: bytes) -> tuple[float, float]:
    """(the strongest frequency, RMS) of raw s16 mono 48 kHz sound."""
    signal = np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768.0
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    frequencies = np.fft.rfftfreq(len(signal), 1 / 48000)
    return float(frequencies[spectrum.argmax()]), float(np.sqrt(np.mean(signal**2)))


@contextlib.contextmanager
def path_of(media: str, tmp_path: Path, config: Path) -> Iterator[tuple[Host, Host, str]]:
    """(the service's host, the browser's host, "NAMESPACE:DEVICE" of Janus's side of the
    browser's link, or "") for the pupil's media path: the built-in WHEP (two
    namespaces), or Janus in a namespace between them (`[relay]` added)."""
    if media == "whep":
        with two_hosts() as (server, viewer):  # (a thin link: tests/test_weak_link.py)
            yield server, viewer, ""
        return
    with relay_hosts("talk") as hosts, run_janus(tmp_path, hosts) as janus:
        text = config.read_text(encoding="utf-8")
        (config.parent / "janus-admin.secret").write_text(janus.admin_secret + "\n")
        config.write_text(
            text
            + f'\n[relay]\nkind = "janus"\napi_url = "{janus.api_url}"\n'
            + f'admin_url = "{janus.admin_url}"\nadmin_secret_file = "janus-admin.secret"\n'
            + f'public_url = "{janus.viewer_api_url}"\n',
            encoding="utf-8",
        )
        yield hosts.service, hosts.viewer, f"{hosts.janus}:{hosts.viewer_device}"


@pytest.mark.parametrize("media", ["whep", "relay"])
def test_a_pupil_raises_a_hand_writes_and_is_heard_in_the_classroom(
    tmp_path: Path, media: str
) -> None:
    assert Path("/usr/bin/chromium").exists(), "Debian chromium missing (see README test command)"
    if media == "relay":
        assert janus_available(), "Debian janus missing (see README test command)"
    ARTIFACTS.mkdir(exist_ok=True)
    home = tmp_path / "home"  # the service's HOME: ALSA reads ~/.asoundrc from it
    home.mkdir()
    speaker_out = tmp_path / "speaker.raw"
    (home / ".asoundrc").write_text(
        f'pcm.classroom {{ type file slave.pcm "null" file "{speaker_out}" format "raw" }}\n'
    )
    tone = tmp_path / "tone.wav"
    write_tone(tone)
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(tmp_path, {"r1": ROOM}, 'school = "Trường Thử"\nroster = "roster.csv"\n')
    result_path, screenshot = tmp_path / "result.json", ARTIFACTS / f"console-{media}-1280x800.png"
    # the teacher logged in from another machine before the service (re)started: the
    # console there works with that login's cookie (a login kept across restarts)
    data = tmp_path / "data"
    set_password(data, "mật-khẩu-GV-2026")
    cookie = StaffSessions(data, staff_key(load(config, data_dir=data))).open()
    with (
        path_of(media, tmp_path, config) as (server, viewer, feed),
        run_service(
            tmp_path,
            ["--config", str(config)],
            server.address,
            server.command(),
            env={"HOME": str(home)},
        ) as service,
    ):
        links = service.links("r1")
        an = next(link for link in links if link["kind"] == "student")
        class_link = next(link for link in links if link["kind"] == "class")
        assert not speaker_out.exists()  # nobody has spoken yet
        subprocess.run(
            viewer.command(
                sys.executable,
                str(ROOT / "tests" / "talk_probe.py"),
                service.base,
                f"{service.base}/join/{an['token']}",
                f"{service.base}/join/{class_link['token']}",
                cookie,
                str(tone),
                str(result_path),
                str(screenshot),
                feed,
            ),
            check=True,
            timeout=180,
            cwd=ROOT,
        )
        with sqlite3.connect(data / "lessons.db") as db:
            presence = db.execute(
                "SELECT pupil_id, verified, joined_at, left_at FROM presence WHERE room = 'r1'"
                " ORDER BY verified DESC"
            ).fetchall()
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    (ARTIFACTS / f"participation-{media}-result.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print(
        f"\nconsole saw the hand {result['hand_after']} s and the message "
        f"{result['message_after']} s after the pupil's tap"
    )
    assert not result["console_errors"], result["console_errors"]
    # a room without a board: the camera fills the stage, nothing to swap
    assert result["layout"] == {"swap": False, "board": False, "cameraBig": True}, result
    assert result["online"]["name"] == "Nguyễn Văn An" and result["online"]["verified"]
    assert result["hand_after"] <= 1.0, result
    assert result["message_after"] <= 1.0, result
    assert "Nguyễn Văn An" in result["hand_shown"]
    assert result["messages"][0]["text"] == "Thưa cô, em chưa hiểu bài 2 ạ."
    assert "Thưa cô, em chưa hiểu bài 2 ạ." in result["message_shown"]
    assert result["pupil_note"] == "Đã gửi tin nhắn cho thầy cô."
    assert result["hand_lowered_after"] < 2 and result["allowed_after"] < 5
    assert not result["pupil_speaking_at_end"]
    assert result["removed_after"] < 3 and "mời em ra khỏi tiết học" in result["removed_text"]

    # the class link with the same name picked: a participant of its own, not verified,
    # which the removal of the pupil's own link did not end
    both = sorted((p["name"], p["verified"]) for p in result["online_both"])
    assert both == [("Nguyễn Văn An", False), ("Nguyễn Văn An", True)], result["online_both"]
    assert [p["verified"] for p in result["online_left"]] == [False], result["online_left"]
    classmate = result["classmate"]
    before, after = classmate["sound_packets"]
    assert classmate["state"] == "live" and after > before + 50, classmate  # 50 a second

    # while allowed to speak the pupil heard the ducked microphone, then the room's again
    during, later = result["heard_during"]
    if media == "relay":
        assert during["playing"] == later["playing"] == "ducked", result["heard_during"]
        assert later["packets"]["ducked"] >= during["packets"]["ducked"] + 30, later
        assert later["packets"]["audio"] <= during["packets"]["audio"] + 10, later  # not sent
        assert result["heard_after"]["playing"] == "audio", result["heard_after"]
    else:  # one audio line, the service switches what it carries
        assert during["playing"] == result["heard_after"]["playing"] is not None, result

    # save data: the camera's cheapest rendition, decoded at its size, on either path
    assert result["save_data_after"] < 5 and result["save_data_width_after"] < 10, result
    assert result["save_data_session"]["video"]["camera"] == "low", result["save_data_session"]
    if media == "relay":  # a thin link (120 kb/s): the camera pauses by itself, sound goes on
        samples = result["thin_samples"]
        assert "thin_paused_after" in result, samples
        assert samples[-1]["audio"] > samples[-3]["audio"] + 20, samples  # 50 a second
        print(f"thin link: camera paused {result['thin_paused_after']} s after")

    # attendance: one presence per page; the pupil's own watched from live to removal
    own = [row for row in presence if row[1] == 1]
    picked = [row for row in presence if row[1] == 0]
    assert len(own) == 1 and len(picked) == 1 and own[0][0] == picked[0][0], presence
    joined, left = (dt.datetime.fromisoformat(at).timestamp() for at in own[0][2:4])
    watched = result["watch_ended"] - result["watch_started"]
    assert abs((left - joined) - watched) < 5, (left - joined, watched)
    # the day's report: the pupil once, verified, the minutes of their own link only
    rows = [line.split(";") for line in result["report_csv"].splitlines() if "0101000001" in line]
    assert len(rows) == 1, result["report_csv"]
    assert rows[0][9] == str(round((left - joined) / 60)) and rows[0][10] == "", rows

    # the classroom speakers played the pupil's microphone: the 440 Hz tone
    raw = speaker_out.read_bytes()
    played = len(raw) / 2 / 48000
    assert played >= 3.0, f"{played:.1f} s played"
    frequency, level = dominant_hz(raw[-2 * 48000 * 2 :])  # the last 2 s
    # (the browser's voice processing, gain control and noise suppression, makes it quieter)
    assert abs(frequency - TONE_HZ) < 5 and level > 0.005, (frequency, level)
    print(f"speakers played {played:.1f} s, {frequency:.0f} Hz at RMS {level:.3f}")
    # while the pupil talked, the ducked microphone was encoded and sent to one: the WHEP
    # pupil's session, or the Janus mountpoint (whose `ducked` stream only the pupil takes)
    ducked = result["during"]["rooms"]["r1"]["renditions"]["mic/ducked"]
    assert ducked["packets"] > 100 and ducked["viewers"] == 1, ducked
    after = result["after"]["rooms"]["r1"]["renditions"]["mic/ducked"]
    assert after["viewers"] == (0 if media == "whep" else 1), after
    assert screenshot.stat().st_size > 10_000
