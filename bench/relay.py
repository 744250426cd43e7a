"""Per-viewer CPU of the built-in fan-out against Janus's, same stream, one run.

Janus (Debian's) in a namespace of its own, the demo service with `[relay]` in another,
viewers in a third (tests/janus_env.py). For each N: N WHEP viewers on the service, then
N relay viewers on Janus (tests/janus_env.py); the service's and Janus's CPU over a window
each time. The viewers are cheap load viewers (bench/cheap_viewer.py: aiortc's ICE and
DTLS, then RTP headers counted and receiver reports sent, nothing decrypted): on the
service one stock aiortc viewer that decodes (bench/viewers.py) and N−1 cheap ones, on
Janus N cheap ones (`tests/janus_env.py --cheap`). `--viewers stock`: the old way, stock
aiortc viewers that receive without decoding, on both.

The viewers' namespace counts the bytes it receives in each window, so the cost is also
given per extra Mb/s delivered (the built-in path and Janus need not send the same
bitrate: their rate choices differ).

    python bench/relay.py [--counts 1,4,16] [--window 10] [--viewers cheap|stock]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import process_cpu_seconds as cpu_seconds  # with its viewer workers
from tests.conftest import ROOT, run_service
from tests.janus_env import VIDEO_MIDS, RelayHosts, relay_config, relay_hosts, run_janus
from tests.test_relay import Viewers

WHEP_VIEWERS = (
    "import runpy, sys, webrtc; webrtc.gather_only = lambda addresses: None; "
    "script = sys.argv[1]; sys.argv = [script, *sys.argv[2:]]; "
    "runpy.run_path(script, run_name='__main__')"
)


class WhepViewers(Viewers):
    """bench/viewers.py (`decoders` of them decode) or, with `cheap`, bench/cheap_viewer.py
    in the viewers' namespace (offering every address, not loopback)."""

    def __init__(
        self,
        hosts: RelayHosts,
        base: str,
        token: str,
        count: int,
        log: Path,
        *,
        decoders: int = 0,
        cheap: bool = False,
    ) -> None:
        script = "bench/cheap_viewer.py" if cheap else "bench/viewers.py"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            hosts.viewer.command(
                sys.executable,
                "-c",
                WHEP_VIEWERS,
                script,
                "--whep",
                f"{base}/whep/demo",
                "--token",
                token,
                "--count",
                str(count),
                *([] if cheap else ["--decoders", str(decoders)]),
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )


def whep_viewers(
    hosts: RelayHosts, base: str, token: str, count: int, folder: Path, cheap: bool
) -> list[WhepViewers]:
    """`count` WHEP viewers, ready: with `cheap`, one stock decoding viewer and `count`−1
    cheap ones (two processes); else `count` stock viewers that do not decode."""
    if not cheap:
        return [WhepViewers(hosts, base, token, count, folder / f"whep-{count}.log")]
    started = [WhepViewers(hosts, base, token, 1, folder / f"whep-{count}.log", decoders=1)]
    if count > 1:
        log = folder / f"whep-{count}-cheap.log"
        started.append(WhepViewers(hosts, base, token, count - 1, log, cheap=True))
    return started


def received_bytes(hosts: RelayHosts) -> int:
    """Bytes the viewers' namespace has received on its links (whoever sent them)."""
    table = subprocess.run(
        hosts.viewer.command("cat", "/proc/net/dev"), capture_output=True, text=True, check=True
    ).stdout
    total = 0
    for line in table.splitlines()[2:]:
        device, _, counters = line.partition(":")
        if device.strip() != "lo":
            total += int(counters.split()[0])
    return total


