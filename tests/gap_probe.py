"""A pupil watching from a process of its own: `python -m tests.gap_probe WHEP TOKEN SECONDS`.

Prints `ready` once the camera plays, then, after SECONDS, one JSON line: the
`time.monotonic()` of every camera frame decoded (the clock is the machine's, so the
test that started it can compare with its own)."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.whep_client import Viewer, eventually
from webrtc.ice import gather_only


async def watch(whep: str, token: str, seconds: float) -> None:
    gather_only(["127.0.0.1"])
    viewer = Viewer(whep, token, video_lines=1, audio=False, decode_clock=False)
    response = await viewer.connect()
    if response.status_code != 201:
        print(json.dumps({"status": response.status_code}), flush=True)
        return
    camera = viewer.stats["camera"]
    try:
        if not await eventually(lambda: camera.frames >= 10, 20):
            print(json.dumps({"frames": camera.frames}), flush=True)
            return
        print("ready", flush=True)
        await asyncio.sleep(seconds)
        print(json.dumps({"arrivals": camera.arrivals}), flush=True)
    finally:
        await viewer.close()


if __name__ == "__main__":
    asyncio.run(watch(sys.argv[1], sys.argv[2], float(sys.argv[3])))
