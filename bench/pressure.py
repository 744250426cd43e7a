"""Pressure on the service while pupils watch: a login flood, a locked database and a join
storm at once (issue 20's numbers).

The demo service (bench/service.py's `Server`, a process of its own, its viewers served
by its viewer worker processes) with `--viewers` (60) watching: one stock aiortc viewer
that decodes (bench/viewers.py: decoded frame times, the burned-in clock) and N−1 cheap
load viewers (bench/cheap_viewer.py). After `--warmup` s, at once:

(a) a login flood: `--flood` (60) wrong staff logins (`POST /login`, a staff password is
    set) from 5 loopback addresses, 127.0.0.2–127.0.0.6, each address's all at once;
(b) lessons.db's write lock held `--lock-seconds` (5) s by another connection
    (`BEGIN IMMEDIATE`, as a slow writer would);
(c) a join storm: `--storm` (40) more cheap viewers POST at start times spread evenly
    over `--storm-window` (2) s, from this process.

The pressure window runs from their start until all three are over (the lock released,
the last login answered, every storm viewer has its first camera packets or
`--storm-limit` passed). Meanwhile another process GETs /healthz every 100 ms. Printed:
the decoding viewer's longest camera gap (between decoded frames) in the 2 s before, the
window and the 2 s after, its decoded fps and glass-to-glass latency (p50/p95) in the
window; /healthz latency (p50/p99/max) before and in the window; how many storm viewers
got media and when the last one got its first camera packet (a new viewer's video
starts at a keyframe) and its first whole camera frame; the cheap viewers' camera fps;
the service's CPU (its process with its viewer workers, bench/fanout.py's
`process_cpu_seconds`) before and in the window; warnings and errors in its log.

`--compose` adds what the archive does after a lesson: the service's own `Composer`
(Debian's ffmpeg at nice 19, idle I/O) makes `lesson.mp4` from a recorded-like lesson (a
1920×1080 board, a 1280×720 camera with sound, `--compose-seconds` long, made by ffmpeg
before the service starts), one compose after another from the warm-up to the window's
end; printed: how many finished and the CPU they took.

The site is the demo's own config with `[webrtc] max_per_class_link` and
`max_per_address` raised to 300 (everyone joins with the class link from 127.0.0.1, and
N + storm are past the defaults, 45 and 60); `--workers K` adds `viewer_workers = K`
(`0`: the viewers in the service's own process, as before the workers).

    python bench/pressure.py                          # 60 viewers, storm of 40
    python bench/pressure.py --viewers 10 --storm 10  # a short look
    python bench/pressure.py --workers 0              # the in-process path, to compare
    python bench/pressure.py --viewers 120 --storm 0 --flood 0 --lock-seconds 0 \
        --hold 15 --compose                           # 120 viewers and an archive compose

Numbers are printed; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cheap_viewer import CheapViewer
from bench.fanout import CORES, children_running, host_busy_idle, process_cpu_seconds
from bench.latency import quantile
from bench.service import (
    BenchError,
    LoadViewers,
    Server,
    demo_site,
    new_parser,
    parse_args,
    run_bench,
    stop_process,
    tail,
)
from edge.recording.compose import Composer
from edge.recording.recordings import (
    PRESENTATION,
    PRESENTER,
    LessonRecord,
    MediaFile,
    Part,
    part_file,
)
from webrtc import gather_only

PASSWORD = "mật-khẩu-BGH-2026"
WRONG = {"password": "sai-mat-khau", "next": "/reports"}
FLOOD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 7)]
HIGH_CAP = 300  # sessions per class link and per address in the bench's site
AROUND = 2.0  # seconds before and after the pressure window


# ------------------------------------------------------------ an archive compose


def make_lesson(folder: Path, seconds: float) -> LessonRecord:
    """A lesson's two files as the recorder names them, made by ffmpeg (test patterns)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        PRESENTATION: ["-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=15:duration={seconds}"],
        PRESENTER: [
            *("-f", "lavfi", "-i", f"testsrc=size=1280x720:rate=30:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"),
            *("-c:a", "aac"),
        ],
    }
    files = []
    for kind, inputs in made.items():
        name = part_file(kind, 1)
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs]
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", str(folder / name)]
        subprocess.run(command, check=True, timeout=600)
        tracks = ["board"] if kind == PRESENTATION else ["camera", "mic"]
        size = (folder / name).stat().st_size
        files.append(MediaFile(name=name, kind=kind, tracks=tracks, size=size, duration=seconds))
    start = dt.datetime.now(dt.UTC)
    return LessonRecord.model_validate(
        {
            "lesson": "bench",
            "room": "demo",
            "kind": "lesson",
            "school": "bench",
            "class": "bench",
            "subject": "bench",
            "teacher": "bench",
            "period": None,
            "session": None,
            "planned_start": start,
            "planned_end": None,
            "parts": [Part(number=1, start=start, files=files)],
        }
    )


