"""Soak: the service's memory while viewers come and go for half an hour (issue 20).

The demo service (bench/service.py's `Server`, a process of its own, its viewers served
by its viewer worker processes). For `--minutes` (30), `--viewers` (30) cheap load
viewers (bench/cheap_viewer.py, in this process) in waves: each joins, watches 20–60 s
(`--watch`; random, seeded per viewer slot with `--seed`), leaves (DELETE), and a new one
joins in its place, so about `--viewers` always watch. Every `--every` (30) s the RSS
(VmRSS from /proc) of the service's process and of each viewer worker (its children
running `webrtc.worker`) and the viewer count (/healthz, and how many of ours are
connected) are sampled and printed as a row.

At the end: the RSS change from minute 2 to the end (± %), per process and in all (a
leak grows on; the first minutes fill caches and pools), and memory per viewer: the RSS
with all `--viewers` watching (sampled just before the first of them leaves, or as soon
as all watch if some left before) minus the RSS with none, before the first join,
divided by `--viewers`, per process. After the run the viewers leave and one more row
shows the RSS with none again.

    python bench/soak.py                    # 30 minutes
    python bench/soak.py --minutes 2        # a short look
    python bench/soak.py --workers 2        # [webrtc] viewer_workers = 2

Numbers are printed; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cheap_viewer import CheapViewer
from bench.fanout import descendants
from bench.service import Server, demo_site, new_parser, parse_args, run_bench
from webrtc import gather_only

SERVICE = "service"


# ------------------------------------------------------------ /proc


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (None: gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker_name(pid: int) -> str | None:
    """`worker N` for a viewer worker (`python -m webrtc.worker ... --name "viewer worker
    N"`), `media` for the media process, None for any other process."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "edge.live.mediahost" in args:
        return "media"
    if "webrtc.worker" not in args:
        return None
    if "--name" in args and args.index("--name") + 1 < len(args):
        return args[args.index("--name") + 1].removeprefix("viewer ")
    return f"worker pid {pid}"


@dataclass
class Sample:
    at: float  # seconds since the first join
    label: str
    service_viewers: int | None  # what /healthz counts
    watching: int  # ours, connected
    joins: int
    rss: dict[str, float]  # MB, per process: "service", "worker 0", …
    pids: dict[str, int]

    @property
    def total(self) -> float:
        return sum(self.rss.values())


async def sample(
    pid: int, base: str, client: httpx.AsyncClient, at: float, label: str, slots: Slots
) -> Sample:
    rss: dict[str, float] = {}
    pids: dict[str, int] = {}
    for member in [pid, *descendants(pid)]:
        name = SERVICE if member == pid else worker_name(member)
        value = rss_mb(member)
        if name is not None and value is not None:
            rss[name], pids[name] = value, member
    try:
        viewers = (await client.get(f"{base}/healthz")).json().get("viewers")
    except (httpx.HTTPError, ValueError):
        viewers = None
    return Sample(at, label, viewers, slots.watching(), slots.joins, rss, pids)


# ------------------------------------------------------------ the viewers in waves


