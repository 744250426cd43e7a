"""Fan-out CPU benchmark: classroom-edge (encode once) against a naive per-viewer encoder.

For each server and each viewer count N, a fresh server process is started, N WHEP
viewers connect: one stock aiortc viewer that decodes (bench/viewers.py, a process of its
own: the health check, decoded fps, glass-to-glass latency from the burned-in clock) and
N−1 cheap load viewers (bench/cheap_viewer.py, another process: ICE and DTLS by aiortc,
then they count packets per SSRC from the clear RTP header and send receiver reports,
decrypting nothing; `--viewers stock` makes all N stock aiortc viewers in one process, the
old way). After a warm-up the server's CPU (user + sys from /proc/PID/stat of the service
and its viewer workers, over wall time, in % of one core) is measured over a window, and
apart that of its main thread, the event loop (the encoders run in threads of their own;
with viewer workers, the viewers are served in those). Prints a markdown table and the
per-viewer cost.

    python bench/fanout.py                      # both servers, N = 1 2 4 8 16
    python bench/fanout.py --only edge --counts 1,16 --seconds 20
    python bench/fanout.py --only edge --counts 16 --save-data-share 0.5   # spread

A fresh server per N keeps the rows independent (nothing left over from the sessions
of an earlier row, encoder state and thread pools start alike); a server starts in
about two seconds, so this costs little. Numbers are printed, nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.service import (
    BenchError,
    LoadViewers,
    Server,
    demo_site,
    logs_dir,
    new_parser,
    parse_args,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
TRACKS = ("camera", "board", "audio")
SOURCE_FPS = {"camera": 30.0, "board": 5.0, "audio": 50.0}  # audio: 20 ms Opus frames
SAVE_DATA_CAMERA_FPS = 15.0  # camera low, what a save-data viewer gets
SATURATED_HOST_BUSY = 90.0  # % of all cores
SATURATED_FPS_SHARE = 0.9  # camera fps below this share of the source's = not keeping up


# ------------------------------------------------------------ /proc


def descendants(pid: int) -> list[int]:
    """The live children of `pid`, their children, and so on (the service's viewer workers)."""
    found: list[int] = []
    parents = [pid]
    while parents:
        parent = parents.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError):
                    text = Path(f"/proc/{parent}/task/{task}/children").read_text()
                    children = [int(child) for child in text.split()]
                    found += children
                    parents += children
    return found


def children_running(pid: int, module: bytes) -> list[int]:
    """The processes under `pid` that run `python -m module`."""
    found = []
    for child in descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if module in command.split(b"\0"):
            found.append(child)
    return found


