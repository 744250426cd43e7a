"""First picture: from opening the pupil's join page in Chromium to the camera's first frame.

The demo service runs in one network namespace, Debian Chromium (Playwright, headless, a
fresh profile each run) in another, joined by a veth pair (Chromium offers no loopback
candidate; tests/netns.py). Each run opens the pupil's own join link and reads, from the
page, `performance.now()` marks (0 = the navigation's start) of each step of joining:

    html         the join page's response has arrived (navigation timing, responseEnd)
    scripts      main.js ran (it sets `window.classroom`)
    pc           the RTCPeerConnection exists
    offer        createOffer resolved
    gathered     ICE gathering complete (or never, when the page posts before)
    post         the WHEP POST left
    answer       its 201 answer arrived (the service's own time is its Server-Timing)
    ice          ICE connected
    dtls         DTLS connected (connectionState "connected")
    packet       the camera's first RTP packet (getStats, polled every 10 ms from DTLS on,
                 so late by a poll or more on a busy machine)
    decoded      the camera's first decoded frame (getStats framesDecoded, as late)
    frame        the camera <video>'s first frame shown (requestVideoFrameCallback)
    board, sound the board's first frame shown, the sound <audio> playing

and the service's Server-Timing on the WHEP answer (its answer built in how many ms, of
which how many gathering its candidates). The runs take the demo's pupils in turn (a
page just closed may hold its pupil's seat a while), one run starting `--pause` (2) s
after the last one's Chromium closed, so each join has the encoders to itself (no wait
for the 1 s limit on forced IDRs).

    python bench/first_picture.py                 # five runs, about a minute
    python bench/first_picture.py --runs 9 --keep-logs

Needs root and `ip netns` (and /usr/bin/chromium). Target (issue 20): the first
picture ≤ 1.0 s after the page starts loading. Numbers are printed; nothing passes or
fails.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.latency import fmt, quantile
from bench.service import new_parser, parse_args, run_bench
from tests.conftest import run_service
from tests.netns import available, two_hosts

if TYPE_CHECKING:
    from playwright.sync_api import Response

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1000.0  # ms, navigation start → the camera's first frame shown

STEPS = [
    ("html", "join page received"),
    ("scripts", "scripts ran (main.js)"),
    ("pc", "RTCPeerConnection created"),
    ("offer", "offer created"),
    ("gathered", "ICE gathering complete"),
    ("post", "WHEP POST sent"),
    ("answer", "WHEP answer received"),
    ("ice", "ICE connected"),
    ("dtls", "DTLS connected"),
    ("packet", "camera: first RTP packet"),
    ("decoded", "camera: first frame decoded"),
    ("frame", "camera: first frame shown"),
]
# the critical path, step by step (ICE gathering ran beside it, or held the POST back); the
# getStats marks (packet, decoded) are polled and can come after the frame itself
CHAIN = ["html", "scripts", "pc", "offer", "post", "answer", "ice", "dtls", "frame"]
AFTER = [("board", "board: first frame shown"), ("sound", "sound: playing")]

# Installed before the page's own scripts: marks each step once, in performance.now() ms.
MARKS_JS = r"""
(() => {
  const marks = window.__firstPicture = {};
  let finish, after = 0;
  // resolves once the camera's first frame is shown and decoded, and the board's and the
  // sound's have come too (or 3 s later): the probe waits on it without polling the page
  window.__firstPictureDone = new Promise((resolve) => { finish = resolve; });
  const mark = (name) => {
    if (name in marks) return;
    marks[name] = Math.round(performance.now() * 10) / 10;
    if (!('frame' in marks && 'decoded' in marks)) return;
    if ('board' in marks && 'sound' in marks) finish();
    else if (!after) after = setTimeout(finish, 3000);
  };
  let stored;
  Object.defineProperty(window, 'classroom', {
    configurable: true,
    get() { return stored; },
    set(v) { stored = v; mark('scripts'); }
  });
  const Native = window.RTCPeerConnection;
  if (Native) {
    const watch = (pc) => {
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') mark('gathered');
      });
      pc.addEventListener('icecandidate', (ev) => {
        if (ev.candidate) { mark('candidate'); marks.candidates = (marks.candidates || 0) + 1; }
      });
      pc.addEventListener('iceconnectionstatechange', () => {
        const state = pc.iceConnectionState;
        if (state === 'connected' || state === 'completed') mark('ice');
      });
      // no RTP before DTLS: the camera's stats polled from then on, every 10 ms
      const poll = async () => {
        if (pc.signalingState === 'closed' || 'decoded' in marks) return;
        const camera = pc.getTransceivers()[0];
        try {
          (await camera.receiver.getStats()).forEach((s) => {
            if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
            if (s.packetsReceived > 0) mark('packet');
            if (s.framesDecoded > 0) mark('decoded');
          });
        } catch (e) { return; }
        setTimeout(poll, 10);
      };
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState !== 'connected' || 'dtls' in marks) return;
        mark('dtls');
        poll();
      });
    };
    class Watched extends Native {
      constructor(...args) { super(...args); mark('pc'); watch(this); }
      async createOffer(...args) {
        const offer = await super.createOffer(...args);
        mark('offer');
        return offer;
      }
    }
    window.RTCPeerConnection = Watched;
  }
  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    const url = String(input && input.url ? input.url : input);
    const method = ((init && init.method) || 'GET').toUpperCase();
    const whep = method === 'POST' && /\/whep\/[^/?]+(\?|$)/.test(url);
    const channel = method === 'POST' && /\/classroom\/[^/?]+(\?|$)/.test(url);
    if (whep) mark('post');
    if (channel) mark('channel_post');
    const p = nativeFetch(input, init);
    if (whep) {
      p.then((res) => {
        mark('answer');
        marks.server_timing = res.headers.get('Server-Timing');
      }, () => {});
    }
    if (channel) p.then(() => mark('channel_answer'), () => {});
    return p;
  };
  const onVideo = () => {
    const v = document.getElementById('camera'), board = document.getElementById('board');
    const sound = document.getElementById('sound');
    if (!v || !board || !sound) return;
    v.addEventListener('loadeddata', () => mark('loadeddata'));
    v.addEventListener('playing', () => mark('playing'));
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => mark('frame'));
    if (board.requestVideoFrameCallback) board.requestVideoFrameCallback(() => mark('board'));
    sound.addEventListener('playing', () => mark('sound'));
  };
  document.addEventListener('DOMContentLoaded', onVideo);
})();
"""

RESULT_JS = r"""
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const marks = Object.assign({}, window.__firstPicture);
  const ms = (t) => Math.round(t * 10) / 10;
  marks.epoch = performance.timeOrigin;     // to set beside the service's log
  if (nav) { marks.html = ms(nav.responseEnd); marks.dom = ms(nav.domContentLoadedEventEnd); }
  const res = performance.getEntriesByType('resource').map((r) => ({
    name: r.name.replace(/^https?:\/\/[^/]+/, '').replace(/\?.*$/, ''),
    start: Math.round(r.startTime), end: Math.round(r.responseEnd)}));
  return {marks: marks, resources: res, state: window.classroom ? window.classroom.state : null};
}
"""


def refused(response: Response, console: list[str]) -> None:
    if response.status >= 400:
        console.append(f"http {response.status}: {response.request.method} {response.url}")


def probe(url: str, result_path: str, seconds: float) -> None:
    """Runs in the viewer's namespace: one fresh Chromium opens the page once."""
    from tests.browser_probe import chromium  # Playwright: only in this process

    console: list[str] = []
    with chromium(viewport={"width": 390, "height": 844}, locale="vi-VN") as context:
        context.add_init_script(MARKS_JS)
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("response", lambda r: refused(r, console))
        page.goto(url, wait_until="commit", timeout=15000)
        page.evaluate(
            "(ms) => Promise.race([window.__firstPictureDone,"
            " new Promise((resolve) => setTimeout(resolve, ms))])",
            seconds * 1000,
        )
        result = page.evaluate(RESULT_JS)
        page.goto("about:blank")  # pagehide: the page DELETEs its session, as on leaving
        page.wait_for_timeout(300)
    result["console"] = console[-20:]
    Path(result_path).write_text(json.dumps(result, indent=1), encoding="utf-8")


