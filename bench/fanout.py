"""Fan-out CPU benchmark: classroom-edge (encode once) against a naive per-viewer encoder.

For each server and each viewer count N, a fresh server process is started, N WHEP
viewers connect from a separate process (bench/viewers.py: one decodes as a health
check, the others only count what they receive), and after a warm-up the server
process's CPU (user + sys from /proc/PID/stat, over wall time, in % of one core) is
measured over a window. Prints a markdown table and the per-viewer cost.

    python bench/fanout.py                      # both servers, N = 1 2 4 8 16
    python bench/fanout.py --only edge --counts 1,16 --seconds 20

A fresh server per N keeps the rows independent (nothing left over from the sessions
of an earlier row, encoder state and thread pools start alike); a server starts in
about two seconds, so this costs little. Numbers are printed, nothing passes or fails.
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
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
TRACKS = ("camera", "board", "audio")
SOURCE_FPS = {"camera": 30.0, "board": 5.0, "audio": 50.0}  # audio: 20 ms Opus frames
SATURATED_HOST_BUSY = 90.0  # % of all cores
SATURATED_FPS_SHARE = 0.9  # camera fps below this share of the source's = not keeping up


# ------------------------------------------------------------ /proc


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid`, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def host_busy_idle() -> tuple[float, float]:
    """Busy and idle jiffies of the whole machine (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values[:8]) - idle), float(idle)


@dataclass
class CpuMark:
    wall: float
    server: float
    viewers: float
    host_busy: float
    host_idle: float

    @classmethod
    def take(cls, server_pid: int, viewers_pid: int) -> CpuMark:
        busy, idle = host_busy_idle()
        return cls(
            time.monotonic(),
            process_cpu_seconds(server_pid),
            process_cpu_seconds(viewers_pid),
            busy,
            idle,
        )


# ------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class BenchError(RuntimeError):
    pass


class BudgetError(BenchError):
    pass


