from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from webrtc import gather_only

if TYPE_CHECKING:
    from edge.live.service import EdgeService
    from edge.school.clock import Clock

pytest_plugins = ["tests.ci_skips"]  # in CI a skipped test fails

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    """A TCP port free on every address now, below the kernel's range for outgoing
    connections: a port from that range could be taken by any client's connection before
    the service binds it (a service starts its viewer workers first; test_turn lost its
    port to one)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:  # in use
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


@dataclass
class Service:
    """`classroom-edge run` in a subprocess, on loopback."""

    process: subprocess.Popen[str]
    base: str
    data_dir: Path
    config_args: list[str]
    log: Path

    def links(self, room: str = "demo") -> list[dict[str, object]]:
        result = cli("links", room, *self.config_args, "--data-dir", str(self.data_dir), "--json")
        links: list[dict[str, object]] = json.loads(result.stdout)
        return links

    def token(self, room: str = "demo") -> str:
        return str(self.links(room)[0]["token"])

    def whep(self, room: str = "demo") -> str:
        return f"{self.base}/whep/{room}"

    def health(self, detail: bool = False) -> dict[str, object]:
        response = httpx.get(f"{self.base}/healthz", params={"detail": detail}, timeout=10)
        data: dict[str, object] = response.json()
        return data


@contextlib.contextmanager
def run_service(
    tmp: Path,
    config_args: list[str],
    host: str = "127.0.0.1",
    wrap: Sequence[str] = (),
    env: dict[str, str] | None = None,
    run_args: Sequence[str] = (),
) -> Iterator[Service]:
    """The service on `host`; `wrap` prefixes the command (e.g. `ip netns exec NS`),
    `env` adds to its environment, `run_args` are options of `run` alone (`--clock`),
    kept out of `config_args`, which `Service.links()` passes to `links` as well."""
    port = free_port()
    data_dir = tmp / "data"
    log = tmp / "service.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *wrap,
                sys.executable,
                "-m",
                "edge",
                "run",
                *config_args,
                *run_args,
                "--data-dir",
                str(data_dir),
                "--host",
                host,
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    service = Service(process, f"http://{host}:{port}", data_dir, config_args, log)
    try:
        deadline = time.monotonic() + 30
        while "serving on" not in log.read_text():  # printed once the server listens
            if process.poll() is not None:
                raise RuntimeError(f"service exited: {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"service did not start: {log.read_text()}")
            time.sleep(0.05)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if os.environ.get("CI"):
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(log, ARTIFACTS / f"service-{port}.log")


@contextlib.asynccontextmanager
async def serve_in_process(
    config: Path, data_dir: Path, clock: Clock, **options: object
) -> AsyncIterator[tuple[EdgeService, str]]:
    """The service in this test's own event loop, on loopback, driven by `clock` (a
    manual one replays a school day): the service and its base URL."""
    import uvicorn

    from edge.config.settings import load
    from edge.live.service import EdgeService
    from edge.web.app import create_app
    from tests.whep_client import eventually

    port = free_port()
    service = EdgeService(
        load(config, data_dir=data_dir),
        host="127.0.0.1",
        port=port,
        clock=clock,
        **options,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        assert await eventually(lambda: server.started or task.done(), 30)
        yield service, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:  # a failed test may leave an event stream open: uvicorn would wait for it
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            server.force_exit = True
            await task


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with run_service(tmp_path_factory.mktemp("demo"), ["--demo"]) as service:
        yield service


@pytest.fixture(autouse=True, scope="session")
def loopback_candidates() -> Iterator[None]:
    """Our aiortc clients, like the service on loopback, offer only 127.0.0.1."""
    gather_only(["127.0.0.1"])
    yield
    gather_only(None)


SMALL_ROOM = """class = "6A1"
always_live = true
record = false
[camera]
kind = "test"
width = 320
height = 180
fps = 15
[mic]
kind = "test"
[[camera_renditions]]
width = 320
height = 180
fps = 15
bitrate_kbps = 300
"""
"""A light always-live room (a small test camera and tone, not recorded)."""


MEDIA_HERE = 'school = "Trường Thử"\n[webrtc]\nmedia_process = false\n'
"""A site whose capture runs in the service's own process: for the tests that reach into
a stand-in source (unplug a test camera) from the test's process."""


def write_site(tmp: Path, rooms: dict[str, str], site: str = 'school = "Trường Thử"\n') -> Path:
    (tmp / "rooms").mkdir(parents=True, exist_ok=True)
    (tmp / "edge.toml").write_text(site, encoding="utf-8")
    for name, text in rooms.items():
        (tmp / "rooms" / f"{name}.toml").write_text(text, encoding="utf-8")
    return tmp / "edge.toml"