def shares(pids: dict[str, int], window: float, hosts: RelayHosts) -> dict[str, float]:
    """Each process's share of a core over `window`, and `mbps`: what the viewers got."""
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    got = received_bytes(hosts)
    began = time.monotonic()
    time.sleep(window)
    spent = time.monotonic() - began
    result = {name: (cpu_seconds(pid) - start[name]) / spent for name, pid in pids.items()}
    result["mbps"] = (received_bytes(hosts) - got) * 8 / spent / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,16")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--viewers", choices=("cheap", "stock"), default="cheap")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        with relay_hosts() as hosts, run_janus(tmp, hosts) as janus:
            config = relay_config(tmp, janus)
            with run_service(
                tmp, ["--config", str(config)], hosts.service.address, hosts.service.command()
            ) as service:
                token = str(  # the class link: a pupil's own holds 3 sessions at most
                    next(link for link in service.links() if link["kind"] == "class")["token"]
                )
                pids = {"service": service.process.pid, "janus": janus.process.pid}
                time.sleep(args.settle)
                idle = shares(pids, args.window, hosts)
                cheap = args.viewers == "cheap"
                for n in counts:
                    whep = whep_viewers(hosts, service.base, token, n, tmp, cheap)
                    for process in whep:
                        ready = process.read(timeout=120)
                        if ready.get("errors") or ready.get("flowing", 0) < ready["viewers"]:
                            print(f"N={n}: WHEP viewers not all flowing: {ready}", flush=True)
                    time.sleep(args.settle)
                    built_in = shares(pids, args.window, hosts)
                    for process in whep:
                        process.close()
                    options = ("--cheap",) if cheap else ()
                    relay = Viewers(hosts, service, n, tmp / f"relay-{n}.log", *options)
                    joined = relay.read(timeout=180)
                    flowing = sum(
                        all(c.get(mid, {}).get("packets", 0) > 0 for mid in VIDEO_MIDS)
                        for c in joined.get("counts", [])
                    )
                    if flowing < n:
                        print(f"N={n}: {flowing}/{n} relay viewers receive both videos")
                    time.sleep(args.settle)
                    via_janus = shares(pids, args.window, hosts)
                    relay.close()
                    rows.append({"n": n, "built_in": built_in, "janus": via_janus})
                    print(f"N={n}: built-in {built_in}, relay {via_janus}", flush=True)
    print(f"\nidle (mountpoint fed, no viewers): service {idle['service']:.1%}, "
          f"janus {idle['janus']:.1%}")  # fmt: skip
    print(
        "| viewers | built-in: service CPU | built-in: Mb/s to viewers | relay: service CPU"
        " | relay: Janus CPU | relay: Mb/s to viewers |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        b, j = row["built_in"], row["janus"]
        print(
            f"| {row['n']} | {b['service']:.1%} | {b['mbps']:.2f} | {j['service']:.1%}"
            f" | {j['janus']:.1%} | {j['mbps']:.2f} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        span = last["n"] - first["n"]
        built = (last["built_in"]["service"] - first["built_in"]["service"]) / span
        janus_cost = (last["janus"]["janus"] - first["janus"]["janus"]) / span
        edge = (last["janus"]["service"] - first["janus"]["service"]) / span
        print(f"\nper extra viewer: built-in fan-out {built:.2%} of a core; relay: Janus "
              f"{janus_cost:.2%}, the service {edge:+.2%}")  # fmt: skip
        built_mbps = last["built_in"]["mbps"] - first["built_in"]["mbps"]
        janus_mbps = last["janus"]["mbps"] - first["janus"]["mbps"]
        if built_mbps > 0 and janus_mbps > 0:  # the CPU each extra Mb/s delivered took
            per_built = (last["built_in"]["service"] - first["built_in"]["service"]) / built_mbps
            per_janus = (last["janus"]["janus"] - first["janus"]["janus"]) / janus_mbps
            print(
                f"per extra Mb/s delivered: built-in {per_built:.2%} of a core"
                f" ({built_mbps / span:.2f} Mb/s a viewer), Janus {per_janus:.2%}"
                f" ({janus_mbps / span:.2f} Mb/s a viewer): {per_built / per_janus:.2f}×"
            )


if __name__ == "__main__":
    main()
