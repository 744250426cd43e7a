"""scripts/install into a temporary root (SKIP_SYSTEM=1, a quick venv): the files, their
modes, the unit (systemd-analyze accepts the installed one), the udev rule; a re-run
keeps what the staff edited, leaves `.dist` beside it, upgrades what was as shipped."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_systemd import unit_settings

SCRIPT = ROOT / "scripts" / "install"
UDEV_RULE = (
    'SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ENV{ID_USB_INTERFACES}=="*:0e????:*", '
    'GROUP="plugdev", MODE="0664"'
)


@dataclass
class Root:
    """The install's places under one temporary folder."""

    base: Path

    def path(self, real: str) -> Path:
        return self.base / real.lstrip("/")

    @property
    def prefix(self) -> Path:
        return self.path("/opt/classroom-edge")

    @property
    def etc(self) -> Path:
        return self.path("/etc/classroom-edge")

    @property
    def data(self) -> Path:
        return self.path("/var/lib/classroom-edge")

    def environment(self) -> dict[str, str]:
        places = {
            "PREFIX": "/opt/classroom-edge",
            "ETC_DIR": "/etc/classroom-edge",
            "DATA_DIR": "/var/lib/classroom-edge",
            "UNIT_DIR": "/etc/systemd/system",
            "UDEV_DIR": "/etc/udev/rules.d",
            "MODULES_DIR": "/etc/modules-load.d",
            "AUTOSTART_DIR": "/etc/xdg/autostart",
            "BIN_DIR": "/usr/local/bin",
        }
        return {
            **os.environ,
            **{name: str(self.path(real)) for name, real in places.items()},
            "SKIP_SYSTEM": "1",
            "VENV_SITE": sysconfig.get_path("purelib"),  # this venv's packages, no pip
            "PYTHON": sys.executable,
        }

    def install(self, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT)],
            env={**self.environment(), **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path / "root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def shipped(name: str) -> bytes:
    return (ROOT / "config" / name).read_bytes()


def test_install_lays_out_venv_config_data_unit_and_udev_rule(root: Root) -> None:
    out = root.install().stdout
    # the venv runs the package: the installed config passes check-config
    command = root.prefix / "bin" / "classroom-edge"
    assert mode(command) & 0o111
    check = subprocess.run(
        [str(command), "check-config", "--config", str(root.etc / "edge.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.endswith("ok (1 room(s): p101)\n")  # example.toml is not a room
    staff_command = root.path("/usr/local/bin/classroom-edge")
    assert f'runuser -u classroom-edge -- "{command}"' in staff_command.read_text()
    assert (root.prefix / "share/doc/classroom-edge/README.md").read_bytes() == (
        ROOT / "README.md"
    ).read_bytes()
    # config: every shipped file, group-writable for the service, nothing world-readable
    for name in ("edge.toml", "rooms/p101.toml", "roster.csv", "timetables/p101.csv"):
        assert (root.etc / name).read_bytes() == shipped(name), name
        assert mode(root.etc / name) == 0o660, name
        assert f"config {name}: installed" in out
    assert (root.etc / "rooms/example.toml.sample").read_bytes() == shipped("rooms/example.toml")
    assert not (root.etc / "rooms/example.toml").exists()
    for folder in (root.etc, root.etc / "rooms"):
        assert mode(folder) == 0o2770 and stat.S_ISDIR(folder.stat().st_mode)
    assert mode(root.data) == 0o750
    # the unit, pointed at the temporary places: systemd-analyze verify accepts it
    unit = root.path("/etc/systemd/system/classroom-edge.service")
    text = unit.read_text()
    assert text == (ROOT / "systemd/classroom-edge.service").read_text().replace(
        "/opt/classroom-edge", str(root.prefix)
    ).replace("/etc/classroom-edge", str(root.etc)).replace(
        "/var/lib/classroom-edge", str(root.data)
    )
    assert unit_settings(text)["Service.ExecStart"] == [
        f"{command} run --config {root.etc}/edge.toml"
    ]
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert "classroom-edge" not in verify.stdout + verify.stderr
    assert mode(unit) == 0o644
    # devices
    rule = root.path("/etc/udev/rules.d/70-classroom-edge.rules")
    rules = [x for x in rule.read_text().splitlines() if x and not x.startswith("#")]
    assert rules == [UDEV_RULE] and mode(rule) == 0o644
    modules = root.path("/etc/modules-load.d/classroom-edge.conf").read_text().splitlines()
    assert modules[-1] == "videodev"
    autostart = root.path("/etc/xdg/autostart/classroom-edge-xhost.desktop").read_text()
    assert "Exec=xhost +si:localuser:classroom-edge\n" in autostart
    # what it did and what to do next
    for step in ("classroom-edge devices", "check-config", "drill ROOM", "staff-password"):
        assert step in out, step
    assert "SKIP_SYSTEM=1: no apt-get" in out and "no systemctl" in out


def test_rerun_keeps_edits_leaves_dist_and_upgrades_what_was_as_shipped(root: Root) -> None:
    root.install()
    room = root.etc / "rooms/p101.toml"
    edited = room.read_text(encoding="utf-8").replace('class = "6A1"', 'class = "6A2"')
    assert edited != room.read_text(encoding="utf-8")
    room.write_text(edited, encoding="utf-8")
    (root.etc / "timetables/example.ics").unlink()  # the staff do not want it
    # a roster.csv as an older release shipped it, untouched since
    older = (
        b"M\xc3\xa3 \xc4\x91\xe1\xbb\x8bnh danh;H\xe1\xbb\x8d v\xc3\xa0 t\xc3\xaan;L\xe1\xbb\x9bp\n"
    )
    (root.etc / "roster.csv").write_bytes(older)
    manifest = root.etc / ".shipped.sha256"
    lines = [
        f"{hashlib.sha256(older).hexdigest()}  roster.csv" if line.endswith(" roster.csv") else line
        for line in manifest.read_text().splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n")

    out = root.install().stdout
    assert room.read_text(encoding="utf-8") == edited  # the edit survived
    assert (root.etc / "rooms/p101.toml.dist").read_bytes() == shipped("rooms/p101.toml")
    assert "config rooms/p101.toml: edited here, kept; the new shipped version is" in out
    assert f"diff {room} {room}.dist" in out
    assert not (root.etc / "timetables/example.ics").exists()
    assert "config timetables/example.ics: removed here, not put back" in out
    assert (root.etc / "roster.csv").read_bytes() == shipped("roster.csv")
    assert "config roster.csv: upgraded (it was as shipped)" in out
    assert not (root.etc / "edge.toml.dist").exists()

    # the staff take the shipped version back: the .dist goes, nothing more to say
    room.write_bytes(shipped("rooms/p101.toml"))
    out = root.install().stdout
    assert not (root.etc / "rooms/p101.toml.dist").exists()
    assert "edited here" not in out and "diff " not in out


def test_test_venv_only_with_skip_system(root: Root) -> None:
    result = subprocess.run(
        [str(SCRIPT)],
        env={**root.environment(), "SKIP_SYSTEM": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "VENV_SITE (a test's venv) needs SKIP_SYSTEM=1" in result.stderr
    assert not root.base.exists()  # refused before touching anything
