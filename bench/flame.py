"""A flame graph of the service while it serves viewers: where its Python time goes.

The demo service (`classroom-edge run --demo` on loopback, a process of its own) gets
`--viewers` WHEP viewers from another process (bench/viewers.py: one decodes, the others
only receive); after a warm-up, py-spy samples the service for `--seconds` and writes
an SVG flame graph of the thread holding the GIL at each sample (`--gil`: Python's own
work; a thread waiting, or in x264 or libvpx with the GIL released, is not in it).

    pip install py-spy        # a developer's tool: no dependency of the service
    python bench/flame.py --viewers 16 --seconds 20 --output docs/flame-send-after.svg

Nothing passes or fails; the server's CPU over the window is printed as well.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fanout import CpuMark
from bench.service import BenchError, Server, ViewersProcess, logs_dir, new_parser, parse_args


async def run(args: argparse.Namespace) -> int:
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    with logs_dir("flame-bench-", args.keep_logs, sys.stderr) as workdir:
        server = Server("edge", workdir)
        viewers = ViewersProcess(server.whep, args.viewers, workdir / "viewers.log")
        try:
            await server.start()
            token = await server.token()
            await asyncio.sleep(args.settle)
            ready = await viewers.start(token)
            if int(ready.get("flowing", 0)) < args.viewers:
                raise BenchError(f"only {ready.get('flowing')} of {args.viewers} viewers flow")
            await asyncio.sleep(args.warmup)
            assert server.process is not None
            first = CpuMark.take(server.process.pid, [viewers.pid])
            record = await asyncio.create_subprocess_exec(
                spy,
                "record",
                "--pid",
                str(server.process.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--subprocesses",  # the viewer workers too
                "--gil",  # the thread holding the GIL: Python's own work, nothing waiting
                "--format",
                args.format,
                "--output",
                str(args.output),
            )
            if await record.wait() != 0:
                raise BenchError("py-spy failed")
            last = CpuMark.take(server.process.pid, [viewers.pid])
            wall = last.wall - first.wall
            cpu = 100 * (last.server - first.server) / wall
            print(
                f"{args.viewers} viewers: server CPU {cpu:.1f} % of one core over {wall:.0f} s"
                f" (py-spy sampling included); {args.output}"
            )
        finally:
            await viewers.stop()
            await server.stop()
    return 0


def main() -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20, help="sampling window")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--warmup", type=float, default=4.0, help="after all viewers connect")
    parser.add_argument("--output", type=Path, default=Path(f"flame-{int(time.time())}.svg"))
    parser.add_argument(
        "--format", default="flamegraph", choices=("flamegraph", "raw", "speedscope")
    )
    return asyncio.run(run(parse_args(parser, keep_logs="keep server and viewer logs")))


if __name__ == "__main__":
    sys.exit(main())