class Composing:
    """The archive's composer, again and again, in a process (and session) of its own
    whose scheduling group gets nice 19: the service's composer is nice 19 inside the
    service's session, and with the kernel's autogroups a nice 19 process in another
    session would compete as an equal."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done = 0
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--compose-loop", str(self.folder)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        with contextlib.suppress(OSError):  # no autogroups: nice 19 alone is the same
            Path(f"/proc/{self.process.pid}/autogroup").write_text("19")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for _ in self.process.stdout:
            self.done += 1

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def stop(self) -> None:
        if self.process is not None:  # the loop and its ffmpeg, all of its session
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)


def compose_loop(folder: Path) -> None:
    """`--compose-loop FOLDER`: make its lesson.mp4 again and again; a line after each."""
    record = LessonRecord.model_validate_json((folder / "record.json").read_text("utf-8"))

    async def loop() -> None:
        composer = Composer()  # nice 19 and idle I/O, as the archive's
        while True:
            await composer.compose(folder, record)
            print("composed", flush=True)

    asyncio.run(loop())


# ------------------------------------------------------------ numbers


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"  # NaN → dash


def longest_gap(times: Sequence[float], since: float, until: float) -> tuple[float, float]:
    """The longest gap between consecutive `times` that ends in (since, until], in s, and
    when it ended (NaN, NaN: no frame ended one there)."""
    best, at = float("nan"), float("nan")
    for a, b in itertools.pairwise(times):
        if since < b <= until and not b - a <= best:
            best, at = b - a, b
    return best, at


def count_in(times: Sequence[float], since: float, until: float) -> int:
    return sum(1 for t in times if since < t <= until)


@dataclass
class Cpu:
    """CPU seconds of the service (with its viewer workers, and its own process alone),
    of the viewer processes and of the machine, at one moment."""

    wall: float
    family: float
    own: float
    media: float
    viewers: float
    busy: float
    idle: float

    @classmethod
    def take(cls, pid: int, viewer_pids: Sequence[int]) -> Cpu:
        busy, idle = host_busy_idle()
        return cls(
            time.monotonic(),
            process_cpu_seconds(pid),
            process_cpu_seconds(pid, family=False),
            sum(
                process_cpu_seconds(p, family=False)
                for p in children_running(pid, b"edge.live.mediahost")
            ),
            sum(process_cpu_seconds(p) for p in viewer_pids),
            busy,
            idle,
        )

    def since(self, first: Cpu) -> str:
        wall = max(self.wall - first.wall, 1e-6)
        family = 100 * (self.family - first.family) / wall
        own = 100 * (self.own - first.own) / wall
        media = 100 * (self.media - first.media) / wall
        viewers = 100 * (self.viewers - first.viewers) / wall
        busy, idle = self.busy - first.busy, self.idle - first.idle
        host = 100 * busy / max(busy + idle, 1.0)
        return (
            f"service {family:.1f} % of one core (its own process {own:.1f} %, media process"
            f" {media:.1f} %, viewer workers {family - own - media:.1f} %); viewer processes"
            f" {viewers:.1f} %; whole machine"
            f" {host:.0f} % of {CORES} cores busy ({wall:.1f} s)"
        )


# ------------------------------------------------------------ /healthz, from another process


def probe(url: str, interval: float) -> None:
    """GET `url` every `interval` s (the next one right away when an answer is late)
    until a line or the end comes on stdin; then one JSON line: each GET's start
    (`time.monotonic()`), its time in ms and its status (0: failed)."""
    stop = threading.Event()

    def wait_for_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    samples: list[tuple[float, float, int]] = []
    print(json.dumps({"event": "ready"}), flush=True)
    with httpx.Client(timeout=30) as client:
        due = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = client.get(url).status_code
            except httpx.HTTPError:
                status = 0
            took = round(1000 * (time.monotonic() - started), 2)
            samples.append((round(started, 4), took, status))
            due += interval
            if due > time.monotonic():
                stop.wait(due - time.monotonic())
            else:
                due = time.monotonic()
    print(json.dumps({"event": "samples", "samples": samples}), flush=True)


class Prober:
    """bench/pressure.py --probe in a process of its own: /healthz latency, undisturbed
    by this process's viewers."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self.url, self.interval = url, interval
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--probe",
            self.url,
            str(self.interval),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        await asyncio.wait_for(self.process.stdout.readline(), 30)  # ready

    async def samples(self) -> list[tuple[float, float, int]]:
        assert self.process is not None and self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        await asyncio.wait_for(self.process.wait(), 10)
        message: dict[str, Any] = json.loads(line)
        return [(float(t), float(ms), int(s)) for t, ms, s in message["samples"]]

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process, grace=1)


