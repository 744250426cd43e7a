"""What the benches share: the server and the viewers in processes of their own, the
command line options every bench has and the folder its logs go to.

- `Server`: `classroom-edge run --demo` (as `python -m edge` from this checkout) or
  bench/naive_server.py on loopback, a fresh process each time (bench/fanout.py, one per
  row); with `config`, a site file instead of `--demo` (`demo_site`: the demo's own files
  with settings of the bench's, e.g. `[webrtc] viewer_workers`); `loopback_service`: the
  demo service of tests/conftest.py on loopback with this process's aiortc viewers
  offering only 127.0.0.1 (bench/latency.py, bench/join.py).
- `ViewersProcess`: bench/viewers.py (stock aiortc viewers) or bench/cheap_viewer.py
  (cheap load viewers) in a process of its own, driven over stdin/stdout; `LoadViewers`:
  N viewers for a load bench, one stock decoding viewer in one process and N−1 cheap ones
  in another (or all N stock in one, the old way).
- `new_parser` / `parse_args` / `run_bench`: `--settle` and `--keep-logs`, and the work folder
  that is removed afterwards unless `--keep-logs`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx

if TYPE_CHECKING:
    from tests.conftest import Service

BENCH = Path(__file__).resolve().parent


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGINT (uvicorn shuts down cleanly), then SIGKILL the process group."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 5)


# ------------------------------------------------------------ the server


def demo_site(folder: Path, webrtc: dict[str, int | str] | None = None) -> Path:
    """The embedded demo's config (edge.toml, its room and roster) copied into `folder`,
    with `webrtc` as its `[webrtc]` section (e.g. `viewer_workers`, which `--demo`
    cannot take; a string value is written as it is: `"false"`); the path of its
    edge.toml, for `Server(config=...)`."""
    from edge.config.settings import DEMO_DIR

    shutil.copytree(DEMO_DIR, folder, dirs_exist_ok=True)
    site = folder / "edge.toml"
    if webrtc:
        lines = "".join(f"{key} = {value}\n" for key, value in webrtc.items())
        site.write_text(f"{site.read_text(encoding='utf-8')}\n[webrtc]\n{lines}", "utf-8")
    return site


@dataclass
class Server:
    """A server in a process (and session) of its own, on a free loopback port; the edge
    one runs the demo (`--demo`), or the site file `config` (see `demo_site`)."""

    kind: str  # "edge" | "naive"
    workdir: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    config: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def site_args(self) -> list[str]:
        """What names the config: `--demo` or `--config FILE`."""
        return ["--demo"] if self.config is None else ["--config", str(self.config)]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.kind}-server.log"

    @property
    def whep(self) -> str:
        return f"http://127.0.0.1:{self.port}/whep/demo"

    def command(self) -> list[str]:
        if self.kind == "edge":
            # this checkout's code (the cwd is its root), never a `classroom-edge` on the
            # PATH: an editable install of another worktree would be measured instead
            return [
                sys.executable,
                "-m",
                "edge",
                "run",
                *self.site_args,
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
        return [
            sys.executable,
            str(BENCH / "naive_server.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    async def start(self, limit: float = 40.0) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=BENCH.parent,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise BenchError(f"{self.kind} server exited:\n{tail(self.log)}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://127.0.0.1:{self.port}/healthz")
                    if response.status_code in (200, 503):
                        return
                await asyncio.sleep(0.2)
        raise BenchError(f"{self.kind} server not up within {limit:.0f} s:\n{tail(self.log)}")

    async def token(self) -> str:
        if self.kind != "edge":
            return "naive-server-takes-any-token"
        command = self.command()
        links = [*command[: command.index("run")], "links", "demo", *self.site_args]
        links += ["--data-dir", str(self.data_dir), "--json"]
        process = await asyncio.create_subprocess_exec(
            *links, cwd=BENCH.parent, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            raise BenchError("classroom-edge links did not answer within 30 s") from None
        if process.returncode != 0:
            raise BenchError(f"classroom-edge links failed: {err.decode(errors='replace')}")
        token: str = json.loads(out)[0]["token"]
        return token

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process)


@contextlib.contextmanager
def loopback_service(workdir: Path) -> Iterator[Service]:
    """The demo service on loopback (tests/conftest.py's `run_service`), while this
    process's aiortc viewers offer only 127.0.0.1 as the service does."""
    from tests.conftest import run_service  # pytest and aiortc: not for bench/fanout.py
    from webrtc import gather_only

    gather_only(["127.0.0.1"])
    try:
        with run_service(workdir, ["--demo"]) as service:
            yield service
    finally:
        gather_only(None)


# ------------------------------------------------------------ the viewers


class ViewersProcess:
    """bench/viewers.py in a process (and session) of its own: `count` viewers of
    `whep`, the first `decoders` of which decode (0: none; the others only receive);
    with `cheap`, bench/cheap_viewer.py's viewers instead (none decodes). `options`: more
    of the script's own (e.g. `--clock-every 3`)."""

    def __init__(
        self,
        whep: str,
        count: int,
        log: Path,
        decoders: int = 1,
        save_data: int = 0,
        cheap: bool = False,
        options: Sequence[str] = (),
    ) -> None:
        self.whep, self.count, self.log, self.decoders = whep, count, log, decoders
        self.save_data = save_data  # the last `save_data` viewers get the cheapest renditions
        self.cheap = cheap
        self.options = list(options)
        self.process: asyncio.subprocess.Process | None = None

    def arguments(self, token: str, connect_timeout: float) -> list[str]:
        script = BENCH / ("cheap_viewer.py" if self.cheap else "viewers.py")
        decoders = [] if self.cheap else ["--decoders", str(self.decoders)]
        return [
            str(script),
            "--whep",
            self.whep,
            "--token",
            token,
            "--count",
            str(self.count),
            *decoders,
            "--save-data",
            str(self.save_data),
            "--connect-timeout",
            str(connect_timeout),
            *self.options,
        ]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, token: str, connect_timeout: float = 60.0) -> dict[str, Any]:
        """Start them; the `ready` event (once all have connected or timed out)."""
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.arguments(token, connect_timeout),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        return await self._read("ready", connect_timeout + 30)

    async def _read(self, event: str, limit: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), left)
            except TimeoutError:
                break
            if not line:
                raise BenchError(f"viewer process ended:\n{tail(self.log)}")
            with contextlib.suppress(json.JSONDecodeError):
                message: dict[str, Any] = json.loads(line)
                if message.get("event") == event:
                    return message
        raise BenchError(f"viewer process: no {event!r} within {limit:.0f} s:\n{tail(self.log)}")

    async def command(self, text: str, reply: str, limit: float = 15.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{text}\n".encode())
        await self.process.stdin.drain()
        return await self._read(reply, limit)

    async def snap(self) -> dict[str, Any]:
        """Every viewer's cumulative counters (bench/viewers.py's `snap` event)."""
        return await self.command("snap", "snap")

    async def frames(self, since: float) -> dict[str, Any]:
        """The first viewer's decoded frames since `since` (`time.monotonic()`, the same
        clock in every process): bench/viewers.py's `frames` event."""
        return await self.command(f"frames {since!r}", "frames")

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(BenchError, ConnectionError, TimeoutError):
                await self.command("quit", "bye", 20)
                await asyncio.wait_for(self.process.wait(), 10)
        await stop_process(self.process, grace=5)


class LoadViewers:
    """`count` viewers of `whep` for a load bench. With `cheap` (the default), viewer 0
    is a stock aiortc viewer that decodes (bench/viewers.py in a process of its own: the
    health check, decoded fps and glass-to-glass latency from the burned-in clock) and
    viewers 1… are cheap load viewers (bench/cheap_viewer.py, another process, so its CPU
    is theirs alone); without, all `count` are stock viewers in one bench/viewers.py
    process, the first decoding. The last `save_data` get the cheapest renditions;
    `stock_options` go to the stock viewers' process (bench/viewers.py)."""

    def __init__(
        self,
        whep: str,
        count: int,
        log: Path,
        save_data: int = 0,
        cheap: bool = True,
        stock_options: Sequence[str] = (),
    ) -> None:
        self.count = count
        stock = 1 if cheap else count
        stock_saving = save_data if not cheap else int(save_data >= count)
        self.stock = ViewersProcess(
            whep, stock, log, decoders=1, save_data=stock_saving, options=stock_options
        )
        self.cheap: ViewersProcess | None = None
        if cheap and count > 1:
            cheap_log = log.with_name(f"{log.stem}-cheap{log.suffix}")
            self.cheap = ViewersProcess(
                whep, count - 1, cheap_log, save_data=min(save_data, count - 1), cheap=True
            )

    @property
    def processes(self) -> list[ViewersProcess]:
        return [self.stock] + ([self.cheap] if self.cheap else [])

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def start(self, token: str, connect_timeout: float = 60.0) -> dict[str, Any]:
        """Start them; one `ready` event for all."""
        readies = await asyncio.gather(*(p.start(token, connect_timeout) for p in self.processes))
        return {
            "event": "ready",
            "viewers": sum(int(r.get("viewers", 0)) for r in readies),
            "flowing": sum(int(r.get("flowing", 0)) for r in readies),
            "seconds": max(float(r.get("seconds", 0)) for r in readies),
            "errors": [e for r in readies for e in r.get("errors", [])],
        }

    async def snap(self) -> dict[str, Any]:
        """Every viewer's cumulative counters, the stock ones first; with cheap viewers,
        `cheap_cpu_seconds` (user+sys of their process) and `cheap_viewers`."""
        snaps = await asyncio.gather(*(p.snap() for p in self.processes))
        merged: dict[str, Any] = {
            "event": "snap",
            "t": snaps[-1]["t"],
            "viewers": [v for snap in snaps for v in snap["viewers"]],
            "decoder_latencies_ms": snaps[0]["decoder_latencies_ms"],
        }
        if self.cheap is not None:
            merged["cheap_cpu_seconds"] = snaps[-1]["cpu_seconds"]
            merged["cheap_viewers"] = self.cheap.count
        return merged

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))


# ------------------------------------------------------------ command line, work folder


def new_parser(doc: str) -> argparse.ArgumentParser:
    """A bench's parser, described by the first line of its docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0])


def parse_args(parser: argparse.ArgumentParser, keep_logs: str) -> argparse.Namespace:
    """The bench's own options plus `--settle` and `--keep-logs` (`keep_logs`: its help)."""
    parser.add_argument("--settle", type=float, default=2.0, help="server alone before viewers")
    parser.add_argument("--keep-logs", action="store_true", help=keep_logs)
    return parser.parse_args()


@contextlib.contextmanager
def logs_dir(prefix: str, keep: bool, out: TextIO | None = None) -> Iterator[Path]:
    """A fresh folder for logs; removed afterwards, or kept (and said so on `out`)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"logs kept in {path}", file=out or sys.stdout)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_bench(
    header: str, prefix: str, args: argparse.Namespace, body: Callable[[Path], None]
) -> int:
    """Print `header`, run `body(workdir)`, then say how long the whole bench took."""
    started = time.monotonic()
    print(header, flush=True)
    with logs_dir(prefix, args.keep_logs) as path:
        body(path)
    print(f"\n({time.monotonic() - started:.0f} s in all)", flush=True)
    return 0
