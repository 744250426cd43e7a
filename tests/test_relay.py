"""Relay mode: Debian's Janus in a network namespace of the test's own; the demo service
in another creates the room's streaming mountpoint and pushes its packets as RTP over a
veth pair; relay viewers (aiortc, counting RTP without decoding) in a third join with
`POST /relay/demo` and watch on Janus.

20 viewers all get keyframes on the camera and the board, and audio, while the
service's CPU stays within 10 % of a core of its one-viewer level: Janus fans out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from edge.config.settings import load
from edge.live.relay import mountpoint_id, mountpoint_secret, relayed_buses
from tests.conftest import ROOT, Service, run_service
from tests.janus_env import (
    Janus,
    RelayHosts,
    available,
    mountpoint_info,
    relay_config,
    relay_hosts,
    run_janus,
    tokens,
)
from tests.netns import available as netns_available

pytestmark = pytest.mark.skipif(
    not (available() and netns_available()),
    reason="needs root, `ip netns` and Debian's janus (see README test command)",
)

WINDOW = 5.0  # seconds of CPU measured per phase
CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def cpu_share(pid: int, seconds: float) -> float:
    """Share of one core `pid` used over the next `seconds`."""
    start, began = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / (time.monotonic() - began)


class Viewers:
    """tests/janus_env.py's viewer process in the viewers' namespace."""

    def __init__(
        self, hosts: RelayHosts, service: Service, count: int, log: Path, *options: str
    ) -> None:
        # the class link, as a class's pupils share it (one pupil's own link holds 3 devices)
        token = str(next(link for link in service.links() if link["kind"] == "class")["token"])
        self._log = log.open("w")
        self.process = subprocess.Popen(
            hosts.viewer.command(
                sys.executable,
                str(ROOT / "tests" / "janus_env.py"),
                "--relay",
                f"{service.base}/relay/demo",
                "--token",
                token,
                "--count",
                str(count),
                *options,
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )

    def read(self, timeout: float = 90) -> dict[str, Any]:
        assert self.process.stdout is not None
        stdout: IO[str] = self.process.stdout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                raise RuntimeError(f"viewers exited: {Path(self._log.name).read_text()[-3000:]}")
            if line.startswith("{"):
                message: dict[str, Any] = json.loads(line)
                return message
        raise RuntimeError("viewers did not answer in time")

    def send(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> dict[str, Any]:
        try:
            return self.send("quit")
        finally:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self._log.close()


@pytest.fixture
def relay_lab(tmp_path: Path) -> Iterator[tuple[RelayHosts, Janus, Service]]:
    with relay_hosts() as hosts, run_janus(tmp_path, hosts) as janus:
        config = relay_config(tmp_path, janus)
        with run_service(
            tmp_path, ["--config", str(config)], hosts.service.address, hosts.service.command()
        ) as service:
            yield hosts, janus, service
        # the service stopped: its mountpoint and the viewers' tokens are gone
        assert mountpoint_info(janus, hosts, mountpoint_id("demo")) is None
        assert tokens(janus, hosts) == []
        assert janus.alive()


def mountpoint_when_ready(hosts: RelayHosts, janus: Janus, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = mountpoint_info(janus, hosts, mountpoint_id("demo"))
        fed = [m for m in (info or {}).get("media", []) if m["mid"] != "ducked"]
        if info is not None and fed and all("age_ms" in m for m in fed):
            return info
        time.sleep(0.5)
    raise AssertionError(f"no fed mountpoint: {info}")


def test_relay_config_picks_the_recorded_streams() -> None:
    config = load(demo=True)
    assert relayed_buses(config.rooms["demo"]) == [  # simulcast: cheapest first
        ("camera", ("camera/low", "camera/high")),
        ("board", ("board/stills", "board/high")),
        ("audio", ("mic",)),
        ("ducked", ("mic/ducked",)),
    ]
    assert mountpoint_id("demo") == mountpoint_id("demo") != mountpoint_id("p101")
    assert 0 < mountpoint_id("demo") < 2**52


def test_janus_fans_out_twenty_viewers(
    relay_lab: tuple[RelayHosts, Janus, Service], tmp_path: Path
) -> None:
    hosts, janus, service = relay_lab
    info = mountpoint_when_ready(hosts, janus)  # created at go-live, fed with RTP
    assert [(m["mid"], m["type"], m["codec"]) for m in info["media"]] == [
        ("camera", "video", "h264"),
        ("board", "video", "h264"),
        ("audio", "audio", "opus"),
        ("ducked", "audio", "opus"),
    ], info
    # packets arrive now (the ducked microphone only while a pupil speaks)
    assert all(m["age_ms"] < 2000 for m in info["media"][:3]), info

    one = Viewers(hosts, service, 1, tmp_path / "viewers-1.log")
    ready = one.read()
    join = ready["joined"][0]
    assert join["janus"] == janus.viewer_api_url and join["beat_seconds"] == 30, join
    assert join["mountpoint"] == mountpoint_id("demo")
    assert join["token"] in tokens(janus, hosts)  # a per-viewer Janus token
    assert all(ready["counts"][0][mid]["keyframes"] > 0 for mid in ("camera", "board")), ready
    time.sleep(2)
    one_viewer_cpu = cpu_share(service.process.pid, WINDOW)
    assert one.send("beat")["statuses"] == [204]
    bye = one.close()
    assert bye["statuses"] == [204]
    assert join["token"] not in tokens(janus, hosts)  # taken back at DELETE

    many = Viewers(hosts, service, 20, tmp_path / "viewers-20.log")
    ready = many.read(timeout=180)
    first = ready["counts"]
    assert len(first) == 20
    secret = mountpoint_secret(janus.admin_secret, "demo")
    info = mountpoint_info(janus, hosts, mountpoint_id("demo"), secret) or {}
    assert info.get("viewers") == 20, info
    assert info.get("is_private") is True, info
    time.sleep(2)
    twenty_viewers_cpu = cpu_share(service.process.pid, WINDOW)
    later = many.send("snap")["counts"]
    assert many.send("beat")["statuses"] == [204] * 20
    many.close()
    print(f"service CPU: 1 viewer {one_viewer_cpu:.1%}, 20 viewers {twenty_viewers_cpu:.1%}")
    for before, after in zip(first, later, strict=True):
        for mid in ("camera", "board"):
            assert after[mid]["keyframes"] > 0, (mid, after)
            assert after[mid]["packets"] > before[mid]["packets"], (mid, before, after)
        assert after["audio"]["packets"] > before["audio"]["packets"] + 100, after  # 50/s
    assert twenty_viewers_cpu <= one_viewer_cpu + 0.10, (one_viewer_cpu, twenty_viewers_cpu)

    # attendance counted the 21 relay sessions like WHEP viewers
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_SESSIONS, str(service.data_dir / "lessons.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    assert json.loads(done.stdout) == {"sessions": 21, "open": 0}, done.stdout


_COUNT_SESSIONS = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
total = db.execute("SELECT count(*) FROM presence").fetchone()[0]
still = db.execute("SELECT count(*) FROM presence WHERE left_at IS NULL").fetchone()[0]
print(json.dumps({"sessions": total, "open": still}))
"""


