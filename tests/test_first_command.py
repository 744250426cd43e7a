"""The README's first command, as a new user runs it: a fresh venv, `pip install .` with
no extras (never the test venv), then the demo and the everyday commands from it.

The test venv has every test extra installed, so a runtime dependency that only a test
extra brings would pass every other test while the product does not start."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.whep_client import Viewer, eventually

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class FreshInstall:
    bin: Path
    home: Path

    def env(self) -> dict[str, str]:
        """No test venv on PATH, no PYTHONPATH: only what `pip install .` put there."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env["XDG_DATA_HOME"] = str(self.home / "share")  # the demo's default data dir
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "classroom-edge"), *args],
            cwd=self.home,  # not the checkout: nothing importable from the working tree
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


LEFT_OUT = (".git", ".venv", "artifacts", "build", "*.egg-info", "__pycache__", ".*_cache")


def checkout_copy(target: Path) -> Path:
    """The files a clone has (tracked, plus new ones not ignored), nothing built; without
    git (a checkout copied onto the machine), the tree less what git would ignore."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(*LEFT_OUT))
        return target
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():  # a file deleted but not yet committed is left out
            (target / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / os.fsdecode(name))
    return target


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    base = tmp_path_factory.mktemp("first-command")
    source = checkout_copy(base / "classroom-edge")
    venv = base / "venv"
    # a venv of the interpreter under the test venv, as `python3 -m venv` makes one
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(source)],  # with pip's cache
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    home = base / "home"
    home.mkdir()
    return FreshInstall(venv / "bin", home)


def test_the_install_has_no_test_extra(fresh: FreshInstall) -> None:
    listed = subprocess.run(
        [str(fresh.bin / "pip"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert "classroom-edge" in names and "aiortc" in names
    assert not names & {"pytest", "playwright", "mypy", "ruff", "deptry"}, names


@dataclass
class Running:
    process: subprocess.Popen[str]
    base: str
    output: Path


@pytest.fixture
def demo(fresh: FreshInstall, tmp_path: Path) -> Iterator[Running]:
    port = free_port()
    output = tmp_path / "run.log"
    with output.open("w") as out:
        process = subprocess.Popen(
            [
                str(fresh.bin / "classroom-edge"),
                "run",
                "--demo",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            cwd=fresh.home,
            env=fresh.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving on" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        yield Running(process, f"http://127.0.0.1:{port}", output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_the_demo_plays_to_a_viewer_and_stops_cleanly(
    fresh: FreshInstall, demo: Running, tmp_path: Path
) -> None:
    printed = demo.output.read_text()
    # the class join link it prints, as the user opens it
    found = re.search(r"room demo \(class 6A1\): (http://\S+/join/(\S+))", printed)
    assert found, printed
    # log lines in the school's time, with its offset (the demo's zone is Hà Nội's)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \+07:00 INFO ", printed, re.M)
    page = await asyncio.to_thread(httpx.get, found.group(1), timeout=10)
    assert page.status_code == 200, page.text
    assert '<html lang="vi">' in page.text and "Trường THCS Demo" in page.text
    script = await asyncio.to_thread(httpx.get, f"{demo.base}/static/join/main.js")
    assert script.status_code == 200  # the page's modules are in the installed package
    viewer = Viewer(f"{demo.base}/whep/demo", found.group(2))
    try:
        assert (await viewer.connect()).status_code == 201
        camera, audio = viewer.stats["camera"], viewer.stats["audio"]
        assert await eventually(lambda: camera.frames >= 30 and audio.frames >= 50, 30), (
            viewer.stats
        )
        assert (camera.width, camera.height) == (1280, 720)
        assert camera.clock_ms and abs(camera.clock_ms[-1] / 1000 - time.time()) < 10
    finally:
        await viewer.close()
    asked = time.monotonic()
    demo.process.send_signal(signal.SIGTERM)
    try:
        code = demo.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 10 s after SIGTERM: {demo.output.read_text()}")
    assert code == 0, demo.output.read_text()
    assert time.monotonic() - asked < 10
    assert "Traceback" not in demo.output.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ("check-config", "--demo"),
        ("links", "demo", "--demo"),
        ("timetable", "demo", "--demo"),
        ("drill", "demo", "--demo", "--seconds", "8"),
    ],
    ids=lambda args: args[0],
)
def test_the_everyday_commands_run(fresh: FreshInstall, tmp_path: Path, args: tuple[str]) -> None:
    result = fresh.run(*args, "--data-dir", str(tmp_path / "data"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_without_arguments(fresh: FreshInstall) -> None:
    """As typed after the install: /etc/classroom-edge/edge.toml, else the embedded demo."""
    if Path("/etc/classroom-edge/edge.toml").exists():
        expected = "/etc/classroom-edge/edge.toml: ok"
    else:
        expected = "embedded demo: ok"
    result = fresh.run("check-config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(expected), result.stdout


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    first, second = blocks[0], blocks[1]
    assert first.startswith("apt-get update && ") and "pip install . &&" in first
    assert "run --demo" in first and "[test]" not in first
    assert second in (ROOT / ".ci" / "run").read_text().splitlines()
