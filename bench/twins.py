"""What the VP8 twins cost: the demo service's CPU with H.264 viewers only, with VP8
viewers (the twins of the camera and board renditions encoding), and after the last
VP8 viewer left (the twins stop once their linger is over).

The server runs in a process of its own (bench/service.py); the viewers are aiortc
WHEP viewers in this process (they decode here, which costs this process, not the
server). Per phase: the server's CPU (user + sys from /proc/PID/stat over wall
time, in % of one core) and, from /metrics, the seconds each rendition's encoder spent
per second of wall time (wall time inside encode calls, so it grows when the machine is
busy; libx264/libvpx threads inside one call count once) and the frames each rendition
encoded per second (whether it keeps its rate). Numbers are printed, nothing passes or fails.

    python bench/twins.py                 # 20 s windows, 1 then 4 VP8 viewers
    python bench/twins.py --seconds 30 --vp8 1,8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import process_cpu_seconds as cpu_seconds  # with its viewer workers
from bench.service import Server, logs_dir
from webrtc import gather_only
from webrtc.twins import LINGER, POLL
from webrtc.viewer import WhepViewer

ENCODE = re.compile(
    r"^classroom_edge_(encode_seconds|encoded_frames)_total"
    r'\{rendition="([^"]+)",room="demo"\} (\S+)$'
)


async def encode_seconds(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    """Seconds spent encoding ("camera/high") and frames encoded ("camera/high fps")."""
    text = (await client.get(f"{base}/metrics")).text
    found = (ENCODE.match(line) for line in text.splitlines())
    return {
        m.group(2) + ("" if m.group(1) == "encode_seconds" else " fps"): float(m.group(3))
        for m in found
        if m
    }


async def window(
    server: Server, client: httpx.AsyncClient, seconds: float
) -> tuple[float, dict[str, float]]:
    """(server CPU in % of a core, each rendition's encode share in %) over `seconds`."""
    assert server.process is not None
    base = server.whep.rsplit("/whep", 1)[0]
    cpu0, enc0, t0 = (
        cpu_seconds(server.process.pid),
        await encode_seconds(client, base),
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    cpu1, enc1, t1 = (
        cpu_seconds(server.process.pid),
        await encode_seconds(client, base),
        time.monotonic(),
    )
    wall = t1 - t0
    shares = {
        name: (1 if name.endswith(" fps") else 100) * (enc1[name] - enc0.get(name, 0.0)) / wall
        for name in enc1
    }
    return 100 * (cpu1 - cpu0) / wall, shares


async def viewers(server: Server, token: str, codec: str, count: int) -> list[WhepViewer]:
    made = []
    for _ in range(count):
        viewer = WhepViewer(server.whep, token, video_codec=codec, clocks=())
        response = await viewer.connect()
        if response.status_code != 201:
            raise RuntimeError(f"{codec} viewer refused: {response.status_code} {response.text}")
        made.append(viewer)
    deadline = time.monotonic() + 20
    while not all(made[0].stats[n].frames > 10 for n in ("camera", "board")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{codec} viewer decodes nothing: {made[0].stats}")
        await asyncio.sleep(0.2)
    return made


def row(label: str, cpu: float, shares: dict[str, float]) -> str:
    seconds = {k: v for k, v in shares.items() if not k.endswith(" fps")}
    video = [k for k in seconds if k.startswith(("camera", "board"))]
    h264 = sum(seconds[k] for k in video if "/vp8/" not in k)
    vp8 = sum(seconds[k] for k in video if "/vp8/" in k)
    each = " ".join(
        f"{k}: {seconds[k]:.1f} % {shares[k + ' fps']:.1f} fps"
        for k in sorted(video)
        if "/vp8/" in k and k + " fps" in shares
    )
    return f"| {label} | {cpu:.1f} | {h264:.1f} | {vp8:.1f} | {each} |"


async def run(args: argparse.Namespace) -> None:
    gather_only(["127.0.0.1"])
    counts = [int(c) for c in args.vp8.split(",")]
    with logs_dir("twins", args.keep_logs) as workdir:
        server = Server("edge", workdir)
        await server.start()
        token = await server.token()
        print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores")
        print("| phase | server CPU % | H.264 in encode % | VP8 in encode % | each VP8 twin |")
        print("| --- | --- | --- | --- | --- |")
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                await asyncio.sleep(args.settle)
                base = await viewers(server, token, "h264", 1)
                await asyncio.sleep(2)
                print(
                    row("1 H.264 viewer", *await window(server, client, args.seconds)), flush=True
                )
                held: list[WhepViewer] = []
                for count in counts:
                    held += await viewers(server, token, "vp8", count - len(held))
                    await asyncio.sleep(2)
                    cpu, shares = await window(server, client, args.seconds)
                    print(row(f"+ {count} VP8 viewers", cpu, shares), flush=True)
                for viewer in held:
                    await viewer.close()
                await asyncio.sleep(LINGER + 2 * POLL)
                cpu, shares = await window(server, client, args.seconds)
                print(row(f"VP8 viewers gone {LINGER:.0f} s", cpu, shares), flush=True)
                for viewer in base:
                    await viewer.close()
            finally:
                await server.stop()
        print(f"load average after: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    parser.add_argument("--vp8", default="1,4", help="VP8 viewer counts, rising")
    parser.add_argument("--settle", type=float, default=3.0, help="server alone first")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server's log")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
