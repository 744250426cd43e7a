"""Join time: a late joiner's first picture, and a storm of 40 pupils joining at once.

(a) Late join: the demo service runs and `--watchers` (2) viewers already watch (another
    process, not decoding). Then `--joins` (20) viewers join one after another, each
    from this process with aiortc on loopback: the time from the start of the WHEP POST
    to its 201 answer, to ICE+DTLS connected, to the first camera keyframe packet and to
    the first decoded camera frame. Each joiner leaves (DELETE) once it has a picture;
    the next one starts 1–1.5 s later (random, seeded), so joins fall at random points
    of the encoder's IDR cycle and are not all held back by the 1 s limit on forced IDRs.
(b) Join storm: `--storm` (40) viewers that do not decode (they count RTP packets and
    camera keyframes = packets carrying an SPS) send their POSTs at start times spread
    evenly over `--storm-window` (2) s, the watchers still on. The time from the first
    POST until every one has a camera keyframe, and each viewer's POST→201,
    POST→connected and POST→keyframe. With `--profile`, py-spy (if installed) samples
    the server during the storm and the busiest functions of its event loop are shown.

    python bench/join.py                 # about a minute
    python bench/join.py --joins 10 --storm 40 --profile

All join with the demo's class link from 127.0.0.1, so watchers + storm stay within
`[webrtc] max_per_class_link` (45): past it the service answers 429, as it would to a
class link shared too widely.

Targets: late join median ≤ 150 ms (POST → first decoded frame); storm ≤ 3 s (first
POST → all keyframes). Numbers are printed; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import viewers as receivers
from bench.latency import CpuWindow, fmt, plausible, quantile, spread, verdict
from bench.service import ViewersProcess, loopback_service, new_parser, parse_args, run_bench
from tests.conftest import Service
from tests.whep_client import Viewer, eventually

TARGETS = {"join_median": 150.0, "storm": 3.0}


@dataclass
class Timeline:
    """One viewer's join, in `time.monotonic()` seconds (None: did not happen)."""

    posted: float | None = None
    answered: float | None = None
    status: int | None = None
    connected: float | None = None
    keyframe: float | None = None  # first camera packet carrying an SPS
    keyframe_done: float | None = None  # the last packet (RTP marker) of that keyframe
    keyframe_bytes: int | None = None  # its RTP payload
    frame: float | None = None  # first decoded camera frame
    frame_age_ms: float | None = None  # how old (capture clock) that first frame was

    def since_post(self, at: float | None) -> float | None:
        """Milliseconds from the POST to `at`."""
        if at is None or self.posted is None:
            return None
        return 1000.0 * (at - self.posted)


def watch_connection(viewer: Viewer, timeline: Timeline) -> None:
    @viewer.pc.on("connectionstatechange")
    def _on_state() -> None:
        if viewer.pc.connectionState == "connected" and timeline.connected is None:
            timeline.connected = time.monotonic()


def camera_keyframe_done(viewer: Viewer) -> bool:
    """Whether the viewer has all of its first camera keyframe (up to the RTP marker)."""
    return id(viewer.receiver("camera")) in receivers.first_keyframe_done_at


def note_keyframe(viewer: Viewer, timeline: Timeline) -> None:
    key = id(viewer.receiver("camera"))
    timeline.keyframe = receivers.first_keyframe_at.get(key)
    timeline.keyframe_done = receivers.first_keyframe_done_at.get(key)
    timeline.keyframe_bytes = receivers.first_keyframe_bytes.get(key)


def keyframe_rate(timelines: list[Timeline]) -> str:
    """Size of the first keyframes and the rate they arrived at (first to last packet)."""
    sizes, rates = [], []
    for t in timelines:
        if t.keyframe is None or t.keyframe_done is None or t.keyframe_bytes is None:
            continue
        sizes.append(t.keyframe_bytes / 1000)
        if t.keyframe_done > t.keyframe:
            rates.append(8 * t.keyframe_bytes / (t.keyframe_done - t.keyframe) / 1e6)
    return f"size {spread(sizes, 'kB')}; arrival rate {spread(rates, 'Mb/s', 2)}"


def column(timelines: list[Timeline], name: str) -> list[float]:
    values = [t.since_post(getattr(t, name)) for t in timelines]
    return [v for v in values if v is not None]


# ------------------------------------------------------------ (a) late join


