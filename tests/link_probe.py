"""A WHEP viewer for the weak-link test, run inside a network namespace of its own.

    python tests/link_probe.py WHEP_URL TOKEN SECONDS

Prints one JSON line about every half second: decoded camera and board frames and
size, audio frames and the longest gap between two audio frames since the last line,
and what the service says the session gets (GET on the session resource).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.whep_client import Viewer
from webrtc import gather_only


async def probe(whep: str, token: str, seconds: float) -> None:
    gather_only(None)  # this namespace's own address: the veth
    viewer = Viewer(whep, token, decode_clock=False)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await viewer.connect(client)
        assert response.status_code == 201, response.text
        started = time.monotonic()
        audio = viewer.stats["audio"]
        last_audio_frames, last_audio_at, gap = 0, time.monotonic(), 0.0
        next_line = started
        try:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                if audio.frames != last_audio_frames:
                    last_audio_frames, last_audio_at = audio.frames, now
                elif audio.frames:
                    gap = max(gap, now - last_audio_at)
                if now < next_line:
                    continue
                next_line = now + 0.5
                session = None
                if viewer.location:
                    with contextlib.suppress(httpx.HTTPError):
                        session = (await client.get(viewer.location)).json()
                line = {
                    "t": round(now - started, 2),
                    "camera": vars(viewer.stats["camera"]) | {"latencies_ms": None},
                    "board": vars(viewer.stats["board"]) | {"latencies_ms": None},
                    "audio_frames": audio.frames,
                    "audio_gap_ms": round(gap * 1000),
                    "session": session,
                }
                print(json.dumps(line, default=str), flush=True)
                gap = 0.0
        finally:
            await viewer.close(client)


if __name__ == "__main__":
    asyncio.run(probe(sys.argv[1], sys.argv[2], float(sys.argv[3])))
