"""Config files: the shipped ones are valid; bad ones are reported as FILE:LINE: key: problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.settings import ConfigError, load
from tests.conftest import ROOT, cli, write_site

LINE = re.compile(r"^(?P<file>\S+):(?P<line>\d+): (?P<key>\S+): (?P<problem>.+) \(expected .+\)$")


def test_shipped_config_is_valid() -> None:
    config = load(ROOT / "config" / "edge.toml")
    assert config.site.school and set(config.rooms) == {"example", "p101"}
    assert config.rooms["example"].camera is not None
    result = cli("check-config", "--config", str(ROOT / "config" / "edge.toml"))
    assert result.returncode == 0 and "ok" in result.stdout


def test_embedded_demo_is_valid(tmp_path: Path) -> None:
    config = load(demo=True, data_dir=tmp_path)
    assert config.demo and config.rooms["demo"].always_live
    assert config.site.data_dir == tmp_path


def problems(tmp_path: Path, site: str, room: str) -> list[str]:
    config = write_site(tmp_path, {"r1": room}, site=site)
    with pytest.raises(ConfigError) as raised:
        load(config)
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == raised.value.problems
    for line in raised.value.problems:
        assert LINE.match(line), line
    return raised.value.problems


GOOD_SITE = 'school = "Trường Thử"\n'
GOOD_ROOM = 'class = "6A1"\n[camera]\nkind = "test"\n'


@pytest.mark.parametrize(
    ("site", "room", "expected"),
    [
        (
            'school = "T"\n\n[http]\nport = 70000\n',
            GOOD_ROOM,
            r"edge.toml:4: http.port: got 70000 \(expected less than or equal to 65535\)",
        ),
        ("timezone = 'Asia/Ho_Chi_Minh'\n", GOOD_ROOM, r"edge.toml:1: school: missing"),
        (GOOD_SITE + "colour = 'red'\n", GOOD_ROOM, r"edge.toml:2: colour: unknown key"),
        (
            GOOD_SITE + "timezone = 'Mars/Base'\n",
            GOOD_ROOM,
            r"edge.toml:2: timezone: unknown time zone 'Mars/Base' "
            r"\(expected e.g. Asia/Ho_Chi_Minh\)",
        ),
        (GOOD_SITE + "[http\nport = 1\n", GOOD_ROOM, r"edge.toml:2: \(toml\): "),
        (
            GOOD_SITE,
            'class = "6A1"\n[camera]\nkind = "v4l2"\ndevice = "/dev/video0"\n',
            r"r1.toml:4: camera.device: got '/dev/video0' \(expected text matching",
        ),
        (GOOD_SITE, 'class = "6A1"\n[camera]\nkind = "webcam"\n', r"r1.toml:2: camera: "),
        (
            GOOD_SITE,
            GOOD_ROOM + "[[camera_renditions]]\nwidth = 1280\nheight = 721\nfps = 30\n"
            "bitrate_kbps = 900\n",
            r"r1.toml:6: camera_renditions.0.height: .*multiple of 2",
        ),
        (GOOD_SITE, 'class = "6A1"\n', r"r1.toml:1: \(file\): .*at least one of"),
        (
            GOOD_SITE + "[[webrtc.ice_servers]]\nurls = ['http://x']\n",
            GOOD_ROOM,
            r"edge.toml:3: webrtc.ice_servers.0.urls.0: got 'http://x'",
        ),
    ],
)
def test_problems_name_file_line_and_key(
    tmp_path: Path, site: str, room: str, expected: str
) -> None:
    found = problems(tmp_path, site, room)
    assert any(re.search(expected, line) for line in found), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        GOOD_SITE + "[http]\nport = 0\nhost = 5\n",
        'class = "6A1"\n[mic]\nkind = "alsa"\ndevice = ""\n',
    )
    assert len(found) == 3, found


def test_missing_roster_file(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD_SITE + 'roster = "pupils.csv"\n', GOOD_ROOM)
    assert re.search(r"edge.toml:2: roster: no such file", found[0])