def process_cpu_seconds(pid: int, *, family: bool = True) -> float:
    """utime + stime of every thread of `pid`, in seconds; with `family`, of its live
    descendants too (a child that ended no longer counts: measure across no restart)."""
    total = 0.0
    for member in [pid, *(descendants(pid) if family else [])]:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{member}/stat").read_text()
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)
    return total


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """utime + stime of thread `tid` of `pid` (the main thread: `tid` = `pid`), in seconds."""
    text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_busy_idle() -> tuple[float, float]:
    """Busy and idle jiffies of the whole machine (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values[:8]) - idle), float(idle)


@dataclass
class CpuMark:
    wall: float
    server: float
    viewers: float  # every viewer process
    host_busy: float
    host_idle: float
    loop: float = 0.0  # the server's main thread: its event loop, where viewers are served

    @classmethod
    def take(cls, server_pid: int, viewer_pids: Sequence[int]) -> CpuMark:
        busy, idle = host_busy_idle()
        return cls(
            time.monotonic(),
            process_cpu_seconds(server_pid),
            sum(process_cpu_seconds(pid) for pid in viewer_pids),
            busy,
            idle,
            thread_cpu_seconds(server_pid, server_pid),
        )


class BudgetError(BenchError):
    pass


# ------------------------------------------------------------ one measurement


@dataclass
class Row:
    server: str
    viewers: int
    save_data: int = 0  # of them, on the cheapest renditions (camera low, board stills)
    flowing: int = 0
    cpu: float = float("nan")  # server, % of one core
    loop_cpu: float = float("nan")  # the server's event loop thread, % of one core
    viewer_cpu: float = float("nan")  # the viewer processes, % of one core
    cheap_cpu: float = float("nan")  # the cheap viewers' process per cheap viewer, likewise
    host_busy: float = float("nan")  # whole machine, % of all cores
    kbps: dict[str, float] = field(default_factory=dict)  # mean per viewer, per track
    kbps_min: float = float("nan")  # the least a viewer got, all tracks
    fps_mean: dict[str, float] = field(default_factory=dict)  # every viewer, per track
    fps_min: dict[str, float] = field(default_factory=dict)
    decoded_fps: dict[str, float] = field(default_factory=dict)  # the decoding viewer
    latency_ms: dict[str, float] = field(default_factory=dict)  # its median glass-to-glass
    idr_per_s: dict[str, float] = field(default_factory=dict)  # keyframes a stock viewer got
    plis: int = 0  # picture loss indications all viewers sent in the window
    nacks: int = 0  # NACKs all viewers sent in the window
    errors: list[str] = field(default_factory=list)
    cpu_runs: list[float] = field(default_factory=list)  # server CPU of each repeat

    @property
    def camera_fps(self) -> float:
        """The camera fps a viewer should get, on average over the renditions they watch."""
        saving = self.save_data * SAVE_DATA_CAMERA_FPS
        return (saving + (self.viewers - self.save_data) * SOURCE_FPS["camera"]) / self.viewers

    @property
    def saturated(self) -> bool:
        camera = self.fps_mean.get("camera", 0.0)
        return (
            self.host_busy >= SATURATED_HOST_BUSY or camera < SATURATED_FPS_SHARE * self.camera_fps
        )

    @property
    def other_cpu(self) -> float:
        """CPU of all other processes (other jobs skew the numbers), % of one core."""
        return max(0.0, self.host_busy * CORES - self.cpu - self.viewer_cpu)

    @property
    def undelivered(self) -> float:
        """Share of the camera frames the viewers did not get, in %."""
        camera = self.fps_mean.get("camera", 0.0)
        return max(0.0, 100.0 * (1 - camera / self.camera_fps))


def fill_row(
    row: Row, first: CpuMark, last: CpuMark, snap0: dict[str, Any], snap1: dict[str, Any]
) -> None:
    wall = last.wall - first.wall
    row.cpu = 100.0 * (last.server - first.server) / wall
    row.loop_cpu = 100.0 * (last.loop - first.loop) / wall
    row.viewer_cpu = 100.0 * (last.viewers - first.viewers) / wall
    busy, idle = last.host_busy - first.host_busy, last.host_idle - first.host_idle
    row.host_busy = 100.0 * busy / max(busy + idle, 1.0)
    seconds = snap1["t"] - snap0["t"]
    if "cheap_cpu_seconds" in snap0 and "cheap_cpu_seconds" in snap1:
        spent = snap1["cheap_cpu_seconds"] - snap0["cheap_cpu_seconds"]
        row.cheap_cpu = 100.0 * spent / seconds / snap1["cheap_viewers"]

    def delta(before: dict[str, Any], after: dict[str, Any], track: str, key: str) -> float:
        old = before["tracks"].get(track, {}).get(key, 0)
        return float(after["tracks"].get(track, {}).get(key, 0) - old)

    per_viewer: list[dict[str, dict[str, float]]] = []
    keyframes: list[dict[str, float]] = []  # stock viewers alone count them (a cheap one
    # would have to decrypt to see an SPS)
    for index, (before, after) in enumerate(zip(snap0["viewers"], snap1["viewers"], strict=True)):
        if after["state"] != "connected":
            continue
        rates = {
            "kbps": {t: 8 * delta(before, after, t, "bytes") / seconds / 1e3 for t in TRACKS},
            "fps": {t: delta(before, after, t, "frames") / seconds for t in TRACKS},
        }
        per_viewer.append(rates)
        if not after.get("cheap"):
            keyframes.append({t: delta(before, after, t, "keyframes") / seconds for t in TRACKS})
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
        if keyframes:
            row.idr_per_s[track] = statistics.fmean(v[track] for v in keyframes)
    row.kbps_min = min(sum(v["kbps"].values()) for v in per_viewer)
    for track, values in snap1["decoder_latencies_ms"].items():
        window = values[len(snap0["decoder_latencies_ms"].get(track, [])) :]
        if window:
            row.latency_ms[track] = statistics.median(window)


async def measure(kind: str, count: int, args: argparse.Namespace, workdir: Path) -> Row:
    save_data = round(count * args.save_data_share) if kind == "edge" else 0
    row = Row(kind, count, save_data)
    here = kind == "edge" and args.media_here  # capture in the service's process
    server = Server(
        kind,
        workdir,
        config=demo_site(workdir / "site", {"media_process": "false"}) if here else None,
    )
    log = workdir / f"viewers-{kind}-{count}.log"
    viewers = LoadViewers(server.whep, count, log, save_data, cheap=args.viewers == "cheap")
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
        assert server.process is not None
        snap0 = await viewers.snap()
        first = CpuMark.take(server.process.pid, viewers.pids)
        await asyncio.sleep(args.seconds)
        last = CpuMark.take(server.process.pid, viewers.pids)
        snap1 = await viewers.snap()
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
        "| server | viewers | flowing | server CPU % | its loop thread %"
        " | per-viewer kb/s cam/board/audio (min total)"
        " | fps cam/board mean (min) | decoding viewer fps cam/board/audio | latency ms cam/board"
        " | IDR/s cam/board · PLI · NACK | viewer procs CPU % (per cheap viewer)"
        " | other procs CPU %"
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
            f"| {r.server} | {r.viewers}{f' ({r.save_data} low)' if r.save_data else ''}"
            f" | {r.flowing} | {cpu} | {fmt(r.loop_cpu)}"
            f" | {kbps} ({fmt(r.kbps_min, 0)}) | {fps} | {decoded} | {latency}"
            f" | {feedback} | {fmt(r.viewer_cpu)}"
            + (f" ({fmt(r.cheap_cpu, 2)})" if r.cheap_cpu == r.cheap_cpu else "")
            + f" | {fmt(r.other_cpu, 0)} | {fmt(r.host_busy, 0)}"
            f" | {' '.join(notes)} |"
        )
    return "\n".join(lines)


def slope(
    rows: Sequence[Row], cpu: Callable[[Row], float] = lambda r: r.cpu
) -> tuple[float, int, int] | None:
    """Server CPU (or another `cpu` of a row) per extra viewer between the fewest and
    the most viewers measured."""
    good = [r for r in rows if not r.errors and cpu(r) == cpu(r)]
    if len(good) < 2:
        return None
    low = min(good, key=lambda r: r.viewers)
    high = max(good, key=lambda r: r.viewers)
    if high.viewers == low.viewers:
        return None
    return (cpu(high) - cpu(low)) / (high.viewers - low.viewers), low.viewers, high.viewers


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
        loop = slope(mine, lambda r: r.loop_cpu)
        if loop is not None:
            line += f"; of it the event loop thread: {loop[0]:.2f} %"
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
    runs: dict[tuple[str, int], list[Row]] = {}
    with logs_dir("fanout-bench-", args.keep_logs, sys.stderr) as workdir:
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
                        f"  server CPU {fmt(row.cpu)} % (loop thread {fmt(row.loop_cpu)} %),"
                        f" flowing {row.flowing}/{count}"
                        + (f", errors: {row.errors}" if row.errors else ""),
                        file=sys.stderr,
                        flush=True,
                    )
        rows = [median_row(runs[(kind, count)]) for kind in kinds for count in args.counts]
    print(
        f"\nFan-out CPU, {CORES} cores, {args.seconds:g} s window after {args.warmup:g} s"
        f" warm-up, fresh server per row, {args.repeat} run(s) per row (median shown,"
        f" range in brackets) ({time.monotonic() - started:.0f} s in all).\n"
        "Server CPU = user+sys of the server process over wall time, % of one core.\n"
        + (
            "One stock aiortc viewer decodes (its fps and latency are shown); the others are"
            " cheap load viewers (bench/cheap_viewer.py: RTP headers counted, nothing"
            " decrypted; their fps = RTP marker bits).\n"
            if args.viewers == "cheap"
            else "One viewer decodes (its fps and latency are shown); the others reassemble"
            " frames without decoding.\n"
        )
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
    parser = new_parser(__doc__)
    parser.add_argument("--counts", type=counts, default=[1, 2, 4, 8, 16], help="e.g. 1,4,16")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=4.0, help="after all viewers connect")
    parser.add_argument("--only", choices=("edge", "naive"), default=None)
    parser.add_argument(
        "--viewers",
        choices=("cheap", "stock"),
        default="cheap",
        help="cheap: one decoding stock viewer and N−1 cheap load viewers (bench/"
        "cheap_viewer.py); stock: N stock aiortc viewers, one decoding (bench/viewers.py)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per row; the median CPU is shown"
    )
    parser.add_argument(
        "--save-data-share",
        type=float,
        default=0.0,
        help="share of the edge viewers that ask for save data (camera low + board stills)",
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument(
        "--media-here",
        action="store_true",
        help="[webrtc] media_process = false: capture in the service's process, to compare",
    )
    parser.add_argument(
        "--budget", type=float, default=900.0, help="seconds; rows not started by then are skipped"
    )
    args = parse_args(parser, keep_logs="keep server and viewer logs")
    if args.repeat < 1 or args.seconds <= 0 or not 0 <= args.save_data_share <= 1:
        parser.error("--repeat ≥ 1, --seconds > 0 and --save-data-share from 0 to 1, please")
    args.row_timeout = 40 + args.settle + args.connect_timeout + 30 + args.warmup + args.seconds
    args.row_timeout += 60  # teardown
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