def test_a_stopped_control_process_does_not_stall_the_relayed_stream(
    relay_lab: tuple[RelayHosts, Janus, Service],
) -> None:
    """The forwarder runs in the media process: the whole control process stopped for 3 s
    (SIGSTOP), Janus keeps getting the camera's packets (its mountpoint's `age_ms`, the time
    since the last one, stays small), so relay pupils keep their picture."""
    hosts, janus, service = relay_lab
    mountpoint_when_ready(hosts, janus)
    control = service.process.pid
    ages: list[int] = []
    os.kill(control, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        while time.monotonic() - stopped < 3:
            info = mountpoint_info(janus, hosts, mountpoint_id("demo")) or {}
            camera = next(m for m in info.get("media", []) if m["mid"] == "camera")
            ages.append(int(camera["age_ms"]))
    finally:
        os.kill(control, signal.SIGCONT)
    print(f"\ncamera age at Janus while the control process was stopped: {ages} ms")
    assert len(ages) >= 5, ages
    assert max(ages) < 1000, ages  # the forwarder in the control process: up to 3000


def test_a_relay_viewer_gets_the_rendition_chosen_for_it(
    relay_lab: tuple[RelayHosts, Janus, Service],
) -> None:
    """Janus simulcasts each video, one substream per rendition: a decoding viewer gets
    the best, then with "save data" the service's state names the cheapest substream and
    Janus switches to it; a page reporting heavy loss is stepped down."""
    hosts, janus, service = relay_lab
    mountpoint_when_ready(hosts, janus)
    token = str(next(link for link in service.links() if link["kind"] == "class")["token"])
    done = subprocess.run(
        hosts.viewer.command(
            sys.executable,
            str(ROOT / "tests" / "janus_env.py"),
            "--relay",
            f"{service.base}/relay/demo",
            "--token",
            token,
            "--renditions",
        ),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    joined = seen["join_state"]
    assert joined["video"] == {"camera": "high", "board": "high"}, joined
    assert joined["substreams"] == {"camera": 1, "board": 1} and joined["levels"] > 2, joined
    # the best from Janus's first keyframe of it on: before that, for a moment, Janus may
    # start on whichever substream's keyframe (asked by its PLI for the joiner) came first
    top = {width for at, width in seen["top"] if at >= 1.5}
    assert top == {1280}, seen["top"]
    # save data: the cheapest of each (camera 640 px, board stills)
    assert seen["patch_status"] == 204
    saving = seen["saving_state"]
    assert saving["save_data"] is True and saving["substreams"] == {"camera": 0, "board": 0}
    assert saving["video"] == {"camera": "low", "board": "stills"}, saving
    switched = [at for at, width in seen["saving"] if width == 640]
    assert switched and seen["saving"][-1][1] == 640, seen["saving"]
    print(f"\nJanus switched to the low camera {switched[0]:.2f} s after configure")
    # a page reporting 30 % loss: down at once, as a WHEP session would be
    assert seen["lossy_status"] == 200
    lossy = seen["lossy_state"]
    assert lossy["level"] < joined["level"] and lossy["poor"] is True, lossy
    assert lossy["substreams"]["camera"] in (0, None), lossy
    assert seen["bad_report_status"] == 400
