"""Hostile datagrams at a pupil's media port: longest camera gap and service CPU per attack.

The demo service on loopback; one aiortc pupil watches (decoding the camera). For each
attack of issue 24 item 3 (tests/hostile.py), `--count` (1000) datagrams over `--seconds`
(1) s to the pupil's server-side ICE port, half from other loopback addresses
(127.0.0.2–127.0.0.4), half spoofed as the pupil's own address and port (raw socket,
needs root); then a second pupil joins while strangers send ClientHellos from the moment
its answer arrives (the race), and a flood of `--flood` (16000) mixed datagrams over 2 s.
Per row: the longest gap between the pupil's decoded camera frames from the attack's
start to 0.5 s after it, the service's CPU (% of one core) meanwhile, whether the
session lived, and the drops /metrics counted. A pupil whose session ended is joined
again for the next row (without webrtc/guard.py the first row ends it).

    sudo python bench/hostile.py            # about 40 s
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import viewers as receivers
from bench.latency import CpuWindow, fmt
from bench.service import loopback_service, new_parser, parse_args, run_bench
from tests.conftest import Service
from tests.hostile import Address, Sender, attacks, candidates, client_hello, flood
from tests.whep_client import Viewer, eventually

STRANGERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def drops(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.findall(r'^classroom_edge_media_drops_total\{cause="(\w+)"\} (\S+)$', text, re.M)
    return {cause: float(value) for cause, value in found}


def moved(before: dict[str, float], after: dict[str, float]) -> str:
    changed = {c: int(v - before.get(c, 0.0)) for c, v in after.items() if v != before.get(c)}
    return ", ".join(f"{c} {n}" for c, n in changed.items()) or "none"


class Pupil:
    """The watching pupil: joined again when an attack ended its session."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.viewer: Viewer | None = None

    async def join(self) -> Viewer:
        viewer = Viewer(
            self.service.whep(), self.service.token(), video_lines=1, audio=False, clock_every=30
        )
        response = await viewer.connect()
        if response.status_code != 201:
            raise RuntimeError(f"join: {response.status_code} {response.text}")
        if not await eventually(lambda: viewer.stats["camera"].frames >= 10, 20):
            raise RuntimeError(f"the pupil got no pictures ({viewer.pc.connectionState})")
        self.viewer = viewer
        return viewer

    async def leave(self) -> None:
        if self.viewer is not None:
            await self.viewer.close()
            self.viewer = None


def alive(service: Service) -> bool:
    viewers = service.health()["viewers"]
    return isinstance(viewers, int) and viewers >= 1


async def attack_row(
    service: Service,
    pupil: Pupil,
    name: str,
    send: list[tuple[Iterator[bytes], int, Address | None]],
    seconds: float,
) -> None:
    viewer = pupil.viewer or await pupil.join()
    camera = viewer.stats["camera"]
    server = candidates(viewer.response.text if viewer.response else "")[0]
    sender = Sender(server, STRANGERS)
    before = drops(service.base)
    cpu = CpuWindow({"service": service.process.pid})
    frames = camera.frames
    started = time.monotonic()
    cpu.start()
    await asyncio.gather(
        *(
            asyncio.to_thread(sender.paced, each, count, seconds, spoof)
            for each, count, spoof in send
        )
    )
    await asyncio.sleep(0.5)
    cpu.stop()
    sender.close()
    gaps = camera.gaps(started, time.monotonic())
    longest = max(gaps) * 1000 if gaps else float("nan")
    lived = await asyncio.to_thread(alive, service) and camera.frames > frames
    print(
        f"{name:<38} {fmt(longest, 0):>7} ms {fmt(cpu.percent['service']):>6} % "
        f"{'yes' if lived else 'ENDED':>6}  {sender.sent:>6}  drops: "
        f"{moved(before, await asyncio.to_thread(drops, service.base))}",
        flush=True,
    )
    if not lived:
        await pupil.leave()


