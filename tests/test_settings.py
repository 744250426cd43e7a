"""Config files: the shipped ones are valid; bad ones are reported as FILE:LINE: key: problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config.settings import ConfigError, load
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
GOOD_MIC = '[mic]\nkind = "test"\n'


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


ROOM_FILE = "r1.toml"
SOURCES = {"camera": "test, v4l2", "board": "test, v4l2, x11grab", "mic": "test, alsa"}


@pytest.mark.parametrize("table", sorted(SOURCES))
def test_a_source_kind_is_named_on_its_own_line(tmp_path: Path, table: str) -> None:
    """Each tagged union says the key that is wrong, its line, and the kinds it takes."""
    room = tmp_path / "rooms" / ROOM_FILE
    kinds = SOURCES[table]
    unknown = problems(tmp_path, GOOD_SITE, f'class = "6A1"\n[{table}]\nkind = "webcam-magic"\n')
    assert unknown == [
        f"{room}:3: {table}.kind: unknown kind 'webcam-magic' (expected one of: {kinds})"
    ]
    not_text = problems(tmp_path, GOOD_SITE, f'class = "6A1"\n\n[{table}]\nfps = 5\nkind = 7\n')
    assert not_text == [f"{room}:5: {table}.kind: unknown kind 7 (expected one of: {kinds})"]
    missing = problems(tmp_path, GOOD_SITE, f'class = "6A1"\n[{table}]\nfps = 5\n')
    assert missing == [f"{room}:2: {table}.kind: missing (expected one of: {kinds})"]
    not_a_table = problems(tmp_path, GOOD_SITE, f'class = "6A1"\n{table} = "usb"\n')
    assert not_a_table == [f"{room}:2: {table}: got 'usb' (expected a [{table}] table)"]


@pytest.mark.parametrize(("value", "shown"), [("5", "5"), ("[1, 2]", "[1, 2]"), ("true", "True")])
def test_a_timetable_is_a_file_or_tables(tmp_path: Path, value: str, shown: str) -> None:
    room = tmp_path / "rooms" / ROOM_FILE
    found = problems(tmp_path, GOOD_SITE, f'class = "6A1"\ntimetable = {value}\n' + GOOD_MIC)
    assert found == [
        f"{room}:2: timetable: got {shown} "
        "(expected a .csv or .ics path, or [[timetable.period]] tables)"
    ]


def test_timetable_tables_name_their_keys(tmp_path: Path) -> None:
    room = tmp_path / "rooms" / ROOM_FILE
    found = problems(
        tmp_path, GOOD_SITE, 'class = "6A1"\n' + GOOD_MIC + "[timetable]\nperiods = 1\n"
    )
    assert found == [
        f"{room}:4: timetable.period: missing (expected a value)",
        f"{room}:5: timetable.periods: unknown key; did you mean 'period'? (expected one of: "
        "period)",
    ]


@pytest.mark.parametrize(
    ("site", "room", "expected"),
    [
        (
            GOOD_SITE + '[library]\nkind = "ftp"\n',
            GOOD_ROOM,
            "edge.toml:3: library.kind: unknown kind 'ftp' (expected one of: directory, rclone)",
        ),
        (
            GOOD_SITE + '[relay]\napi_url = "http://10.0.0.2:8088/janus"\n',
            GOOD_ROOM,
            "edge.toml:2: relay.kind: missing (expected one of: janus)",
        ),
        (
            GOOD_SITE,
            GOOD_ROOM + '[speaker]\nkind = "pulse"\n',
            "r1.toml:5: speaker.kind: unknown kind 'pulse' (expected one of: alsa)",
        ),
        (
            GOOD_SITE,
            GOOD_ROOM + '[[camera_renditions]]\npreset = "slow"\n',
            "r1.toml:5: camera_renditions.0.preset: got 'slow' (expected one of: ultrafast, "
            "superfast, veryfast, faster, fast, medium)",
        ),
    ],
)
def test_every_kind_and_choice_lists_what_it_takes(
    tmp_path: Path, site: str, room: str, expected: str
) -> None:
    found = problems(tmp_path, site, room)
    assert any(line.endswith(expected) for line in found), found


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


TIMETABLE_ROOM = 'class = "6A1"\n[mic]\nkind = "test"\n'


def test_inline_timetable_problems_name_the_period(tmp_path: Path) -> None:
    room = (
        TIMETABLE_ROOM
        + '[[timetable.period]]\nday = "Thứ Hai"\nsession = "sáng"\nperiod = 1\nsubject = "Toán"\n'
        + '[[timetable.period]]\nday = "Chủ nhật"\nstart = "07:50"\nend = "08:35"\n'
        + 'subject = "Văn"\n'
        + '[[timetable.period]]\nday = 2\nstart = "07:30"\nend = "08:10"\nsubject = "Tin học"\n'
    )
    found = problems(tmp_path, 'school = "X"\n', room)
    room_file = tmp_path / "rooms" / "r1.toml"
    assert found[0].startswith(f"{room_file}:9: timetable.period.1: no lessons on Sunday")
    assert any(line.startswith(f"{room_file}:14: ") and "overlap" in line for line in found)


def test_timetable_file_problems_are_reported_by_check_config(tmp_path: Path) -> None:
    fixture = ROOT / "tests" / "fixtures" / "timetable" / "bad-time.csv"
    (tmp_path / "tkb.csv").write_bytes(fixture.read_bytes())
    config = write_site(tmp_path, {"r1": 'timetable = "../tkb.csv"\n' + TIMETABLE_ROOM})
    with pytest.raises(ConfigError) as raised:
        load(config)
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1 and result.stderr.splitlines() == raised.value.problems
    lines = [line.split(": ", 1)[0] for line in raised.value.problems]
    assert f"{tmp_path / 'tkb.csv'}:3" in lines and f"{tmp_path / 'tkb.csv'}:5" in lines

    missing = write_site(tmp_path, {"r1": 'timetable = "none.ics"\n' + TIMETABLE_ROOM})
    with pytest.raises(ConfigError) as raised:
        load(missing)
    assert raised.value.problems[0].startswith(
        f"{tmp_path / 'rooms' / 'r1.toml'}:1: timetable: no such file"
    )


def test_bells_and_holidays_are_checked(tmp_path: Path) -> None:
    site = (
        'school = "X"\n[bells]\nmorning = ["07:00", "7:61"]\n'
        '[calendar]\nholidays = ["2026-11-31"]\n'
    )
    found = problems(tmp_path, site, TIMETABLE_ROOM)
    edge_toml = tmp_path / "edge.toml"
    assert found[0].startswith(f"{edge_toml}:3: bells.morning: not a time of day: '7:61'")
    assert found[1].startswith(f"{edge_toml}:5: calendar.holidays: not a date or range")


def test_check_config_prints_the_expected_lines(tmp_path: Path) -> None:
    """A site and two rooms with typos, a bad identity, a bad preset and broken TOML:
    every problem at once, in file and line order, unknown keys with a did-you-mean."""
    site = 'school = "T"\nshedule = 1\n\n[recordings]\nretention_dayz = 3\n'
    room = (
        'class = "6A1"\nstart_preset = "board"\n\n[camera]\nkind = "v4l2"\n'
        'devise = "usb:046d:0853"\n\n[presets.board]\npan = 3600\nzom = 120\n'
    )
    config = write_site(tmp_path, {"p1": room, "p2": 'class = "6A2"\n[mic\nkind = "test"\n'}, site)
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    edge, p1, p2 = config, tmp_path / "rooms" / "p1.toml", tmp_path / "rooms" / "p2.toml"
    assert result.stderr.splitlines() == [
        f"{edge}:2: shedule: unknown key; did you mean 'schedule'? (expected one of: school, "
        "timezone, data_dir, roster, http, webrtc, links, bells, calendar, schedule, "
        "recordings, library, attendance, relay, school_hub)",
        f"{edge}:5: recordings.retention_dayz: unknown key; did you mean 'retention_days'? "
        "(expected one of: enabled, retention_days, min_free_mb, stop_below_mb, compose, "
        "compose_nice)",
        f"{p1}:4: camera.device: missing (expected a value)",
        f"{p1}:6: camera.devise: unknown key; did you mean 'device'? (expected one of: kind, "
        "device, input_format, width, height, fps, ptz)",
        f"{p1}:10: presets.board.zom: unknown key; did you mean 'zoom'? (expected one of: pan, "
        "tilt, zoom, focus, auto_focus, label)",
        f"{p2}:2: (toml): Expected ']' at the end of a table declaration (expected valid TOML)",
    ]


def test_presets_and_identities(tmp_path: Path) -> None:
    room = (
        'class = "6A1"\nstart_preset = "board"\n[camera]\nkind = "v4l2"\n'
        'device = "usb:046d:0853:PTZ0001"\n[presets.board]\npan = 3600\nzoom = 120\n'
        "[presets.class]\nauto_focus = true\n"
    )
    config = load(write_site(tmp_path, {"p1": room}))
    settings = config.rooms["p1"]
    assert settings.camera is not None and settings.camera.kind == "v4l2"
    assert settings.camera.control == "usb:046d:0853:PTZ0001"
    assert settings.presets["board"].pan == 3600 and settings.presets["board"].tilt is None
    wrong = room.replace('start_preset = "board"', 'start_preset = "teacher"')
    found = problems(tmp_path, GOOD_SITE, wrong)
    assert found == [
        f"{tmp_path / 'rooms' / 'r1.toml'}:2: start_preset: no preset 'teacher' "
        "(expected one of: board, class)"
    ]