def server_timing(header: str | None) -> dict[str, float]:
    """`answer;dur=12.3, gather;dur=4.5` → {"answer": 12.3, "gather": 4.5}."""
    found: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                with contextlib.suppress(ValueError):
                    found[f"server {name}"] = float(value)
    return found


def report(runs: list[dict[str, Any]]) -> None:
    marks = [run["marks"] for run in runs]
    print(f"\n  {'step':<34} {'median ms':>10} {'min':>8} {'max':>8}   (0 = navigation start)")
    for key, label in STEPS + AFTER:
        values = [float(m[key]) for m in marks if key in m]
        if not values:
            print(f"  {label:<34} {'–':>10}   (in no run)")
            continue
        line = f"  {label:<34} {fmt(quantile(values, 0.5)):>10} {fmt(min(values)):>8}"
        line += f" {fmt(max(values)):>8}"
        if len(values) < len(marks):
            line += f"   (in {len(values)} of {len(marks)} runs)"
        print(line)
    print("\n  between steps (median of each run's difference, ms):")
    for a, b in itertools.pairwise(CHAIN):
        gaps = [float(m[b]) - float(m[a]) for m in marks if a in m and b in m]
        if gaps:
            print(f"    {a:>8} → {b:<8} {fmt(quantile(gaps, 0.5)):>8}")
    timings = [server_timing(m.get("server_timing")) for m in marks]
    names = sorted({name for t in timings for name in t})
    for name in names:
        values = [t[name] for t in timings if name in t]
        print(f"  {name + ' (Server-Timing)':<34} {fmt(quantile(values, 0.5)):>10}")
    frames = [float(m["frame"]) for m in marks if "frame" in m]
    median = quantile(frames, 0.5)
    verdict = "–" if not frames else "met" if median <= TARGET else "not met"
    print(
        f"\n  first picture: median {fmt(median)} ms over {len(frames)} of {len(runs)} runs"
        f" (target ≤ {TARGET:g} ms: {verdict})"
    )