async def race_row(service: Service, pupil: Pupil) -> None:
    """A second pupil joins while strangers send ClientHellos to its port (every 2 ms
    from the answer until it is connected, and 5 spoofed as it before it has the answer)."""
    viewer = pupil.viewer or await pupil.join()
    camera = viewer.stats["camera"]
    late = Viewer(service.whep(), service.token(), video_lines=1, audio=False, decode_clock=False)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    hello = client_hello()
    senders: list[Sender] = []

    def hellos(sender: Sender) -> None:
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            sender.send(hello)
            time.sleep(0.002)

    async def on_answer(response: httpx.Response) -> None:
        await response.aread()
        if response.status_code == 201:
            sender = Sender(candidates(response.text)[0], STRANGERS)
            for _ in range(5):
                sender.send(hello, spoof=candidates(late.pc.localDescription.sdp)[0])
            senders.append(sender)
            threads.append(threading.Thread(target=hellos, args=(sender,)))
            threads[-1].start()

    before = drops(service.base)
    cpu = CpuWindow({"service": service.process.pid})
    started = time.monotonic()
    cpu.start()
    async with httpx.AsyncClient(timeout=20, event_hooks={"response": [on_answer]}) as client:
        await late.connect(client)
    await eventually(lambda: late.pc.connectionState in ("connected", "failed"), 10)
    joined = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join()
    got = await eventually(lambda: late.stats["camera"].frames >= 1, 5)
    cpu.stop()
    gaps = camera.gaps(started, time.monotonic())
    sent = sum(s.sent for s in senders)
    for sender in senders:
        sender.close()
    state = late.pc.connectionState
    await late.close()
    print(
        f"{'ClientHello race (a second pupil joins)':<38} {fmt(max(gaps) * 1000, 0):>7} ms "
        f"{fmt(cpu.percent['service']):>6} % {'yes' if alive(service) else 'ENDED':>6}  "
        f"{sent:>6}  second pupil: {state} in {joined * 1000:.0f} ms, "
        f"{'pictures' if got else 'NO pictures'}; drops: "
        f"{moved(before, await asyncio.to_thread(drops, service.base))}",
        flush=True,
    )


async def run(args: argparse.Namespace, workdir: Path) -> None:
    receivers.uninstall()  # bench.latency's import patches aiortc not to decode: this one does
    with loopback_service(workdir) as service:
        await asyncio.sleep(args.settle)
        pupil = Pupil(service)
        viewer = await pupil.join()
        own = candidates(viewer.pc.localDescription.sdp)[0]
        rng = random.Random(24)
        print(f"{'attack':<38} {'gap':>10} {'CPU':>8} {'lived':>6}  {'sent':>6}", flush=True)
        await attack_row(service, pupil, "(nothing: baseline)", [], args.seconds)
        half = args.count // 2
        for attack in attacks():
            made = [attack.make(rng) for _ in range(20)]
            send: list[tuple[Iterator[bytes], int, Address | None]] = [
                (itertools.cycle(made), half, spoof) for spoof in (None, own)
            ]
            await attack_row(service, pupil, attack.name, send, args.seconds)
            if pupil.viewer is not None:
                own = candidates(pupil.viewer.pc.localDescription.sdp)[0]
        await race_row(service, pupil)
        viewer = pupil.viewer or await pupil.join()
        own = candidates(viewer.pc.localDescription.sdp)[0]
        half = args.flood // 2
        mixed = [(flood(random.Random(1)), half, None), (flood(random.Random(2)), half, own)]
        await attack_row(service, pupil, f"flood: {args.flood:,} mixed in 2 s", mixed, 2.0)
        await pupil.leave()


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--count", type=int, default=1000, help="datagrams per attack")
    parser.add_argument("--seconds", type=float, default=1.0, help="over how long")
    parser.add_argument("--flood", type=int, default=16000, help="datagrams of the flood (2 s)")
    args = parse_args(parser, keep_logs="keep the service log")
    header = (
        f"hostile datagrams at a watching pupil's media port: {args.count} per attack "
        f"over {args.seconds} s (half spoofed as the pupil), then the ClientHello race and "
        f"a flood of {args.flood} in 2 s; gap = the pupil's longest camera gap, CPU = the "
        "service's (% of one core)"
    )
    return run_bench(
        header, "hostile-bench-", args, lambda workdir: asyncio.run(run(args, workdir))
    )


if __name__ == "__main__":
    raise SystemExit(main())