@dataclass
class Server:
    kind: str  # "edge" | "naive"
    workdir: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.kind}-server.log"

    @property
    def whep(self) -> str:
        return f"http://127.0.0.1:{self.port}/whep/demo"

    def command(self) -> list[str]:
        if self.kind == "edge":
            edge = shutil.which("classroom-edge")
            head = [edge] if edge else [sys.executable, "-m", "edge"]
            return [
                *head,
                "run",
                "--demo",
                "--data-dir",
                str(self.workdir / "data"),
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
        links = [*command[: command.index("run")], "links", "demo", "--demo"]
        links += ["--data-dir", str(self.workdir / "data"), "--json"]
        process = await asyncio.create_subprocess_exec(
            *links, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
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


@dataclass
class ViewerProcess:
    server: Server
    count: int
    process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.server.workdir / f"viewers-{self.server.kind}-{self.count}.log"

    async def start(self, token: str, connect_timeout: float) -> dict[str, Any]:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "viewers.py"),
                "--whep",
                self.server.whep,
                "--token",
                token,
                "--count",
                str(self.count),
                "--connect-timeout",
                str(connect_timeout),
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

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(BenchError, ConnectionError, TimeoutError):
                await self.command("quit", "bye", 20)
                await asyncio.wait_for(self.process.wait(), 10)
        await stop_process(self.process, grace=5)


# ------------------------------------------------------------ one measurement


@dataclass
class Row:
    server: str
    viewers: int
    flowing: int = 0
    cpu: float = float("nan")  # server, % of one core
    viewer_cpu: float = float("nan")  # the viewer process, % of one core
    host_busy: float = float("nan")  # whole machine, % of all cores
    kbps: dict[str, float] = field(default_factory=dict)  # mean per viewer, per track
    kbps_min: float = float("nan")  # the least a viewer got, all tracks
    fps_mean: dict[str, float] = field(default_factory=dict)  # every viewer, per track
    fps_min: dict[str, float] = field(default_factory=dict)
    decoded_fps: dict[str, float] = field(default_factory=dict)  # the decoding viewer
    latency_ms: dict[str, float] = field(default_factory=dict)  # its median glass-to-glass
    idr_per_s: dict[str, float] = field(default_factory=dict)  # keyframes a viewer got, mean
    plis: int = 0  # picture loss indications all viewers sent in the window
    nacks: int = 0  # NACKs all viewers sent in the window
    errors: list[str] = field(default_factory=list)
    cpu_runs: list[float] = field(default_factory=list)  # server CPU of each repeat

    @property
    def saturated(self) -> bool:
        camera = self.fps_mean.get("camera", 0.0)
        return (
            self.host_busy >= SATURATED_HOST_BUSY
            or camera < SATURATED_FPS_SHARE * SOURCE_FPS["camera"]
        )

    @property
    def other_cpu(self) -> float:
        """CPU of all other processes (other jobs skew the numbers), % of one core."""
        return max(0.0, self.host_busy * CORES - self.cpu - self.viewer_cpu)

    @property
    def undelivered(self) -> float:
        """Share of the camera frames the viewers did not get, in %."""
        camera = self.fps_mean.get("camera", 0.0)
        return max(0.0, 100.0 * (1 - camera / SOURCE_FPS["camera"]))


def fill_row(
    row: Row, first: CpuMark, last: CpuMark, snap0: dict[str, Any], snap1: dict[str, Any]
) -> None:
    wall = last.wall - first.wall
    row.cpu = 100.0 * (last.server - first.server) / wall
    row.viewer_cpu = 100.0 * (last.viewers - first.viewers) / wall
    busy, idle = last.host_busy - first.host_busy, last.host_idle - first.host_idle
    row.host_busy = 100.0 * busy / max(busy + idle, 1.0)
    seconds = snap1["t"] - snap0["t"]

    def delta(before: dict[str, Any], after: dict[str, Any], track: str, key: str) -> float:
        old = before["tracks"].get(track, {}).get(key, 0)
        return float(after["tracks"].get(track, {}).get(key, 0) - old)

    per_viewer: list[dict[str, dict[str, float]]] = []
    for index, (before, after) in enumerate(zip(snap0["viewers"], snap1["viewers"], strict=True)):
        if after["state"] != "connected":
            continue
        rates = {
            "kbps": {t: 8 * delta(before, after, t, "bytes") / seconds / 1e3 for t in TRACKS},
            "fps": {t: delta(before, after, t, "frames") / seconds for t in TRACKS},
            "idr": {t: delta(before, after, t, "keyframes") / seconds for t in TRACKS},
        }
        per_viewer.append(rates)
        row.plis += int(sum(delta(before, after, t, "plis") for t in TRACKS))
        row.nacks += int(sum(delta(before, after, t, "nacks") for t in TRACKS))
        if index == 0:  # viewer 0 decodes
            row.decoded_fps = rates["fps"]
    if not per_viewer:
        row.errors.append("no viewer connected during the window")
        return
    for track in TRACKS:
        row.kbps[track] = statistics.fmean(v["kbps"][track] for v in per_viewer)
        row.fps_mean[track] = statistics.fmean(v["fps"][track] for v in per_viewer)
        row.fps_min[track] = min(v["fps"][track] for v in per_viewer)
        row.idr_per_s[track] = statistics.fmean(v["idr"][track] for v in per_viewer)
    row.kbps_min = min(sum(v["kbps"].values()) for v in per_viewer)
    for track, values in snap1["decoder_latencies_ms"].items():
        window = values[len(snap0["decoder_latencies_ms"].get(track, [])) :]
        if window:
            row.latency_ms[track] = statistics.median(window)


async def measure(kind: str, count: int, args: argparse.Namespace, workdir: Path) -> Row:
    row = Row(kind, count)
    server = Server(kind, workdir)
    viewers = ViewerProcess(server, count)
    try:
        await server.start()
        token = await server.token()
        await asyncio.sleep(args.settle)  # encoders up and steady before anyone joins
        ready = await viewers.start(token, args.connect_timeout)
        row.flowing = int(ready.get("flowing", 0))
        row.errors.extend(str(e) for e in ready.get("errors", []))
        if row.flowing == 0:
            row.errors.append("no viewer received media")
            return row
        await asyncio.sleep(args.warmup)
        assert server.process is not None and viewers.process is not None
        snap0 = await viewers.command("snap", "snap")
        first = CpuMark.take(server.process.pid, viewers.process.pid)
        await asyncio.sleep(args.seconds)
        last = CpuMark.take(server.process.pid, viewers.process.pid)
        snap1 = await viewers.command("snap", "snap")
        fill_row(row, first, last, snap0, snap1)
    except (BenchError, OSError, ValueError, LookupError) as exc:
        row.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        await viewers.stop()
        await server.stop()
    return row


# ------------------------------------------------------------ report


def fmt(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:.{digits}f}"  # NaN → dash


def table(rows: Sequence[Row]) -> str:
    header = (
        "| server | viewers | flowing | server CPU % | per-viewer kb/s cam/board/audio (min total)"
        " | fps cam/board mean (min) | decoding viewer fps cam/board/audio | latency ms cam/board"
        " | IDR/s cam/board · PLI · NACK | viewer proc CPU % | other procs CPU %"
        " | host busy % of all cores | note |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in rows:
        kbps = "/".join(fmt(r.kbps.get(t, float("nan")), 0) for t in TRACKS)
        fps = (
            f"{fmt(r.fps_mean.get('camera', float('nan')))}/"
            f"{fmt(r.fps_mean.get('board', float('nan')))} "
            f"({fmt(r.fps_min.get('camera', float('nan')))}/"
            f"{fmt(r.fps_min.get('board', float('nan')))})"
        )
        decoded = "/".join(fmt(r.decoded_fps.get(t, float("nan"))) for t in TRACKS)
        latency = "/".join(fmt(r.latency_ms.get(t, float("nan")), 0) for t in ("camera", "board"))
        cpu = fmt(r.cpu)
        if len(r.cpu_runs) > 1:
            cpu += f" ({fmt(min(r.cpu_runs))}–{fmt(max(r.cpu_runs))})"
        feedback = (
            f"{fmt(r.idr_per_s.get('camera', float('nan')), 2)}/"
            f"{fmt(r.idr_per_s.get('board', float('nan')), 2)} · {r.plis} · {r.nacks}"
        )
        notes = []
        if r.errors:
            notes.append("; ".join(e.splitlines()[0][:80] for e in r.errors))
        elif r.saturated:
            notes.append(f"SATURATED: {fmt(r.undelivered, 0)} % of camera frames not delivered")
        lines.append(
            f"| {r.server} | {r.viewers} | {r.flowing} | {cpu}"
            f" | {kbps} ({fmt(r.kbps_min, 0)}) | {fps} | {decoded} | {latency}"
            f" | {feedback} | {fmt(r.viewer_cpu)} | {fmt(r.other_cpu, 0)} | {fmt(r.host_busy, 0)}"
            f" | {' '.join(notes)} |"
        )
    return "\n".join(lines)


def slope(rows: Sequence[Row]) -> tuple[float, int, int] | None:
    """Server CPU per extra viewer between the fewest and the most viewers measured."""
    good = [r for r in rows if not r.errors and r.cpu == r.cpu]
    if len(good) < 2:
        return None
    low = min(good, key=lambda r: r.viewers)
    high = max(good, key=lambda r: r.viewers)
    if high.viewers == low.viewers:
        return None
    return (high.cpu - low.cpu) / (high.viewers - low.viewers), low.viewers, high.viewers


def fitted_slope(rows: Sequence[Row]) -> float | None:
    """Least-squares server CPU per viewer over every row (less sensitive to one noisy row)."""
    good = [r for r in rows if not r.errors and r.cpu == r.cpu]
    if len({r.viewers for r in good}) < 2:
        return None
    fit = statistics.linear_regression([r.viewers for r in good], [r.cpu for r in good])
    return fit.slope


def summary(rows: Sequence[Row]) -> str:
    lines = []
    costs: dict[str, float] = {}
    unsaturated: dict[str, float] = {}
    for kind in ("edge", "naive"):
        mine = [r for r in rows if r.server == kind]
        result = slope(mine)
        if result is None:
            continue
        cost, low, high = result
        costs[kind] = cost
        line = (
            f"- {kind}: per extra viewer = (CPU@{high} − CPU@{low}) / {high - low}"
            f" = {cost:.2f} % of one core"
        )
        if any(r.saturated for r in mine if r.viewers == high):
            line += " — SATURATED at the top count, so this understates the true cost"
            ok = slope([r for r in mine if not r.saturated])
            if ok is not None:
                unsaturated[kind] = ok[0]
                line += (
                    f"; over the unsaturated rows ({ok[1]}…{ok[2]} viewers): {ok[0]:.2f} %"
                    " of one core"
                )
        fitted = fitted_slope([r for r in mine if not r.saturated])
        if fitted is not None and not any(r.saturated for r in mine):
            line += f" (least-squares fit over all {len(mine)} rows: {fitted:.2f} %)"
        lines.append(line)
    if "edge" in costs:
        verdict = "meets" if costs["edge"] <= 1.0 else "MISSES"
        lines.append(f"- edge target ≤ 1 % of one core per viewer: {verdict}")
    if "edge" in costs and "naive" in costs:
        edge = costs["edge"]
        if edge <= 0:
            lines.append(
                "- naive/edge ratio: undefined, the edge slope is ≤ 0 (extra viewers cost less"
                " than the measurement noise); use a longer --seconds"
            )
        else:
            ratio = costs["naive"] / edge
            verdict = "meets" if ratio >= 20 else "MISSES"
            lines.append(
                f"- naive/edge per-viewer cost ratio: {ratio:.1f}× (target ≥ 20×: {verdict})"
            )
            if "naive" in unsaturated:
                lines.append(
                    "- naive/edge ratio with the naive slope from its unsaturated rows: "
                    f"{unsaturated['naive'] / edge:.1f}×"
                )
    return "\n".join(lines)


def median_row(runs: Sequence[Row]) -> Row:
    """The run with the median server CPU, carrying the CPU of every run."""
    good = sorted((r for r in runs if not r.errors), key=lambda r: r.cpu)
    row = good[(len(good) - 1) // 2] if good else runs[-1]
    row.cpu_runs = [r.cpu for r in good]
    return row


async def run(args: argparse.Namespace) -> int:
    kinds = ["edge", "naive"] if args.only is None else [args.only]
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    runs: dict[tuple[str, int], list[Row]] = {}
    try:
        for repeat in range(args.repeat):  # repeats outermost: drift hits every row alike
            for kind in kinds:
                for count in args.counts:
                    print(
                        f"… {kind}, {count} viewer(s), run {repeat + 1}/{args.repeat}",
                        file=sys.stderr,
                        flush=True,
                    )
                    try:
                        if time.monotonic() - started > args.budget:
                            raise BudgetError(f"skipped: the {args.budget:g} s budget is spent")
                        row = await asyncio.wait_for(
                            measure(kind, count, args, workdir), args.row_timeout
                        )
                    except BudgetError as exc:
                        row = Row(kind, count, errors=[str(exc)])
                    except TimeoutError:
                        limit = f"row took over {args.row_timeout:.0f} s"
                        row = Row(kind, count, errors=[limit])
                    runs.setdefault((kind, count), []).append(row)
                    print(
                        f"  server CPU {fmt(row.cpu)} %, flowing {row.flowing}/{count}"
                        + (f", errors: {row.errors}" if row.errors else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        rows = [median_row(runs[(kind, count)]) for kind in kinds for count in args.counts]
    finally:
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nFan-out CPU, {CORES} cores, {args.seconds:g} s window after {args.warmup:g} s"
        f" warm-up, fresh server per row, {args.repeat} run(s) per row (median shown,"
        f" range in brackets) ({time.monotonic() - started:.0f} s in all).\n"
        "Server CPU = user+sys of the server process over wall time, % of one core.\n"
        "One viewer decodes (its fps and latency are shown); the others reassemble frames"
        " without decoding.\n"
    )
    print(table(rows))
    print()
    print(summary(rows), flush=True)
    return 0


def counts(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("viewer counts are positive integers, e.g. 1,2,4,8,16")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=counts, default=[1, 2, 4, 8, 16], help="e.g. 1,4,16")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=4.0, help="after all viewers connect")
    parser.add_argument("--settle", type=float, default=2.0, help="server alone before viewers")
    parser.add_argument("--only", choices=("edge", "naive"), default=None)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the median CPU is shown"
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument(
        "--budget", type=float, default=900.0, help="seconds; rows not started by then are skipped"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep server and viewer logs")
    args = parser.parse_args()
    if args.repeat < 1 or args.seconds <= 0:
        parser.error("--repeat must be at least 1 and --seconds positive")
    args.row_timeout = 40 + args.settle + args.connect_timeout + 30 + args.warmup + args.seconds
    args.row_timeout += 60  # teardown
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
