"""The systemd unit (systemd-analyze accepts it; MemoryDenyWriteExecute holds for the real
service) and sd_notify: the demo service tells a real notify socket READY=1, WATCHDOG=1
from its event loop, its status and STOPPING=1."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.ops.notify import Notifier, room_status, status_text, watchdog_interval
from edge.school.clock import ManualClock
from tests.conftest import ROOT, Service, free_port, run_service
from tests.test_scheduler import ZONE, at, scheduler_for
from tests.whep_client import Viewer, eventually, eventually_sync

UNIT = ROOT / "systemd" / "classroom-edge.service"
PREFIX = "/opt/classroom-edge"


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> every value it is given (keys such as DeviceAllow repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def verify(unit_text: str, tmp: Path) -> tuple[int, list[str]]:
    """`systemd-analyze verify` on the unit with /opt/classroom-edge moved to `tmp` (verify
    insists that ExecStart's program exists): its exit code and its lines about the unit."""
    (tmp / "bin").mkdir(exist_ok=True)
    stub = tmp / "bin" / "classroom-edge"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp / "classroom-edge.service"
    unit.write_text(unit_text.replace(PREFIX, str(tmp)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [x for x in lines if "classroom-edge" in x]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "Debian's systemd package (README's test command)"
    code, complaints = verify(UNIT.read_text(), tmp_path)
    assert code == 0 and complaints == []
    # verify only warns (exit 0) about a bad value or an unknown key: the lines must be empty
    broken = UNIT.read_text().replace("WatchdogSec=30", "WatchdogSec=thirty\nProtectEverything=yes")
    code, complaints = verify(broken, tmp_path)
    assert len(complaints) == 2, complaints


def test_unit_runs_the_installed_service_watched_and_hardened() -> None:
    settings = unit_settings(UNIT.read_text())
    expected = {
        "Unit.After": ["network-online.target"],
        "Unit.Wants": ["network-online.target"],
        "Service.Type": ["notify"],
        "Service.NotifyAccess": ["main"],
        "Service.WatchdogSec": ["30"],
        "Service.LimitNOFILE": ["4096"],
        "Service.Restart": ["always"],
        "Service.RestartSec": ["5"],
        "Service.User": ["classroom-edge"],
        "Service.SupplementaryGroups": ["video audio plugdev"],
        "Service.ExecStartPre": [
            f"{PREFIX}/bin/classroom-edge check-config --config /etc/classroom-edge/edge.toml"
        ],
        "Service.ExecStart": [
            f"{PREFIX}/bin/classroom-edge run --config /etc/classroom-edge/edge.toml"
        ],
        "Service.ProtectSystem": ["strict"],
        "Service.StateDirectory": ["classroom-edge"],
        "Service.DevicePolicy": ["closed"],
        "Service.DeviceAllow": ["char-video4linux rw", "char-alsa rw", "char-usb_device rw"],
        "Service.RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
        "Service.BindReadOnlyPaths": ["-/tmp/.X11-unix"],
        "Service.MemoryDenyWriteExecute": ["no"],
        "Service.CapabilityBoundingSet": [""],
        "Service.SystemCallArchitectures": ["native"],
        "Install.WantedBy": ["multi-user.target"],
    }
    for key, values in expected.items():
        assert settings.get(key) == values, key
    assert "/var/lib/classroom-edge /etc/classroom-edge" in settings["Service.ReadWritePaths"]
    for flag in (
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "LockPersonality",
    ):
        assert settings.get(f"Service.{flag}") == ["yes"], flag
    assert "Service.PrivateIPC" not in settings  # x11grab's MIT-SHM needs the X server's IPC


class NotifySocket:
    """A datagram socket standing in for systemd's; a thread notes each datagram's lines
    and when it came (so a blocked event loop on the sending side shows)."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self.on_ready: Callable[[], None] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-socket")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self.sock.close()

    def _receive(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            lines = data.decode().split("\n")
            self.messages.append((time.monotonic(), lines))
            if "READY=1" in lines and self.on_ready is not None:
                self.on_ready()

    def wait_for(self, line: str, within: float) -> bool:
        return eventually_sync(lambda: bool(self.times(line)), within, step=0.05)

    def times(self, line: str) -> list[float]:
        return [at for at, lines in list(self.messages) if line in lines]

    def values(self, key: str) -> list[str]:
        prefix = f"{key}="
        return [
            x[len(prefix) :]
            for _, lines in list(self.messages)
            for x in lines
            if x.startswith(prefix)
        ]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, NotifySocket]]:
    path = str(tmp_path / "notify")
    receiver = NotifySocket(path)
    receiver.start()
    yield path, receiver
    receiver.stop()


async def test_demo_service_notifies_ready_watchdog_status_and_stopping(
    tmp_path: Path, notify_socket: tuple[str, NotifySocket]
) -> None:
    path, systemd = notify_socket
    port = free_port()
    listening: list[bool] = []

    def connect_at_once() -> None:  # on READY=1, from the receiving thread, at once
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            listening.append(True)
        except OSError:
            listening.append(False)

    systemd.on_ready = connect_at_once
    data = tmp_path / "data"
    log = tmp_path / "service.log"
    command = [sys.executable, "-m", "edge", "run", "--demo", "--data-dir", str(data)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            command, stdout=out, stderr=subprocess.STDOUT, env=env, text=True
        )
    service = Service(process, f"http://127.0.0.1:{port}", data, ["--demo"], log)
    try:
        # on_ready runs in the receiving thread after READY=1 is noted: wait for its answer
        assert await eventually(lambda: bool(listening), 30), log.read_text()
        assert listening == [True]  # READY=1 only once the HTTP server listens
        await asyncio.sleep(3.5)
        pings = systemd.times("WATCHDOG=1")
        assert len(pings) >= 3, systemd.messages
        assert all(0.7 < gap < 1.5 for gap in gaps(pings)), pings  # half of WATCHDOG_USEC
        assert systemd.values("STATUS") == ["Live: 6A1 Phát liên tục · 0 viewers"]
        # a viewer joins: the status says so within a look (every 5 s)
        viewer = Viewer(service.whep(), service.token())
        assert (await viewer.connect()).status_code == 201
        try:
            one = "Live: 6A1 Phát liên tục · 1 viewer"
            assert await eventually(lambda: one in systemd.values("STATUS"), 8), systemd.messages
        finally:
            await viewer.close()
        process.send_signal(signal.SIGTERM)
        assert await eventually(lambda: bool(systemd.times("STOPPING=1")), 10), systemd.messages
        assert await asyncio.to_thread(process.wait, 15) == 0  # a stop asked for is no failure
        assert len(systemd.times("READY=1")) == 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


async def test_watchdog_pings_come_from_the_event_loop(
    notify_socket: tuple[str, NotifySocket],
) -> None:
    """A loop blocked for 1.5 s sends no ping meanwhile: systemd would see it miss them."""
    path, systemd = notify_socket
    texts = iter(["Next: 6A1 Toán at 07:00", "Next: 6A1 Toán at 07:00", "Live: 6A1 Toán"])
    notifier = Notifier(
        lambda: next(texts, "Live: 6A1 Toán"),
        environ={
            "NOTIFY_SOCKET": path,
            "WATCHDOG_USEC": "400000",
            "WATCHDOG_PID": str(os.getpid()),
        },
        status_seconds=0.3,
    )
    assert notifier.watchdog == 0.2
    await notifier.start()
    await asyncio.sleep(0.6)
    time.sleep(1.5)  # noqa: ASYNC251 (the event loop is stuck)
    await asyncio.sleep(0.6)
    await notifier.stop()
    assert systemd.wait_for("STOPPING=1", 1)
    pings = gaps(systemd.times("WATCHDOG=1"))
    assert max(pings) >= 1.4 and sorted(pings)[-2] < 0.5, pings
    # the first status goes with READY=1; one more only when the text changed
    assert systemd.messages[0][1] == ["READY=1", "STATUS=Next: 6A1 Toán at 07:00"]
    assert systemd.values("STATUS") == ["Next: 6A1 Toán at 07:00", "Live: 6A1 Toán", "Stopping"]
    assert systemd.messages[-1][1][0] == "STOPPING=1"
    assert notifier._task is None


async def test_abstract_socket_other_pid_and_no_socket() -> None:
    name = f"classroom-edge-test-{os.getpid()}"
    systemd = NotifySocket(b"\0" + name.encode())
    systemd.start()
    try:
        notifier = Notifier(
            lambda: "Idle",
            environ={"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
        )
        assert notifier.watchdog is None  # systemd watches another process
        await notifier.start()
        await notifier.stop()
        assert systemd.wait_for("STOPPING=1", 1)
        assert [lines for _, lines in systemd.messages] == [
            ["READY=1", "STATUS=Idle"],
            ["STOPPING=1", "STATUS=Stopping"],
        ]
    finally:
        systemd.stop()
    outside = Notifier(lambda: "Idle", environ={})
    broken = Notifier(lambda: str(1 / 0), environ={"NOTIFY_SOCKET": f"@{name}-gone"})
    await broken.start()  # nobody listens and the status fails: the service goes on
    await broken.stop()
    assert broken.sent_status == ""
    assert not outside.enabled and not outside.send("READY=1")
    await outside.start()
    await outside.stop()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


async def test_status_follows_the_timetable_on_a_manual_clock(tmp_path: Path) -> None:
    clock = ManualClock(at("06:00"))
    scheduler, _ = scheduler_for(tmp_path, clock)

    def status(moment: str, day: dt.date | None = None) -> str:
        now = at(moment) if day is None else at(moment, day)
        return room_status(scheduler.outlook("p101", now), now, ZONE)

    assert status("06:00") == "Next: 6A1 Toán at 07:00"
    assert status("07:10") == "Live: 6A1 Toán until 07:45"
    assert status("07:49") == (  # held live until the next bell (rollover)
        "Live: 6A1 Toán closing (ended 07:45), next 6A1 Ngữ văn at 07:50"
    )
    assert status("07:50") == "Live: 6A1 Ngữ văn until 08:35"
    assert status("08:36") == "Live: 6A1 Ngữ văn closing (ended 08:35), next 6A1 Tiếng Anh at 09:40"
    assert status("08:00") == "Live: 6A1 Ngữ văn until 08:35"
    assert status("08:50") == "Next: 6A1 Tiếng Anh at 09:40"  # tiết 3 is PE: not streamed
    assert status("17:00") == "Idle: no lesson to stream"  # the next day is a holiday
    rooms = {"p102": "Next: 6A2 Văn at 08:05", "p101": status("07:10")}
    assert status_text(rooms, viewers=3, degraded=True) == (
        "p101 Live: 6A1 Toán until 07:45; p102 Next: 6A2 Văn at 08:05 · 3 viewers"
        " · DEGRADED (see /healthz)"
    )
    assert status_text({"p101": "Idle: no lesson to stream"}, viewers=1) == (
        "Idle: no lesson to stream · 1 viewer"
    )


# systemd's MemoryDenyWriteExecute=yes, as its seccomp filter has it: mmap with both
# PROT_WRITE and PROT_EXEC, mprotect/pkey_mprotect adding PROT_EXEC and shmat with SHM_EXEC
# fail with EPERM. The launcher installs the filter, then execs its arguments.
DENY_WRITE_EXECUTE = r"""
import ctypes, os, platform, struct, sys
ARCHES = {  # audit arch, mmap, mprotect, pkey_mprotect, shmat
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}
arch, mmap_nr, mprotect_nr, pkey_nr, shmat_nr = ARCHES[platform.machine()]
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
LD, JEQ, AND, RET = 0x20, 0x15, 0x54, 0x06
def op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
program = [
    op(LD, 4), op(JEQ, arch, 1, 0), op(RET, ALLOW),
    op(LD, 0),
    op(JEQ, mmap_nr, 4, 0), op(JEQ, mprotect_nr, 6, 0), op(JEQ, pkey_nr, 5, 0),
    op(JEQ, shmat_nr, 7, 0), op(RET, ALLOW),
    op(LD, 32), op(AND, 6), op(JEQ, 6, 7, 8),  # mmap: prot has WRITE|EXEC
    op(LD, 32), op(AND, 4), op(JEQ, 4, 4, 5),  # mprotect: prot has EXEC
    op(LD, 32), op(AND, 0o100000), op(JEQ, 0o100000, 1, 2),  # shmat: SHM_EXEC
    op(RET, ALLOW), op(RET, EPERM), op(RET, ALLOW),
]
# jump targets: the EPERM return is the last but one instruction
code = b"".join(program)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
prog = Prog(len(program), code)
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "seccomp")
os.execv(sys.argv[1], sys.argv[1:])
"""

WRITE_EXECUTE_PROBE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("allowed")
except PermissionError:
    print("denied")
"""


def deny_write_execute(*command: str) -> list[str]:
    return [sys.executable, "-c", DENY_WRITE_EXECUTE, *command]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall numbers")
def test_the_write_execute_filter_bites() -> None:
    probe = [sys.executable, "-c", WRITE_EXECUTE_PROBE]
    assert subprocess.run(probe, capture_output=True, text=True).stdout == "allowed\n"
    filtered = subprocess.run(deny_write_execute(*probe), capture_output=True, text=True)
    assert filtered.stdout == "denied\n", filtered.stderr


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="syscall numbers")
async def test_memory_deny_write_execute_spares_pyav_but_kills_dtls(tmp_path: Path) -> None:
    """Why the unit says MemoryDenyWriteExecute=no. Under the same filter the demo's
    encoders and recorder run (PyAV, numpy), but a viewer's DTLS handshake fails in
    pyOpenSSL's cffi callback. When this fails because viewers play, switch it on."""
    with run_service(tmp_path, ["--demo"], wrap=deny_write_execute()) as service:
        viewer = Viewer(service.whep(), service.token())
        response = await viewer.connect()
        try:
            assert response.status_code == 201, response.text
            refused = "Cannot allocate write+execute memory for ffi.callback()"
            assert await eventually(lambda: refused in service.log.read_text(), 15)
            assert viewer.stats["camera"].frames == 0
        finally:
            await viewer.close()
        health = service.health(detail=True)
        assert health["status"] == "ok", health
    presenter = next((tmp_path / "data").rglob("presenter.mp4"))
    assert presenter.stat().st_size > 20_000  # encoded and muxed under the filter (seconds of it)
