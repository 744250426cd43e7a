"""Other programs the service drives (ffmpeg, rclone): run, bounded in time, and killed
when the caller gives up (a cancelled upload, a shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence


async def run_command(command: Sequence[str], limit: float) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of `command`; raises
    `FileNotFoundError` when it is not installed and `TimeoutError` after `limit` s."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def last_line(text: str, fallback: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else fallback