def bench(args: argparse.Namespace, workdir: Path) -> None:
    from tests.browser_probe import CHROMIUM

    if not Path(CHROMIUM).exists():
        print("  skipped: /usr/bin/chromium is missing")
        return
    if not available():
        print("  skipped: needs root and `ip netns`")
        return
    runs: list[dict[str, Any]] = []
    with (
        two_hosts() as (server, viewer),
        run_service(workdir, ["--demo"], server.address, server.command()) as service,
    ):
        pupils = [link for link in service.links() if link["kind"] == "student"]
        time.sleep(args.settle)
        for index in range(args.runs):
            # another pupil each run: a page that just closed may still hold its seat
            url = f"{service.base}/join/{pupils[index % len(pupils)]['token']}"
            result_path = workdir / f"run-{index}.json"
            probe_run = subprocess.run(
                viewer.command(
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--probe",
                    url,
                    str(result_path),
                    str(args.seconds),
                ),
                capture_output=True,
                text=True,
                timeout=args.seconds + 90,
                cwd=ROOT,
            )
            if probe_run.returncode != 0 or not result_path.exists():
                print(f"  run {index + 1}: the probe failed: {probe_run.stderr[-1500:]}")
                continue
            result = json.loads(result_path.read_text(encoding="utf-8"))
            runs.append(result)
            marks = result["marks"]
            shown = ", ".join(f"{k} {marks[k]:.0f}" for k, _ in STEPS if k in marks)
            print(f"  run {index + 1}: {shown}", flush=True)
            errors = [line for line in result["console"] if "error" in line or "http" in line]
            if errors:
                print(f"    page console: {errors[:3]}")
            time.sleep(args.pause)
    if runs:
        report(runs)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        probe(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return 0
    parser = new_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5, help="page loads, each a fresh Chromium")
    parser.add_argument("--seconds", type=float, default=15.0, help="a run's limit")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between runs")
    args = parse_args(parser, "keep the service log and each run's marks")
    return run_bench(
        "First picture in Chromium: the demo service and the browser in two namespaces",
        "first-picture-",
        args,
        lambda workdir: bench(args, workdir),
    )


if __name__ == "__main__":
    sys.exit(main())
