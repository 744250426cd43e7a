"""Glass-to-glass latency of the camera, read from the clock the test camera burns in.

Every test-camera frame carries its capture wall-clock time (ms since the epoch) in the
top-left row of 48 squares (DESIGN.md). A viewer that reads it from the frame it has
just decoded, and subtracts it from its own wall clock (same machine, same clock), gets
capture → encode → packetize → network → depacketize → decode, i.e. glass to glass.

(a) aiortc, loopback: `--viewers` (16) WHEP viewers watch the demo lesson. Decoding
    16 × 720p30 in Python on 2 cores next to the server is not possible, so only
    `--decoders` (4) of them decode (camera only; their board and audio are received
    and reassembled but not decoded) and read the clock of every frame the moment
    aiortc hands it to the application; the other viewers (bench/viewers.py, another
    process) receive everything without decoding, so the server still fans out to all
    16. Note: aiortc's video jitter buffer releases a frame only when the first packet
    of the next one arrives, so an aiortc viewer adds one frame interval (33 ms at 30
    fps) that a browser does not.
(b) Debian Chromium: the service and the browser in two network namespaces joined by
    a veth pair (Chromium offers no loopback candidate); the pupil's page
    `/join/{token}` plays, and a script draws each new camera frame
    (`requestVideoFrameCallback`) into a canvas, decodes the 48 squares and compares
    them with `Date.now()`. Needs root and `ip netns`; skipped otherwise.

    python bench/latency.py                      # both, under a minute
    python bench/latency.py --viewers 16 --decoders 4 --seconds 15 --skip-browser

Numbers are printed; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import viewers as receivers
from bench.fanout import CORES, host_busy_idle, process_cpu_seconds
from bench.service import ViewersProcess, loopback_service, new_parser, parse_args, run_bench
from tests.conftest import Service, run_service
from tests.netns import available, two_hosts
from tests.whep_client import Viewer, eventually

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"aiortc_median": 60.0, "aiortc_p95": 120.0, "chromium_median": 150.0}

# ------------------------------------------------------------ numbers


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), linear between order statistics; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:.{digits}f}"  # NaN → dash


def spread(values: Sequence[float], unit: str = "ms", digits: int = 1) -> str:
    """median, p95, min, max and count of `values`."""
    if not values:
        return "no samples"
    median, p95 = fmt(quantile(values, 0.5), digits), fmt(quantile(values, 0.95), digits)
    low, high = fmt(min(values), digits), fmt(max(values), digits)
    return f"median {median} {unit}, p95 {p95} {unit} (min {low}, max {high}, n={len(values)})"


def got_text(sizes: Sequence[tuple[int, int]]) -> str:
    return " and ".join(f"{w}×{h}" for w, h in sizes) or "no picture"


def plausible(latency_ms: float) -> bool:
    """A clock read from a picture that has one (a paused line's slate has none)."""
    return -1000.0 < latency_ms < 10_000.0


def verdict(value: float, target: float) -> str:
    if value != value:
        return "no data"
    return "meets" if value <= target else "MISSES"


@dataclass
class CpuWindow:
    """CPU of some processes and of the whole machine between two marks."""

    pids: dict[str, int]
    started: float = 0.0
    cpu0: dict[str, float] = field(default_factory=dict)
    host0: tuple[float, float] = (0.0, 0.0)
    percent: dict[str, float] = field(default_factory=dict)  # % of one core
    host_busy: float = float("nan")  # % of all cores

    def start(self) -> None:
        self.started = time.monotonic()
        self.cpu0 = {name: _cpu(pid) for name, pid in self.pids.items()}
        self.host0 = host_busy_idle()

    def stop(self) -> None:
        wall = max(time.monotonic() - self.started, 1e-6)
        for name, pid in self.pids.items():
            self.percent[name] = 100.0 * (_cpu(pid) - self.cpu0[name]) / wall
        busy, idle = host_busy_idle()
        busy, idle = busy - self.host0[0], idle - self.host0[1]
        self.host_busy = 100.0 * busy / max(busy + idle, 1.0)

    @property
    def others(self) -> float:
        """CPU of every other process (other jobs skew the numbers), % of one core."""
        return max(0.0, self.host_busy * CORES - sum(self.percent.values()))

    def line(self) -> str:
        parts = [f"{name} {fmt(value)} %" for name, value in self.percent.items()]
        return (
            f"CPU (% of one core): {', '.join(parts)}, other processes {fmt(self.others)} %;"
            f" whole machine {fmt(self.host_busy)} % of {CORES} cores busy"
        )


def _cpu(pid: int) -> float:
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return float("nan")


# ------------------------------------------------------------ non-decoding viewers


def camera_frames(before: dict[str, Any], after: dict[str, Any]) -> list[int]:
    """Camera frames each viewer of a bench/viewers.py process reassembled between snaps."""
    counts = []
    for old, new in zip(before["viewers"], after["viewers"], strict=True):
        start = old["tracks"].get("camera", {}).get("frames", 0)
        counts.append(int(new["tracks"].get("camera", {}).get("frames", 0) - start))
    return counts


# ------------------------------------------------------------ (a) aiortc


async def watch_sizes(viewers: Sequence[Viewer], seconds: float) -> list[set[tuple[int, int]]]:
    """Wait `seconds`, noting the camera picture sizes each viewer decodes meanwhile."""
    sizes: list[set[tuple[int, int]]] = [set() for _ in viewers]
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for seen, viewer in zip(sizes, viewers, strict=True):
            seen.add((viewer.stats["camera"].width, viewer.stats["camera"].height))
        await asyncio.sleep(min(left, 0.25))
    return sizes


async def session_state(client: httpx.AsyncClient, viewer: Viewer) -> dict[str, Any] | None:
    """The server's account of the viewer's session (GET on its resource), if it has one."""
    if viewer.location is None:
        return None
    with contextlib.suppress(httpx.HTTPError, ValueError):
        response = await client.get(viewer.location)
        if response.status_code == 200:
            state: dict[str, Any] = response.json()
            return state
    return None


def decode_camera_only(viewer: Viewer) -> None:
    """Let `viewer`'s camera receiver really decode (bench/viewers.py drains the rest)."""
    receivers.decoding_queues.add(receivers.queue_key(viewer.receiver("camera")))


async def aiortc_latency(args: argparse.Namespace, service: Service, workdir: Path) -> None:
    decoders = min(args.decoders, args.viewers)
    others = args.viewers - decoders
    print(
        f"\n(a) aiortc on loopback: {args.viewers} viewers; {decoders} decode the camera and"
        f" read its clock on every frame, {others} receive without decoding"
        " (bench/viewers.py, another process)",
        flush=True,
    )
    token = service.token()
    await asyncio.sleep(args.settle)  # encoders steady before anyone joins
    background: ViewersProcess | None = None
    watchers: list[Viewer] = []
    async with httpx.AsyncClient(timeout=20) as client:
        try:
            if others:
                log = workdir / "receivers.log"
                background = ViewersProcess(service.whep(), others, log, decoders=0)
                ready = await background.start(token)
                if ready.get("errors"):
                    print(f"  receivers: errors {ready['errors']}", flush=True)
                print(
                    f"  {ready.get('flowing', 0)}/{others} non-decoding viewers receiving"
                    f" after {ready.get('seconds', '?')} s",
                    flush=True,
                )
            for _ in range(decoders):
                viewer = Viewer(service.whep(), token, clock_every=1, cache_clock_square=True)
                await viewer.offer()
                response = await viewer.connect(client)
                if response.status_code != 201:
                    raise RuntimeError(f"decoding viewer: HTTP {response.status_code}")
                decode_camera_only(viewer)
                watchers.append(viewer)
            if not await eventually(lambda: all(v.stats["camera"].frames for v in watchers), 20):
                print("  a decoding viewer got no camera frame within 20 s", flush=True)
            await asyncio.sleep(args.warmup)

            pids = {"server": service.process.pid, "decoders": os.getpid()}
            if background is not None:
                pids["receivers"] = background.pid
            cpu = CpuWindow(pids)
            snap0 = await background.snap() if background else None
            frames0 = [v.stats["camera"].frames for v in watchers]
            marks = [len(v.stats["camera"].latencies_ms) for v in watchers]
            cpu.start()
            sizes = await watch_sizes(watchers, args.seconds)
            cpu.stop()
            frames1 = [v.stats["camera"].frames for v in watchers]
            snap1 = await background.snap() if background else None
            states = [await session_state(client, v) for v in watchers]
        finally:
            for viewer in watchers:
                receivers.decoding_queues.discard(receivers.queue_key(viewer.receiver("camera")))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(viewer.close(client), 10)
            if background is not None:
                await background.stop()

    raw = [v.stats["camera"].latencies_ms[m:] for v, m in zip(watchers, marks, strict=True)]
    samples = [[x for x in values if plausible(x)] for values in raw]
    unreadable = sum(len(r) - len(s) for r, s in zip(raw, samples, strict=True))
    every = [x for s in samples for x in s]
    median, p95 = quantile(every, 0.5), quantile(every, 0.95)
    print(f"  window {args.seconds:g} s after {args.warmup:g} s warm-up; {cpu.line()}")
    decoder_cpu = cpu.percent.get("decoders", float("nan")) / max(decoders, 1)
    got = sorted({size for seen in sizes for size in seen if size != (0, 0)}, reverse=True)
    print(
        f"  one decoding aiortc viewer (decode + clock read, at {got_text(got)}) costs"
        f" ≈ {fmt(decoder_cpu)} % of a core: all {args.viewers} decoding would take"
        f" ≈ {fmt(decoder_cpu * args.viewers / 100, 2)} cores, on a {CORES}-core machine that"
        f" also runs the server and the receivers — hence {decoders} decoders",
        flush=True,
    )
    print(f"  camera glass-to-glass, all decoders: {spread(every)}")
    print(
        "    (includes aiortc's own hold: its jitter buffer releases a frame when the next"
        " one starts arriving, +33 ms at 30 fps, +67 ms at 15 fps)"
    )
    if unreadable:
        print(f"    ({unreadable} decoded frames carried no readable clock; left out)")
    print(
        f"    median {fmt(median)} ms (target ≤ {TARGETS['aiortc_median']:g}:"
        f" {verdict(median, TARGETS['aiortc_median'])}),"
        f" p95 {fmt(p95)} ms (target ≤ {TARGETS['aiortc_p95']:g}:"
        f" {verdict(p95, TARGETS['aiortc_p95'])})"
    )
    for index, values in enumerate(samples):
        seen = got_text(sorted(sizes[index] - {(0, 0)}, reverse=True))
        print(f"    decoder {index} ({seen}): {spread(values)}")
        state = states[index]
        if state:
            print(
                f"      the server's view at the end: video {state.get('video')}, level"
                f" {state.get('level')}/{state.get('levels')}, poor {state.get('poor')},"
                f" estimate {state.get('estimate_kbps')} kb/s, loss {state.get('loss')}"
            )
    decoded = [b - a for a, b in zip(frames0, frames1, strict=True)]
    print(
        f"  camera frames per viewer in the {args.seconds:g} s window (source: 30 fps ="
        f" {30 * args.seconds:.0f}):"
    )
    print(f"    decoding viewers: {decoded}")
    if snap0 is not None and snap1 is not None:
        received = camera_frames(snap0, snap1)
        print(f"    non-decoding viewers (reassembled frames): {received}")
        connections = [v["state"] for v in snap1["viewers"]]
        if any(state != "connected" for state in connections):
            print(f"    connection states: {connections}")
        everyone = decoded + received
        print(
            f"    all {len(everyone)}: min {min(everyone)}, max {max(everyone)}"
            f" → {min(everyone) / args.seconds:.1f}–{max(everyone) / args.seconds:.1f} fps"
        )
    sys.stdout.flush()


# ------------------------------------------------------------ (b) Chromium

# Runs in the page. Draws each new camera frame into a canvas, finds the clock's square
# size (the first white square is bit 40, 7 squares in, until 2039), reads the 48 bits
# and compares them with Date.now(). (The frame callback's `receiveTime` and
# `expectedDisplayTime` are on the performance timeline, which in trials here strayed
# tens of ms from Date.now() either way: not used.)
MEASURE_JS = """
async (ms) => {
  const video = document.getElementById('camera');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const out = {method: 'requestVideoFrameCallback', frames: 0, rejected: 0, display: [],
               width: 0, height: 0, clocks: 0};
  let last = null;
  function read() {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    out.width = w; out.height = h;
    const band = Math.min(h, Math.max(4, Math.ceil(w / 48)));
    if (canvas.width !== w || canvas.height !== band) { canvas.width = w; canvas.height = band; }
    ctx.drawImage(video, 0, 0, w, band, 0, 0, w, band);
    const data = ctx.getImageData(0, 0, w, band).data;
    const grey = (x, y) => {
      const i = (y * w + x) * 4;
      return (data[i] + data[i + 1] + data[i + 2]) / 3;
    };
    let first = -1;
    for (let x = 0; x < w; x++) { if (grey(x, 1) > 128) { first = x; break; } }
    if (first <= 0) return null;
    const square = first / 7;
    if (square * 48 > w + 1) return null;
    const y = Math.min(band - 1, Math.floor(square / 2));
    const r = Math.floor(square / 4);
    let value = 0;
    for (let b = 0; b < 48; b++) {
      const cx = Math.floor((b + 0.5) * square);
      let sum = 0, n = 0;
      for (let dx = -r; dx <= r; dx++) {
        sum += grey(Math.min(w - 1, Math.max(0, cx + dx)), y);
        n++;
      }
      value = value * 2 + (sum / n > 128 ? 1 : 0);
    }
    return value;
  }
  function note(wall) {
    out.frames++;
    const clock = read();
    if (clock === null || Math.abs(wall - clock) > 10000) { out.rejected++; return; }
    if (clock === last) return;  // the same picture again
    last = clock;
    out.clocks++;
    out.display.push(wall - clock);
  }
  const end = performance.now() + ms;
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
    await new Promise((resolve) => {
      const step = () => {
        note(Date.now());
        if (performance.now() < end) video.requestVideoFrameCallback(step); else resolve();
      };
      video.requestVideoFrameCallback(step);
      setTimeout(resolve, ms + 3000);  // in case frames stop coming
    });
  }
  if (out.clocks === 0) {  // no frame callbacks (e.g. not painting): poll every 5 ms
    out.method = 'polling every 5 ms';
    const stop = performance.now() + ms;
    while (performance.now() < stop) {
      note(Date.now());
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  return out;
}
"""

CAMERA_STATS_JS = """
async () => {
  const c = window.classroom;
  if (!c || !c.pc) return null;
  const receiver = c.pc.getTransceivers()[0].receiver;  // first video m-line: the camera
  let out = null;
  (await receiver.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out = {framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
             framesPerSecond: s.framesPerSecond, width: s.frameWidth, height: s.frameHeight,
             jitterBufferDelay: s.jitterBufferDelay,
             jitterBufferEmittedCount: s.jitterBufferEmittedCount,
             totalDecodeTime: s.totalDecodeTime, packetsLost: s.packetsLost,
             nackCount: s.nackCount, pliCount: s.pliCount};
    }
  });
  return out;
}
"""


def chromium_probe(url: str, result_path: str, seconds: float) -> None:
    """Runs in the viewer's namespace: open the page, measure, write JSON."""
    from tests.browser_probe import chromium  # Playwright: only in this process

    result: dict[str, Any] = {"url": url}
    console: list[str] = []
    with chromium(viewport={"width": 1280, "height": 800}, locale="vi-VN") as context:
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        started = time.monotonic()
        page.goto(url, wait_until="domcontentloaded", timeout=15000)
        page.wait_for_function(
            "() => { const v = document.getElementById('camera');"
            " return v && v.videoWidth > 0 && v.currentTime > 0; }",
            timeout=30000,
        )
        result["playing_after"] = round(time.monotonic() - started, 2)
        page.wait_for_timeout(2000)  # let the jitter buffer settle
        before = page.evaluate(CAMERA_STATS_JS)
        result["measure"] = page.evaluate(MEASURE_JS, seconds * 1000)
        after = page.evaluate(CAMERA_STATS_JS)
        result["stats_before"], result["stats_after"] = before, after
    result["console"] = console[-20:]
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")


def _rate(after: dict[str, Any], before: dict[str, Any], num: str, den: str) -> float:
    """(after[num] − before[num]) / (after[den] − before[den]) in ms, over the window."""
    try:
        count = float(after[den]) - float(before[den])
        return 1000.0 * (float(after[num]) - float(before[num])) / count
    except (KeyError, TypeError, ZeroDivisionError):
        return float("nan")


def chromium_latency(args: argparse.Namespace, workdir: Path) -> None:
    from tests.browser_probe import CHROMIUM  # Playwright: only for this part

    print("\n(b) Debian Chromium in a network namespace of its own (veth to the service's)")
    if not Path(CHROMIUM).exists():
        print("  skipped: /usr/bin/chromium is missing")
        return
    if not available():
        print("  skipped: needs root and `ip netns`")
        return
    result_path = workdir / "chromium.json"
    with (
        two_hosts() as (server, viewer),
        run_service(workdir, ["--demo"], server.address, server.command()) as service,
    ):
        pupil = next(link for link in service.links() if link["kind"] == "student")
        url = f"{service.base}/join/{pupil['token']}"
        time.sleep(args.settle)
        probe = subprocess.run(
            viewer.command(
                sys.executable,
                str(Path(__file__).resolve()),
                "--chromium-probe",
                url,
                str(result_path),
                str(args.browser_seconds),
            ),
            capture_output=True,
            text=True,
            timeout=args.browser_seconds + 120,
            cwd=ROOT,
        )
    if probe.returncode != 0 or not result_path.exists():
        print(f"  the probe failed ({probe.returncode}): {probe.stderr[-2000:]}")
        return
    result = json.loads(result_path.read_text(encoding="utf-8"))
    measure = result["measure"]
    display = [float(x) for x in measure["display"]]
    median = quantile(display, 0.5)
    print(
        f"  page playing {result['playing_after']} s after opening; camera"
        f" {measure['width']}×{measure['height']}; {args.browser_seconds:g} s window;"
        f" clock read by {measure['method']}: {measure['clocks']} distinct frames,"
        f" {measure['rejected']} unreadable"
    )
    print(f"  camera glass-to-glass (Date.now() at the frame callback): {spread(display)}")
    print(
        f"    median {fmt(median)} ms (target ≤ {TARGETS['chromium_median']:g}:"
        f" {verdict(median, TARGETS['chromium_median'])})"
    )
    before, after = result.get("stats_before") or {}, result.get("stats_after") or {}
    if before and after:
        jitter = _rate(after, before, "jitterBufferDelay", "jitterBufferEmittedCount")
        decode = _rate(after, before, "totalDecodeTime", "framesDecoded")
        frames = int(after.get("framesDecoded", 0)) - int(before.get("framesDecoded", 0))
        print(
            f"    Chromium's own stats over the window: {frames} frames decoded"
            f" ({frames / args.browser_seconds:.1f} fps), jitter buffer {fmt(jitter)} ms/frame,"
            f" decode {fmt(decode)} ms/frame, dropped {after.get('framesDropped')},"
            f" lost packets {after.get('packetsLost')}, NACKs {after.get('nackCount')},"
            f" PLIs {after.get('pliCount')}"
        )
    errors = [line for line in result.get("console", []) if "error" in line.lower()]
    if errors:
        print(f"    page console errors: {errors[:5]}")
    sys.stdout.flush()


# ------------------------------------------------------------ main


async def run_aiortc(args: argparse.Namespace, workdir: Path) -> None:
    with loopback_service(workdir) as service:
        await aiortc_latency(args, service, workdir)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--chromium-probe":
        chromium_probe(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    parser = new_parser(__doc__)
    parser.add_argument("--viewers", type=int, default=16, help="aiortc viewers in all")
    parser.add_argument(
        "--decoders", type=int, default=4, help="how many of them decode and read the clock"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="aiortc measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="after everyone plays")
    parser.add_argument("--browser-seconds", type=float, default=15.0, help="Chromium window")
    parser.add_argument("--skip-aiortc", action="store_true", help="only the Chromium part")
    parser.add_argument(
        "--skip-browser", action="store_true", help="only the aiortc part (no netns needed)"
    )
    args = parse_args(parser, keep_logs="keep the service logs")
    if args.viewers < 1 or args.decoders < 1 or args.seconds <= 0:
        parser.error("--viewers and --decoders must be at least 1, --seconds positive")
    header = (
        f"Camera glass-to-glass latency from the burned-in capture clock ({CORES} cores);"
        f" targets: aiortc median ≤ {TARGETS['aiortc_median']:g} ms,"
        f" p95 ≤ {TARGETS['aiortc_p95']:g} ms; Chromium median ≤"
        f" {TARGETS['chromium_median']:g} ms"
    )

    def both(workdir: Path) -> None:
        if not args.skip_aiortc:
            (workdir / "aiortc").mkdir()
            asyncio.run(run_aiortc(args, workdir / "aiortc"))
        if not args.skip_browser:
            (workdir / "chromium").mkdir()
            chromium_latency(args, workdir / "chromium")

    return run_bench(header, "latency-bench-", args, both)


if __name__ == "__main__":
    code = main()
    # aiortc decoder threads are not daemons; never let one keep the process alive
    os._exit(code)
