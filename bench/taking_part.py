"""Threads and CPU of the service with N pupils' pages on the built-in path.

Each page is an aiortc client that opens its classroom channel and a receive-only WHEP
session, as the pupil's page does since issue 19; `--old-page` offers what the page
offered before (audio sendrecv, the "classroom" data channel; run it from an older
checkout to compare). After a warm-up, the service process's CPU over 10 s (user + sys,
% of one core) and its threads (`/healthz?detail=1`) are printed; nothing passes or fails.

    python bench/taking_part.py 1 40
    python bench/taking_part.py 1 40 --old-page     # in a checkout before issue 19
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import process_cpu_seconds as cpu_seconds  # with its viewer workers
from tests.conftest import SMALL_ROOM, run_service, write_site


async def page(base: str, token: str, client: httpx.AsyncClient, old: bool) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="sendrecv" if old else "recvonly")
    url = f"{base}/whep/r1"
    auth = {"Authorization": f"Bearer {token}"}
    if old:
        pc.createDataChannel("classroom")
    else:
        opened = await client.post(f"{base}/classroom/r1", json={}, headers=auth)
        url += f"?channel={opened.json()['channel']}"
    await pc.setLocalDescription(await pc.createOffer())
    answer = await client.post(
        url, content=pc.localDescription.sdp, headers={**auth, "Content-Type": "application/sdp"}
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    return pc


async def measure(count: int, old: bool) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="taking-part-"))
    config = write_site(tmp, {"r1": SMALL_ROOM})
    with run_service(tmp, ["--config", str(config)]) as service:
        async with httpx.AsyncClient(timeout=20) as client:
            pcs = [await page(service.base, service.token("r1"), client, old) for _ in range(count)]
            await asyncio.sleep(8)
            pid = service.process.pid
            before, started = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(10)
            share = (cpu_seconds(pid) - before) / (time.monotonic() - started) * 100
            counts = service.health(detail=True)["process"]
            for pc in pcs:
                await pc.close()
    assert isinstance(counts, dict)
    return f"| {count} | {counts['threads']} | {counts['sessions']} | {share:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="+", type=int, help="pages per row")
    parser.add_argument("--old-page", action="store_true", help="the page's offer before issue 19")
    args = parser.parse_args()
    print("| pages | service threads | sessions | service CPU (% of a core) |")
    print("| --- | --- | --- | --- |")
    for count in args.counts:
        print(asyncio.run(measure(count, args.old_page)), flush=True)


if __name__ == "__main__":
    main()