@dataclass
class Slots:
    """`count` viewer places: in each, a viewer joins, watches, leaves, and the next one
    joins, until `deadline`."""

    whep: str
    token: str
    count: int
    watch: tuple[float, float]
    seed: int
    deadline: float = 0.0
    joins: int = 0
    leaves: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # status or error → how often
    viewers: dict[int, CheapViewer] = field(default_factory=dict)  # slot → its viewer
    joining: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    def watching(self) -> int:
        return sum(1 for v in self.viewers.values() if v.flowing())

    async def run_slot(self, slot: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(f"{self.seed}-{slot}")
        while time.monotonic() < self.deadline:
            viewer = CheapViewer(self.whep, self.token)
            try:
                async with self.joining:
                    response = await viewer.connect(client)
                status = str(response.status_code)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                status = type(exc).__name__
            if status != "201":
                self.refused[status] = self.refused.get(status, 0) + 1
                with contextlib.suppress(Exception):
                    await viewer.close(client)
                await asyncio.sleep(2)
                continue
            self.joins += 1
            self.viewers[slot] = viewer
            watch = rng.uniform(*self.watch)
            await asyncio.sleep(max(0.0, min(watch, self.deadline - time.monotonic())))
            await self.leave(slot, client)

    async def leave(self, slot: int, client: httpx.AsyncClient) -> None:
        viewer = self.viewers.pop(slot, None)
        if viewer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(viewer.close(client), 15)
            self.leaves += 1


# ------------------------------------------------------------ report


def row(s: Sample, names: Sequence[str]) -> str:
    cells = [f"{s.rss[n]:.1f}" if n in s.rss else "–" for n in names]
    minutes, seconds = divmod(round(s.at), 60)
    when = f"{minutes:d}:{seconds:02d}" + (f" {s.label}" if s.label else "")
    return (
        f"| {when} | {s.service_viewers} | {s.watching} | {s.joins}"
        f" | {' | '.join(cells)} | {s.total:.1f} |"
    )


def rss_pairs(
    before: Sample, after: Sample, names: Sequence[str]
) -> Iterator[tuple[str, float | None, float | None]]:
    """(name, RSS before, RSS after) of each process, then of all of them together."""
    for name in [*names, "all"]:
        old = before.total if name == "all" else before.rss.get(name)
        new = after.total if name == "all" else after.rss.get(name)
        yield name, old, new


def change(first: Sample, last: Sample, names: Sequence[str]) -> str:
    parts = []
    for name, old, new in rss_pairs(first, last, names):
        if old is None or new is None:
            parts.append(f"{name}: –")
            continue
        replaced = name != "all" and first.pids.get(name) != last.pids.get(name)
        parts.append(
            f"{name} {old:.1f} → {new:.1f} MB ({100 * (new - old) / old:+.1f} %)"
            + (" (a new process: it was replaced)" if replaced else "")
        )
    return "; ".join(parts)


def per_viewer(empty: Sample, full: Sample, names: Sequence[str], count: int) -> str:
    parts = []
    for name, old, new in rss_pairs(empty, full, names):
        if old is None or new is None:
            parts.append(f"{name}: –")
            continue
        parts.append(f"{name} {1000 * (new - old) / count:.0f} kB")
    return "; ".join(parts)


# ------------------------------------------------------------ the run


async def run(args: argparse.Namespace, workdir: Path) -> None:
    webrtc = {} if args.workers is None else {"viewer_workers": args.workers}
    server = Server("edge", workdir, config=demo_site(workdir / "site", webrtc))
    gather_only(["127.0.0.1"])  # the viewers, in this process, as the service
    limits = httpx.Limits(max_connections=args.viewers + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        slots: Slots | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            await server.start()
            assert server.process is not None
            pid = server.process.pid
            token = await server.token()
            await asyncio.sleep(args.settle)
            slots = Slots(server.whep, token, args.viewers, args.watch, args.seed)
            empty = await sample(pid, server.base, client, 0.0, "none yet", slots)
            names = sorted(empty.rss, key=lambda n: (n != SERVICE, n))
            header = (
                f"| time | service's viewers | ours watching | joins | "
                f"{' | '.join(f'{n} RSS MB' for n in names)} | all MB |"
            )
            print(header)
            print("|" + "---|" * (header.count("|") - 1), flush=True)
            print(row(empty, names), flush=True)
            started = time.monotonic()
            slots.deadline = started + 60 * args.minutes
            tasks = [
                asyncio.create_task(slots.run_slot(slot, client)) for slot in range(args.viewers)
            ]
            samples = [empty]
            full: Sample | None = None
            next_at = started + args.every
            while time.monotonic() < slots.deadline:
                # all watching, as late as can be before the first leaves (a session's
                # buffers and histories fill over its first seconds)
                first_leave = started + args.watch[0] - 1.5
                if (
                    full is None
                    and slots.watching() >= args.viewers
                    and (slots.leaves > 0 or time.monotonic() >= first_leave)
                ):
                    at = time.monotonic() - started
                    full = await sample(pid, server.base, client, at, "all watching", slots)
                    print(row(full, names), flush=True)
                if time.monotonic() >= next_at or time.monotonic() >= slots.deadline - 1:
                    at = time.monotonic() - started
                    samples.append(await sample(pid, server.base, client, at, "", slots))
                    print(row(samples[-1], names), flush=True)
                    next_at += args.every
                    if time.monotonic() >= slots.deadline - 1:
                        break
                await asyncio.sleep(min(0.5, max(0.0, next_at - time.monotonic())))
            await asyncio.gather(*tasks)  # each leaves at the deadline
            await asyncio.sleep(5)
            at = time.monotonic() - started
            gone = await sample(pid, server.base, client, at, "all left", slots)
            print(row(gone, names), flush=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if slots is not None:
                await asyncio.gather(*(slots.leave(s, client) for s in list(slots.viewers)))
            await server.stop()
    assert slots is not None
    print(
        f"\n{slots.joins} joins and {slots.leaves} leaves in {args.minutes:g} min"
        + (f"; refused or failed: {slots.refused}" if slots.refused else "")
    )
    watching = samples[1:]
    two = next((s for s in watching if s.at >= 120 - args.every / 2), None)
    last = watching[-1] if watching else None
    if two is None or last is None or two is last:
        print("RSS from minute 2 to the end: the run is too short (minute 2 is its end)")
    else:
        print(f"RSS from minute 2 ({two.at:.0f} s) to the end ({last.at:.0f} s): ")
        print(f"  {change(two, last, names)}")
    if full is not None:
        print(
            f"memory per viewer, (RSS with {args.viewers} watching at {full.at:.0f} s − RSS"
            f" with none) / {args.viewers}:"
        )
        print(f"  {per_viewer(empty, full, names, args.viewers)}")
    else:
        print(f"memory per viewer: never were all {args.viewers} watching at once")
    print("RSS with none again, after all left, against before the first join:")
    print(f"  {change(empty, gone, names)}")


def watch_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        values = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError("seconds, e.g. 20,60") from None
    if not 0 < values[0] <= values[1]:
        raise argparse.ArgumentTypeError("seconds, low ≤ high, e.g. 20,60")
    return values


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long viewers come and go")
    parser.add_argument("--viewers", type=int, default=30, help="watching at any time")
    parser.add_argument(
        "--watch", type=watch_range, default=(20.0, 60.0), help="each viewer watches LOW,HIGH s"
    )
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1, help="for the watching times")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="[webrtc] viewer_workers (default: the service's own; 0: viewers in its process)",
    )
    args = parse_args(parser, keep_logs="keep the service log")
    if args.minutes <= 0 or args.viewers < 1 or args.every <= 0:
        parser.error("--minutes and --every > 0, --viewers ≥ 1, please")
    header = (
        f"Soak: {args.viewers} cheap viewers coming and going ({args.watch[0]:g}–"
        f"{args.watch[1]:g} s each) for {args.minutes:g} min; RSS every {args.every:g} s;"
        f" viewer_workers {'(the default)' if args.workers is None else args.workers}"
    )
    return run_bench(header, "soak-bench-", args, lambda w: asyncio.run(run(args, w)))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # aiortc's idle decoder threads are not daemons