async def one_join(service: Service, token: str, client: httpx.AsyncClient) -> Timeline:
    viewer = Viewer(service.whep(), token, clock_every=1, cache_clock_square=True)
    timeline = Timeline()
    await viewer.offer()  # the offer is ready before the clock starts: time the join only
    camera_queue: int | None = None
    try:
        watch_connection(viewer, timeline)
        response = await viewer.connect(client)
        timeline.posted, timeline.answered = viewer.posted_at, viewer.answered_at
        timeline.status = response.status_code
        if response.status_code == 201:
            # the camera decodes, board and audio are drained (registered before ICE is done)
            camera_queue = receivers.queue_key(viewer.receiver("camera"))
            receivers.decoding_queues.add(camera_queue)
            camera = viewer.stats["camera"]
            await eventually(lambda: camera.first_frame_at is not None, 10, step=0.005)
            timeline.frame = camera.first_frame_at
            note_keyframe(viewer, timeline)
            await eventually(lambda: bool(camera.latencies_ms), 1, step=0.005)
            if camera.latencies_ms and plausible(camera.latencies_ms[0]):
                timeline.frame_age_ms = camera.latencies_ms[0]
    finally:
        if camera_queue is not None:
            receivers.decoding_queues.discard(camera_queue)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(viewer.close(client), 10)
    return timeline


def watcher_totals(snap: dict[str, Any] | None) -> tuple[list[int], list[int]]:
    """Camera keyframes each watcher has received, and PLIs it has sent (cumulative)."""
    if snap is None:
        return [], []
    cameras = [v["tracks"].get("camera", {}) for v in snap["viewers"]]
    return [c.get("keyframes", 0) for c in cameras], [c.get("plis", 0) for c in cameras]


async def late_joins(
    args: argparse.Namespace, service: Service, token: str, background: ViewersProcess | None
) -> None:
    print(
        f"\n(a) late join: {args.joins} joins one after another, {args.watchers} viewers"
        " already watching",
        flush=True,
    )
    rng = random.Random(args.seed)
    timelines: list[Timeline] = []
    snap0 = await background.snap() if background else None
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=20) as client:
        for _ in range(args.joins):
            timelines.append(await one_join(service, token, client))
            await asyncio.sleep(1.0 + 0.5 * rng.random())
    seconds = time.monotonic() - started
    snap1 = await background.snap() if background else None
    failed = [t.status for t in timelines if t.status != 201]
    if failed:
        print(f"  {len(failed)} joins not answered 201: {failed}")
    no_frame = sum(1 for t in timelines if t.status == 201 and t.frame is None)
    if no_frame:
        print(f"  {no_frame} joins got no camera frame within 10 s")
    first_frame = column(timelines, "frame")
    median = quantile(first_frame, 0.5)
    print(f"  POST → first decoded camera frame: {spread(first_frame)}")
    print(
        f"    median {fmt(median)} ms (target ≤ {TARGETS['join_median']:g} ms:"
        f" {verdict(median, TARGETS['join_median'])}), p95 {fmt(quantile(first_frame, 0.95))} ms"
    )
    print(f"  POST → 201 answer:                 {spread(column(timelines, 'answered'))}")
    print(f"  POST → ICE+DTLS connected:         {spread(column(timelines, 'connected'))}")
    print(f"  POST → first camera keyframe packet: {spread(column(timelines, 'keyframe'))}")
    print(f"  POST → that keyframe's last packet:  {spread(column(timelines, 'keyframe_done'))}")
    print(f"  the first keyframe: {keyframe_rate(timelines)}")
    ages = [t.frame_age_ms for t in timelines if t.frame_age_ms is not None]
    print(f"  age of the first decoded frame (now − its capture clock): {spread(ages)}")
    print(
        "  each join (ms after POST: 201 / connected / keyframe first / last packet /"
        " decoded):\n    "
        + "; ".join(
            "/".join(fmt(t.since_post(x) or float("nan"), 0) for x in step)
            for t in timelines
            for step in [(t.answered, t.connected, t.keyframe, t.keyframe_done, t.frame)]
        ),
        flush=True,
    )
    (keys0, plis0), (keys1, plis1) = watcher_totals(snap0), watcher_totals(snap1)
    if keys0 and keys1:
        keys = [b - a for a, b in zip(keys0, keys1, strict=True)]
        plis = [b - a for a, b in zip(plis0, plis1, strict=True)]
        print(
            f"  meanwhile ({seconds:.0f} s) each watcher received {keys} camera keyframes"
            f" (packets with an SPS) and sent {plis} PLIs",
            flush=True,
        )


# ------------------------------------------------------------ (b) join storm


async def storm_one(
    viewer: Viewer, timeline: Timeline, at: float, client: httpx.AsyncClient
) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    try:
        response = await viewer.connect(client)
    except httpx.HTTPError as exc:
        print(f"  a storm POST failed: {type(exc).__name__}: {exc}", flush=True)
        timeline.posted = viewer.posted_at
        return
    timeline.posted, timeline.answered = viewer.posted_at, viewer.answered_at
    timeline.status = response.status_code


