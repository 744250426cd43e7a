"""A viewer worker killed: how soon a new one serves, and what the other worker's pupil sees.

The demo service with two viewer workers (a process of its own), two aiortc viewers in
this process (one lands on each worker; the camera decoded). Each run kills the worker
that serves the first viewer with SIGKILL and measures, from the kill: the time until
`/metrics` shows two workers ready again with one more replacement, and the other
viewer's longest gap between decoded camera frames over the 3 s after the kill. The
first viewer then joins again for the next run. Prints numbers; passes nothing.

    python bench/worker_restart.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import children_running
from bench.service import Server, demo_site, new_parser, parse_args, run_bench
from webrtc import gather_only
from webrtc.viewer import WhepViewer

WATCH = 3.0  # s after a kill over which the other viewer's gaps count


def workers_of(pid: int) -> list[int]:
    return children_running(pid, b"webrtc.worker")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


async def watching(server: Server, token: str) -> WhepViewer:
    viewer = WhepViewer(server.whep, token, video_lines=1, audio=False, clocks=())
    response = await viewer.connect()
    if response.status_code != 201:
        raise RuntimeError(f"join: {response.status_code} {response.text}")
    deadline = time.monotonic() + 20
    while viewer.stats["camera"].frames < 10:
        if time.monotonic() > deadline:
            raise RuntimeError("no picture")
        await asyncio.sleep(0.05)
    return viewer


async def run(args: argparse.Namespace, workdir: Path) -> None:
    gather_only(["127.0.0.1"])
    config = demo_site(workdir / "site", {"viewer_workers": 2})
    server = Server("edge", workdir, config=config)
    await server.start()
    viewers: list[WhepViewer] = []
    try:
        token = await server.token()
        assert server.process is not None
        async with httpx.AsyncClient(timeout=5) as client:
            await asyncio.sleep(args.settle)
            first = await watching(server, token)
            second = await watching(server, token)
            viewers = [first, second]
            for number in range(1, args.runs + 1):
                pids = sorted(workers_of(server.process.pid))  # one viewer on each
                text = (await client.get(f"{server.base}/metrics")).text
                replaced = metric(text, "classroom_edge_viewer_workers_replaced_total")
                victim = pids[number % len(pids)]
                killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                ready_at = None
                while time.monotonic() - killed_at < 15:
                    text = (await client.get(f"{server.base}/metrics")).text
                    if (
                        metric(text, "classroom_edge_viewer_workers") == 2
                        and metric(text, "classroom_edge_viewer_workers_replaced_total") > replaced
                    ):
                        ready_at = time.monotonic()
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(max(0.0, killed_at + WATCH - time.monotonic()))
                gaps = {
                    i: max(
                        v.stats["camera"].gaps(killed_at, killed_at + WATCH), default=float("nan")
                    )
                    for i, v in enumerate(viewers)
                }
                alive = [i for i, v in enumerate(viewers) if v.pc.connectionState == "connected"]
                kept = [gaps[i] for i in alive if gaps[i] == gaps[i]]
                print(
                    f"run {number}: worker {victim} killed; a new one ready after"
                    f" {'-' if ready_at is None else f'{ready_at - killed_at:.2f} s'};"
                    f" the other worker's viewer: longest camera gap"
                    f" {'-' if not kept else f'{1000 * min(kept):.0f} ms'}",
                    flush=True,
                )
                # whoever lost the session joins again (a page would by itself)
                for i, viewer in enumerate(viewers):
                    if max(viewer.stats["camera"].arrivals, default=0.0) < time.monotonic() - 1:
                        await viewer.close()
                        viewers[i] = await watching(server, token)
    finally:
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        await server.stop()


def main() -> None:
    parser = new_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parse_args(parser, "keep the service log")
    raise SystemExit(
        run_bench(
            "A viewer worker killed with SIGKILL (2 workers, 2 viewers, one run per line)",
            "worker-restart-",
            args,
            lambda w: asyncio.run(run(args, w)),
        )
    )


if __name__ == "__main__":
    main()
