"""The room's media process killed (SIGKILL) or hung (SIGSTOP): how soon a new one captures
and how soon a pupil watching has a picture again.

The demo service (its media process and one viewer worker), one aiortc viewer in this
process (the camera decoded). Each run kills (or stops) the media process and measures,
from then: the time until `/metrics` shows one more replacement with the new process
answering, and the time until the same viewer session decodes a camera frame again (the
new process feeds the worker anew; nobody joins again). Prints numbers; passes nothing.

    python bench/media_restart.py [--runs 5] [--hang]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import children_running
from bench.service import Server, demo_site, new_parser, parse_args, run_bench
from bench.worker_restart import metric, watching
from webrtc import gather_only
from webrtc.viewer import WhepViewer

GAP = 0.3  # s without a frame: what was on its way when the process went has come


def picture_again(arrivals: list[float], struck_at: float) -> float | None:
    """The first frame after the gap the strike made (None: not yet)."""
    for before, after in itertools.pairwise(arrivals):
        if after > struck_at and after - before > GAP:
            return after
    return None


async def run(args: argparse.Namespace, workdir: Path) -> None:
    gather_only(["127.0.0.1"])
    config = demo_site(workdir / "site", {"viewer_workers": 1})
    server = Server("edge", workdir, config=config)
    await server.start()
    viewer: WhepViewer | None = None
    try:
        token = await server.token()
        assert server.process is not None
        control = server.process.pid
        async with httpx.AsyncClient(timeout=5) as client:
            await asyncio.sleep(args.settle)
            viewer = await watching(server, token)
            for number in range(1, args.runs + 1):
                [victim] = children_running(control, b"edge.live.mediahost")
                text = (await client.get(f"{server.base}/metrics")).text
                replaced = metric(text, "classroom_edge_media_process_replaced_total")
                struck_at = time.monotonic()
                os.kill(victim, signal.SIGSTOP if args.hang else signal.SIGKILL)
                ready_at = picture_at = None
                while time.monotonic() - struck_at < 20 and picture_at is None:
                    text = (await client.get(f"{server.base}/metrics")).text
                    if ready_at is None and (
                        metric(text, "classroom_edge_media_process_up") == 1
                        and metric(text, "classroom_edge_media_process_replaced_total") > replaced
                    ):
                        ready_at = time.monotonic()
                    picture_at = picture_again(viewer.stats["camera"].arrivals, struck_at)
                    await asyncio.sleep(0.02)
                if args.hang:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGCONT)
                print(
                    f"run {number}: media process {victim} {'stopped' if args.hang else 'killed'};"
                    f" a new one answering after"
                    f" {'-' if ready_at is None else f'{ready_at - struck_at:.2f} s'};"
                    f" the pupil's camera again after"
                    f" {'-' if picture_at is None else f'{picture_at - struck_at:.2f} s'}",
                    flush=True,
                )
                await asyncio.sleep(2)
    finally:
        if viewer is not None:
            await viewer.close()
        await server.stop()


def main() -> None:
    parser = new_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hang", action="store_true", help="SIGSTOP instead of SIGKILL")
    args = parse_args(parser, "keep the service log")
    raise SystemExit(
        run_bench(
            "The media process killed or hung (1 viewer worker, 1 viewer, one run per line)",
            "media-restart-",
            args,
            lambda w: asyncio.run(run(args, w)),
        )
    )


if __name__ == "__main__":
    main()