def health_line(samples: Sequence[tuple[float, float, int]], since: float, until: float) -> str:
    """/healthz answers of the GETs started in [since, until]."""
    chosen = [(ms, status) for t, ms, status in samples if since <= t <= until]
    if not chosen:
        return "no samples"
    times = [ms for ms, _ in chosen]
    statuses = collections.Counter(status for _, status in chosen)
    return (
        f"p50 {quantile(times, 0.5):.1f} ms, p99 {quantile(times, 0.99):.1f} ms, max"
        f" {max(times):.1f} ms over {len(chosen)} GETs; status {dict(statuses)}"
    )


# ------------------------------------------------------------ the service's own counts

METRIC = re.compile(r"^(classroom_edge_\w+?)(?:_total)?(\{[^}]*\})? (\S+)$", re.M)
COUNTERS = (  # counted over the window, summed over their labels
    "classroom_edge_keyframe_requests",
    "classroom_edge_dropped_packets",
    "classroom_edge_viewer_resyncs",
    "classroom_edge_media_drops",
    "classroom_edge_loop_restarts",
    "classroom_edge_viewer_workers_replaced",
)


def scrape(text: str) -> dict[tuple[str, str], float]:
    """/metrics as (name without `_total`, labels) → value."""
    found = {}
    for name, labels, value in METRIC.findall(text):
        with contextlib.suppress(ValueError):
            found[(name, labels)] = float(value)
    return found