def profiler(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` for `seconds` into `out` (collapsed stacks), if installed."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("  --profile: py-spy is not installed; no profile", flush=True)
        return None
    options = ["--rate", "200", "--format", "raw", "--nonblocking", "--threads"]
    duration = str(max(1, round(seconds)))
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", duration, "--output", str(out), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


FRAMEWORK = ("starlette", "fastapi", "uvicorn", "asyncio", "h11", "anyio")


def framework(frame: str) -> bool:
    """A frame of the HTTP or asyncio plumbing (left out of the profile's listing)."""
    return any(f"({package}/" in frame for package in FRAMEWORK)


def frame_name(frame: str) -> str:
    """py-spy's `function (path/to/file.py:123)` → `function (file.py)`."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1].rstrip(')')})"


def show_profile(path: Path, seconds: float, top: int = 15) -> None:
    """What the event-loop thread ran (below asyncio's `Handle._run`) during the storm."""
    if not path.exists():
        print("  profile: py-spy wrote nothing (needs ptrace rights: root or CAP_SYS_PTRACE)")
        return
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or not any("_run_once" in f for f in frames):
            continue  # not the event loop (capture and encoder threads)
        runs = [i for i, f in enumerate(frames) if f.startswith("Handle._run ")]
        if not runs:
            continue  # waiting in select()
        count = int(count_text)
        busy += count
        names = [frame_name(f) for f in frames[runs[0] + 1 :] if not framework(f)]
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    if not busy:
        print("  profile: no busy samples of the event loop")
        return
    print(
        f"  py-spy, the server's event-loop thread: busy in {busy} samples at 200 Hz"
        f" ≈ {busy / 200:.2f} s of the {seconds:.0f} s profiled"
    )
    print("    inclusive (% of the busy samples; HTTP and asyncio plumbing left out):")
    for name, count in inclusive.most_common(top):
        print(f"      {100 * count / busy:5.1f} %  {name}")
    print("    own time:")
    for name, count in own.most_common(10):
        print(f"      {100 * count / busy:5.1f} %  {name}")


async def join_storm(
    args: argparse.Namespace, service: Service, token: str, background: ViewersProcess | None
) -> None:
    print(
        f"\n(b) join storm: {args.storm} non-decoding viewers POST at start times spread"
        f" evenly over {args.storm_window:g} s ({args.watchers} already watching)",
        flush=True,
    )
    viewers = [Viewer(service.whep(), token, decode_clock=False) for _ in range(args.storm)]
    timelines = [Timeline() for _ in viewers]
    await asyncio.gather(*(v.offer() for v in viewers))  # offers ready before the storm
    for viewer, timeline in zip(viewers, timelines, strict=True):
        watch_connection(viewer, timeline)
    pids = {"server": service.process.pid, "storm viewers": os.getpid()}
    if background is not None:
        pids["watchers"] = background.pid
    cpu = CpuWindow(pids)
    limits = httpx.Limits(max_connections=args.storm + 10, max_keepalive_connections=args.storm)
    profile_path = Path(tempfile.mkdtemp(prefix="join-profile-")) / "server.txt"
    spy = None
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        try:
            if args.profile:
                spy = profiler(service.process.pid, args.storm_window + 3, profile_path)
                await asyncio.sleep(0.3)  # py-spy attaches
            cpu.start()
            start = time.monotonic() + 0.05
            step = args.storm_window / args.storm
            await asyncio.gather(
                *(
                    storm_one(v, t, start + i * step, client)
                    for i, (v, t) in enumerate(zip(viewers, timelines, strict=True))
                )
            )
            answered = [v for v, t in zip(viewers, timelines, strict=True) if t.status == 201]
            await eventually(
                lambda: all(camera_keyframe_done(v) for v in answered),
                args.storm_limit - (time.monotonic() - start),
            )
            cpu.stop()
            for viewer, timeline in zip(viewers, timelines, strict=True):
                note_keyframe(viewer, timeline)
            packets = [receivers.counts_of(v.receiver("camera")).packets for v in answered]
            health = service.health()
        finally:
            await asyncio.gather(
                *(asyncio.wait_for(v.close(client), 15) for v in viewers if hasattr(v, "pc")),
                return_exceptions=True,
            )
            if spy is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(15)
                if spy.returncode is None:
                    spy.kill()
    posted = [t.posted for t in timelines if t.posted is not None]
    first_post, last_post = min(posted), max(posted)
    ok = [t for t in timelines if t.status == 201]
    statuses = collections.Counter(t.status for t in timelines)
    started = [t.keyframe for t in ok if t.keyframe is not None]
    done = [t.keyframe_done for t in ok if t.keyframe_done is not None]
    print(
        f"  POSTs sent over {last_post - first_post:.2f} s; answers: {dict(statuses)};"
        f" {len(done)}/{len(viewers)} got a whole camera keyframe ({len(started)} its first"
        f" packet); the service counted {health.get('viewers')} viewers"
    )
    if len(done) == len(viewers):
        all_in = max(done) - first_post
        print(
            f"  first POST → every viewer has a whole camera keyframe: {all_in:.2f} s"
            f" (target ≤ {TARGETS['storm']:g} s: {verdict(all_in, TARGETS['storm'])});"
            f" → the first packet of one: {max(started) - first_post:.2f} s"
        )
    else:
        print(f"  not every viewer got a keyframe within {args.storm_limit:g} s of the first POST")
    print(f"  POST → 201:                    {spread(column(timelines, 'answered'))}")
    print(f"  POST → connected:              {spread(column(timelines, 'connected'))}")
    print(f"  POST → keyframe's first packet: {spread(column(timelines, 'keyframe'))}")
    print(f"  POST → keyframe's last packet:  {spread(column(timelines, 'keyframe_done'))}")
    print(f"  the first keyframes: {keyframe_rate(timelines)}")
    if packets:
        print(f"  camera RTP packets per viewer by then: min {min(packets)}, max {max(packets)}")
    print(f"  during the storm: {cpu.line()}")
    order = sorted(timelines, key=lambda t: t.posted or 0.0)
    print(
        "  a sample of viewers by POST time (s after the first POST: POST / 201 / connected /"
        " keyframe first / last packet):"
    )
    for t in order[:: max(1, len(order) // 10)]:
        marks = [t.posted, t.answered, t.connected, t.keyframe, t.keyframe_done]
        text = " / ".join(fmt(m - first_post, 2) if m is not None else "–" for m in marks)
        print(f"    {text}")
    in_flight = max_answers_in_flight(timelines)
    print(f"  most POSTs awaiting their answer at once: {in_flight}")
    sys.stdout.flush()
    if args.profile:
        show_profile(profile_path, args.storm_window + 3)
    shutil.rmtree(profile_path.parent, ignore_errors=True)


def max_answers_in_flight(timelines: list[Timeline]) -> int:
    events = []
    for t in timelines:
        if t.posted is not None and t.answered is not None:
            events += [(t.posted, 1), (t.answered, -1)]
    level = peak = 0
    for _, delta in sorted(events):
        level += delta
        peak = max(peak, level)
    return peak


# ------------------------------------------------------------ main


async def run(args: argparse.Namespace, workdir: Path) -> None:
    with loopback_service(workdir) as service:
        token = service.token()
        await asyncio.sleep(args.settle)
        background = None
        try:
            if args.watchers:
                log = workdir / "watchers.log"
                background = ViewersProcess(service.whep(), args.watchers, log, decoders=0)
                ready = await background.start(token)
                print(
                    f"{ready.get('flowing', 0)}/{args.watchers} watchers receiving"
                    f" {ready.get('errors') or ''}",
                    flush=True,
                )
            if args.joins:
                await asyncio.sleep(1.5)  # the watchers' own IDR is not the joiner's
                await late_joins(args, service, token, background)
            if args.storm:
                await asyncio.sleep(2)  # the last joiner's session is gone
                await join_storm(args, service, token, background)
        finally:
            if background is not None:
                await background.stop()


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--joins", type=int, default=20, help="sequential late joins (0: none)")
    parser.add_argument("--watchers", type=int, default=2, help="viewers watching throughout")
    parser.add_argument("--storm", type=int, default=40, help="viewers in the storm (0: none)")
    parser.add_argument("--storm-window", type=float, default=2.0, help="seconds of POSTs")
    parser.add_argument(
        "--storm-limit", type=float, default=20.0, help="give up on keyframes after this long"
    )
    parser.add_argument("--seed", type=int, default=1, help="for the gaps between late joins")
    parser.add_argument("--profile", action="store_true", help="py-spy the server in the storm")
    args = parse_args(parser, keep_logs="keep the service log")
    if args.joins < 0 or args.storm < 0 or args.watchers < 0 or args.storm_window <= 0:
        parser.error("counts must not be negative, --storm-window positive")
    header = (
        f"Join times on loopback ({os.cpu_count()} cores); targets: late join median ≤"
        f" {TARGETS['join_median']:g} ms, storm ≤ {TARGETS['storm']:g} s"
    )
    return run_bench(header, "join-bench-", args, lambda workdir: asyncio.run(run(args, workdir)))


if __name__ == "__main__":
    code = main()
    # aiortc decoder threads are not daemons; never let one keep the process alive
    os._exit(code)
