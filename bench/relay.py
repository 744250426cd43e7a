"""Per-viewer CPU of the built-in fan-out against Janus's, same stream, one run.

Janus (Debian's) in a namespace of its own, the demo service with `[relay]` in another,
viewers (aiortc, not decoding) in a third (tests/janus_env.py). For each N: N WHEP
viewers on the service (bench/viewers.py), then N relay viewers on Janus
(tests/janus_env.py); the service's and Janus's CPU over a window each time.

    python bench/relay.py [--counts 1,4,16] [--window 10]
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
from tests.conftest import ROOT, run_service
from tests.janus_env import RelayHosts, relay_config, relay_hosts, run_janus
from tests.test_relay import Viewers, cpu_seconds

WHEP_VIEWERS = (
    "import runpy, sys, webrtc; webrtc.gather_only = lambda addresses: None; "
    "sys.argv = ['viewers.py', *sys.argv[1:]]; "
    "runpy.run_path('bench/viewers.py', run_name='__main__')"
)


class WhepViewers(Viewers):
    """bench/viewers.py in the viewers' namespace (offering every address, not loopback)."""

    def __init__(self, hosts: RelayHosts, base: str, token: str, count: int, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            hosts.viewer.command(
                sys.executable,
                "-c",
                WHEP_VIEWERS,
                "--whep",
                f"{base}/whep/demo",
                "--token",
                token,
                "--count",
                str(count),
                "--decoders",
                "0",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )


def shares(pids: dict[str, int], window: float) -> dict[str, float]:
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    began = time.monotonic()
    time.sleep(window)
    spent = time.monotonic() - began
    return {name: (cpu_seconds(pid) - start[name]) / spent for name, pid in pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,4,16")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
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
                token = str(
                    next(link for link in service.links() if link["kind"] == "student")["token"]
                )
                pids = {"service": service.process.pid, "janus": janus.process.pid}
                time.sleep(args.settle)
                idle = shares(pids, args.window)
                for n in counts:
                    whep = WhepViewers(hosts, service.base, token, n, tmp / f"whep-{n}.log")
                    whep.read(timeout=120)
                    time.sleep(args.settle)
                    built_in = shares(pids, args.window)
                    whep.close()
                    relay = Viewers(hosts, service, n, tmp / f"relay-{n}.log")
                    relay.read(timeout=180)
                    time.sleep(args.settle)
                    via_janus = shares(pids, args.window)
                    relay.close()
                    rows.append({"n": n, "built_in": built_in, "janus": via_janus})
                    print(f"N={n}: built-in {built_in}, relay {via_janus}", flush=True)
    print(f"\nidle (mountpoint fed, no viewers): service {idle['service']:.1%}, "
          f"janus {idle['janus']:.1%}")  # fmt: skip
    print("| viewers | built-in: service CPU | relay: service CPU | relay: Janus CPU |")
    print("| ---: | ---: | ---: | ---: |")
    for row in rows:
        b, j = row["built_in"], row["janus"]
        print(f"| {row['n']} | {b['service']:.1%} | {j['service']:.1%} | {j['janus']:.1%} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        span = last["n"] - first["n"]
        built = (last["built_in"]["service"] - first["built_in"]["service"]) / span
        janus_cost = (last["janus"]["janus"] - first["janus"]["janus"]) / span
        edge = (last["janus"]["service"] - first["janus"]["service"]) / span
        print(f"\nper extra viewer: built-in fan-out {built:.2%} of a core; relay: Janus "
              f"{janus_cost:.2%}, the service {edge:+.2%}")  # fmt: skip


if __name__ == "__main__":
    main()