@dataclass
class Watch:
    """/metrics once a second: the worst loop lags seen, and the counters at the start
    and the end of the window."""

    base: str
    lag: float = 0.0  # the service's event loop, worst
    worker_lag: float = 0.0  # the viewer workers' loops, worst
    scrapes: int = 0
    failures: int = 0

    async def get(self, client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
        try:
            found = scrape((await client.get(f"{self.base}/metrics")).text)
        except httpx.HTTPError:
            self.failures += 1
            return {}
        self.scrapes += 1
        self.lag = max(self.lag, found.get(("classroom_edge_loop_lag_seconds", ""), 0.0))
        worker = found.get(("classroom_edge_worker_loop_lag_seconds", ""), 0.0)
        self.worker_lag = max(self.worker_lag, worker)
        return found

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.get(client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def label_value(labels: str) -> str:
    """`{room="demo",rendition="camera/high"}` → `camera/high` (the room left out)."""
    values = re.findall(r'(\w+)="([^"]*)"', labels)
    return ",".join(value for key, value in values if key != "room")


def counts_line(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], seconds: float
) -> list[str]:
    """What moved in /metrics over the window: frames a second of the sources and the
    encoders (those that ran), keyframes of the video renditions, and the counters of
    trouble (those that moved)."""

    def moved(key: tuple[str, str]) -> float:
        return after[key] - before.get(key, 0.0)

    sources, encoded, keyframes = [], [], []
    for key in sorted(after):
        name, labels = key
        label = label_value(labels)
        if name == "classroom_edge_device_frames":
            sources.append(f"{label} {moved(key) / seconds:.1f}")
        elif name == "classroom_edge_encoded_frames" and moved(key):
            encoded.append(f"{label} {moved(key) / seconds:.1f}")
        elif name == "classroom_edge_keyframes" and moved(key) and not label.startswith("mic"):
            keyframes.append(f"{label} {moved(key):g}")
    lines = [
        "frames a second, sources: " + (", ".join(sources) or "–"),
        "frames a second, encoders: " + (", ".join(encoded) or "–"),
        "keyframes (IDR): " + (", ".join(keyframes) or "none"),
    ]
    moved_counts = []
    for counter in COUNTERS:
        total = sum(moved(k) for k in after if k[0] == counter)
        if total:
            moved_counts.append(f"{counter.removeprefix('classroom_edge_')} {total:g}")
    lines.append("counters that moved: " + (", ".join(moved_counts) or "none"))
    return lines


# ------------------------------------------------------------ the three pressures


async def login_flood(base: str, total: int) -> tuple[collections.Counter[int], float]:
    """`total` wrong logins, shared out over the five addresses, each address's all at
    once (tests/test_login_flood.py); the statuses and when the last answer came."""

    async def one_address(address: str, attempts: int) -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(base_url=base, transport=transport, timeout=120) as client:

            async def attempt() -> int:
                try:
                    return (await client.post("/login", data=WRONG)).status_code
                except httpx.HTTPError:
                    return 0

            return list(await asyncio.gather(*(attempt() for _ in range(attempts))))

    shares = [total // len(FLOOD_ADDRESSES)] * len(FLOOD_ADDRESSES)
    for index in range(total % len(FLOOD_ADDRESSES)):
        shares[index] += 1
    answers = await asyncio.gather(
        *(one_address(a, n) for a, n in zip(FLOOD_ADDRESSES, shares, strict=True) if n)
    )
    return collections.Counter(code for codes in answers for code in codes), time.monotonic()


async def hold_write_lock(database: Path, seconds: float) -> tuple[float, float, float]:
    """lessons.db's write lock from another connection for `seconds`; how long taking it
    took, when it was taken and when it was given back (`time.monotonic()`)."""

    def take() -> sqlite3.Connection:
        db = sqlite3.connect(database, isolation_level=None, timeout=30, check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")
        return db

    def give_back(db: sqlite3.Connection) -> None:
        db.execute("ROLLBACK")
        db.close()

    asked = time.monotonic()
    db = await asyncio.to_thread(take)
    taken = time.monotonic()
    await asyncio.sleep(seconds)
    await asyncio.to_thread(give_back, db)
    return taken - asked, taken, time.monotonic()


@dataclass
class Joiner:
    viewer: CheapViewer
    posted: float | None = None
    answered: float | None = None
    status: int | None = None
    error: str | None = None
    frame: float | None = None  # first whole camera frame (an RTP marker), polled
    media: bool = False  # connected, with camera, board and sound packets (at the end)

    @property
    def first_packet(self) -> float | None:
        """When its first camera packet came (the keyframe a new viewer starts at)."""
        path = self.viewer.path
        return None if path is None else path.first_at.get("camera")


async def join_storm(
    joiners: list[Joiner], window: float, limit: float, client: httpx.AsyncClient
) -> float:
    """The joiners POST at start times spread over `window` s; waits until each answered
    one has a whole camera frame (polled every 20 ms) or `limit` s passed since the first
    POST; when the storm was over."""

    async def join(joiner: Joiner, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        try:
            response = await joiner.viewer.connect(client)
        except httpx.HTTPError as exc:
            joiner.error = f"{type(exc).__name__}: {exc}"
            return
        finally:
            joiner.posted, joiner.answered = joiner.viewer.posted_at, joiner.viewer.answered_at
        joiner.status = response.status_code

    start = time.monotonic()
    step = window / max(len(joiners), 1)
    posting = asyncio.gather(*(join(j, start + i * step) for i, j in enumerate(joiners)))
    deadline = start + limit
    while time.monotonic() < deadline:
        now = time.monotonic()
        for joiner in joiners:
            path = joiner.viewer.path
            if (
                joiner.frame is None
                and path is not None
                and path.counts().get("camera", {}).get("frames", 0) > 0
            ):
                joiner.frame = now
        if posting.done() and all(j.frame is not None for j in joiners if j.status == 201):
            break
        await asyncio.sleep(0.02)
    if not posting.done():
        posting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await posting
    return time.monotonic()


# ------------------------------------------------------------ the run


def log_findings(log: Path, top: int = 10) -> list[str]:
    """The service log's warnings, errors and tracebacks, alike ones counted together."""
    found: collections.Counter[str] = collections.Counter()
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        match = re.search(r"\b(WARNING|ERROR|CRITICAL)\b (.*)", line)
        if match:
            text = re.sub(r"\d+", "N", f"{match.group(1)} {match.group(2)}")[:160]
            found[text] += 1
        elif line.startswith("Traceback"):
            found["Traceback"] += 1
    return [f"{count}× {text}" for text, count in found.most_common(top)]


def report(
    args: argparse.Namespace,
    t0: float,
    t_end: float,
    frames: dict[str, Any],
    samples: Sequence[tuple[float, float, int]],
    joiners: Sequence[Joiner],
    snaps: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    camera = [float(t) for t in frames["arrivals"].get("camera", [])]
    reads = [(float(at), float(ms)) for at, ms in frames["clock"].get("camera", [])]
    window = t_end - t0
    print(f"\npressure window: {window:.2f} s (t = 0 at its start)")
    print("decoding viewer, camera:")
    for name, since, until in (
        (f"{AROUND:g} s before", t0 - AROUND, t0),
        ("the window", t0, t_end),
        (f"{AROUND:g} s after", t_end, t_end + AROUND),
    ):
        gap, at = longest_gap(camera, since, until)
        fps = count_in(camera, since, until) / (until - since)
        print(
            f"  {name:>12}: longest gap {fmt(1000 * gap, 0)} ms (ended at t = {fmt(at - t0, 2)}"
            f" s), {fps:.1f} fps decoded"
        )
    latencies = [ms for at, ms in reads if t0 < at <= t_end and -1000 < ms < 10_000]
    before = [ms for at, ms in reads if t0 - AROUND < at <= t0 and -1000 < ms < 10_000]
    print(
        f"  glass-to-glass in the window: p50 {fmt(quantile(latencies, 0.5))} ms, p95"
        f" {fmt(quantile(latencies, 0.95))} ms, max {fmt(max(latencies, default=None))} ms"
        f" ({len(latencies)} clock reads; before: p50 {fmt(quantile(before, 0.5))} ms)"
    )
    print("/healthz every 100 ms:")
    print(f"  {AROUND:g} s before: {health_line(samples, t0 - AROUND, t0)}")
    print(f"  the window: {health_line(samples, t0, t_end)}")
    print(f"  {AROUND:g} s after: {health_line(samples, t_end, t_end + AROUND)}")
    cheap_fps = []
    seconds = snaps[1]["t"] - snaps[0]["t"]
    for old, new in zip(snaps[0]["viewers"][1:], snaps[1]["viewers"][1:], strict=True):
        got = new["tracks"].get("camera", {}).get("frames", 0)
        cheap_fps.append((got - old["tracks"].get("camera", {}).get("frames", 0)) / seconds)
    if cheap_fps:
        print(
            f"cheap viewers' camera frames (RTP markers) in the window: mean"
            f" {sum(cheap_fps) / len(cheap_fps):.1f} fps, min {min(cheap_fps):.1f} fps"
        )
    statuses = collections.Counter(j.status for j in joiners)
    errors = [j.error for j in joiners if j.error]
    answered = [j for j in joiners if j.status == 201]
    media = [j for j in answered if j.media]
    packets = [j.first_packet for j in answered if j.first_packet is not None]
    whole = [j.frame for j in answered if j.frame is not None]
    posts = [j.posted for j in joiners if j.posted is not None]
    if not posts:
        return  # no storm
    print(
        f"join storm: {len(joiners)} POSTs over {fmt(max(posts) - min(posts), 2)} s; answers"
        f" {dict(statuses)}; {len(media)}/{len(joiners)} got media (camera, board and sound"
        f" packets), {len(packets)} a camera packet, {len(whole)} a whole camera frame"
        + (f"; errors: {errors[:3]}" if errors else "")
    )
    if posts and packets:
        first = min(posts)
        print(
            f"  first POST → the last joiner's first camera packet (its keyframe begins):"
            f" {max(packets) - first:.2f} s; → its first whole camera frame:"
            f" {fmt(max(whole, default=float('nan')) - first, 2)} s (polled every 20 ms)"
        )
        ready = [j.answered - j.posted for j in answered if j.answered and j.posted]
        waits = [p - j.posted for j, p in ((j, j.first_packet) for j in answered) if p and j.posted]
        print(
            f"  POST → 201: p50 {1000 * quantile(ready, 0.5):.0f} ms, max"
            f" {1000 * max(ready):.0f} ms; POST → first camera packet: p50"
            f" {quantile(waits, 0.5):.2f} s, max {max(waits):.2f} s"
        )


async def run(args: argparse.Namespace, workdir: Path) -> None:
    webrtc: dict[str, int | str] = {"max_per_class_link": HIGH_CAP, "max_per_address": HIGH_CAP}
    if args.workers is not None:
        webrtc["viewer_workers"] = args.workers
    if args.media_here:
        webrtc["media_process"] = "false"
    server = Server("edge", workdir, config=demo_site(workdir / "site", webrtc))
    from edge.access.staff import set_password  # the flood's logins are checked for real

    server.data_dir.mkdir(parents=True, exist_ok=True)
    set_password(server.data_dir, PASSWORD)
    viewers = LoadViewers(
        server.whep, args.viewers, workdir / "viewers.log", stock_options=["--clock-every", "3"]
    )
    prober = Prober(f"{server.base}/healthz")
    joiners: list[Joiner] = []
    watcher: asyncio.Task[None] | None = None
    composing: Composing | None = None
    compose_cpu = 0.0
    if args.compose:
        print(f"making a {args.compose_seconds:g} s lesson to compose …", flush=True)
        folder = workdir / "lesson"
        record = make_lesson(folder, args.compose_seconds)
        (folder / "record.json").write_text(record.model_dump_json(by_alias=True), "utf-8")
        composing = Composing(folder)
    gather_only(["127.0.0.1"])  # the storm's viewers, in this process, as the service
    limits = httpx.Limits(max_connections=args.storm + 10, max_keepalive_connections=args.storm)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        try:
            await server.start()
            assert server.process is not None
            pid = server.process.pid
            token = await server.token()
            await asyncio.sleep(args.settle)
            ready = await viewers.start(token, args.connect_timeout)
            print(
                f"{ready['flowing']}/{args.viewers} viewers receiving after {ready['seconds']} s"
                + (f"; errors: {ready['errors'][:3]}" if ready["errors"] else ""),
                flush=True,
            )
            if ready["flowing"] == 0:
                raise BenchError(f"no viewer receives:\n{tail(server.log)}")
            health = (await client.get(f"{server.base}/healthz?detail=1")).json()
            workers = health.get("process", {}).get("viewer_workers")
            print(f"service: {health.get('viewers')} viewers, {workers} viewer workers", flush=True)
            joiners = [Joiner(CheapViewer(server.whep, token)) for _ in range(args.storm)]
            await asyncio.gather(*(j.viewer.offer() for j in joiners))  # before the storm
            await prober.start()
            if composing is not None:
                composing.start()
            cpu0 = Cpu.take(pid, viewers.pids)
            await asyncio.sleep(args.warmup)
            cpu1 = Cpu.take(pid, viewers.pids)
            snap0 = await viewers.snap()
            watch = Watch(server.base)
            metrics0 = await watch.get(client)
            watch.lag = watch.worker_lag = 0.0  # the window's alone
            watching = asyncio.Event()
            watcher = asyncio.create_task(watch.run(client, watching))
            t0 = time.monotonic()
            compose_cpu = composing.cpu_seconds() if composing is not None else 0.0
            print(
                f"pressure: {args.flood} wrong logins from {len(FLOOD_ADDRESSES)} addresses,"
                f" lessons.db locked {args.lock_seconds:g} s, {args.storm} joiners over"
                f" {args.storm_window:g} s …",
                flush=True,
            )
            (codes, flooded), (took, locked, unlocked), stormed, _ = await asyncio.gather(
                login_flood(server.base, args.flood),
                hold_write_lock(server.data_dir / "lessons.db", args.lock_seconds),
                join_storm(joiners, args.storm_window, args.storm_limit, client),
                asyncio.sleep(args.hold),
            )
            t_end = time.monotonic()
            cpu2 = Cpu.take(pid, viewers.pids)
            if composing is not None:
                assert composing.process is not None
                if composing.process.poll() is not None:
                    raise BenchError(f"the compose loop ended ({composing.process.returncode})")
                compose_cpu = composing.cpu_seconds() - compose_cpu
            watching.set()
            await watcher
            metrics1 = await watch.get(client)
            snap1 = await viewers.snap()
            await asyncio.sleep(AROUND + 0.2)
            frames = await viewers.stock.frames(t0 - AROUND - 1)
            samples = await prober.samples()
            for joiner in joiners:
                joiner.media = joiner.viewer.flowing()
            health = (await client.get(f"{server.base}/healthz")).json()
        finally:
            if watcher is not None:
                watcher.cancel()
            if composing is not None:
                composing.stop()
            await asyncio.gather(
                *(
                    asyncio.wait_for(j.viewer.close(client), 15)
                    for j in joiners
                    if j.viewer._transceivers
                ),
                return_exceptions=True,
            )
            await prober.stop()
            await viewers.stop()
            await server.stop()
    print(
        f"login flood: answers {dict(codes)}, the last at t = {flooded - t0:.2f} s;"
        f" write lock taken in {1000 * took:.0f} ms, held from t = {locked - t0:.2f} s to"
        f" {unlocked - t0:.2f} s; storm over at t = {stormed - t0:.2f} s"
    )
    report(args, t0, t_end, frames, samples, joiners, (snap0, snap1))
    print(
        f"the service's /metrics in the window ({watch.scrapes} scrapes, one a second):"
        f" worst loop lag {1000 * watch.lag:.0f} ms, viewer workers' {1000 * watch.worker_lag:.0f}"
        " ms"
    )
    for line in counts_line(metrics0, metrics1, t_end - t0):
        print(f"  {line}")
    print(f"service CPU: warm-up, {args.viewers} viewers: {cpu1.since(cpu0)}")
    print(f"             the pressure window: {cpu2.since(cpu1)}")
    print(f"the service counted {health.get('viewers')} viewers after the window")
    if composing is not None:
        print(
            f"archive compose (nice 19): {composing.done} lesson.mp4 of"
            f" {args.compose_seconds:g} s finished from the warm-up on, one under way all"
            f" along; in the window it took {compose_cpu / (t_end - t0):.0%} of one core"
        )
    findings = log_findings(server.log)
    print("service log: " + ("no warnings or errors" if not findings else "warnings and errors:"))
    for line in findings:
        print(f"  {line}")


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--viewers", type=int, default=60, help="watching: 1 decoding + N−1 cheap")
    parser.add_argument("--storm", type=int, default=40, help="cheap viewers joining at once")
    parser.add_argument("--storm-window", type=float, default=2.0, help="seconds of their POSTs")
    parser.add_argument(
        "--storm-limit", type=float, default=20.0, help="give up on their media after this long"
    )
    parser.add_argument("--lock-seconds", type=float, default=5.0, help="lessons.db locked")
    parser.add_argument("--flood", type=int, default=60, help="wrong staff logins")
    parser.add_argument(
        "--hold", type=float, default=0.0, help="the window lasts at least this long (s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="[webrtc] viewer_workers (default: the service's own; 0: viewers in its process)",
    )
    parser.add_argument(
        "--media-here",
        action="store_true",
        help="[webrtc] media_process = false: capture in the service's process, to compare",
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="watching before the pressure")
    parser.add_argument(
        "--compose", action="store_true", help="an archive compose running all along"
    )
    parser.add_argument(
        "--compose-seconds", type=float, default=60.0, help="the composed lesson's length"
    )
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    args = parse_args(parser, keep_logs="keep the service and viewer logs")
    if args.viewers < 1 or args.storm < 0 or args.flood < 0 or args.warmup < AROUND:
        parser.error(f"--viewers ≥ 1, --storm and --flood ≥ 0, --warmup ≥ {AROUND:g}, please")
    header = (
        f"Pressure on the demo service ({CORES} cores): {args.viewers} viewers watching, then"
        f" {args.flood} wrong logins + lessons.db locked {args.lock_seconds:g} s + {args.storm}"
        f" joiners over {args.storm_window:g} s at once; viewer_workers"
        f" {'(the default)' if args.workers is None else args.workers}"
    )
    return run_bench(header, "pressure-bench-", args, lambda w: asyncio.run(run(args, w)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compose-loop"]:
        compose_loop(Path(sys.argv[2]))
        sys.exit(0)
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2], float(sys.argv[3]))
        sys.exit(0)
    code = main()
    sys.stdout.flush()
    os._exit(code)  # aiortc's idle decoder threads are not daemons
