"""A viewer who leaves is not an error.

aiortc's SCTP transport (the data channel) sends from tasks it never awaits: a
retransmission timer that fires after the pupil's DTLS transport has closed raises
`ConnectionError("Cannot send encrypted data, not connected")` in such a task, and asyncio
logs it at ERROR with a traceback ("Task exception was never retrieved") each time a pupil
leaves. `quiet_departures(loop)` makes that one case an INFO line; everything else still
reaches the loop's previous (or default) exception handler."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

NOT_CONNECTED = "Cannot send encrypted data, not connected"


def is_departure(context: dict[str, Any]) -> bool:
    error = context.get("exception")
    return isinstance(error, ConnectionError) and str(error) == NOT_CONNECTED


def quiet_departures(loop: asyncio.AbstractEventLoop) -> None:
    """Install the handler on `loop` (once; it keeps the handler that was there)."""
    previous = loop.get_exception_handler()
    if getattr(previous, "quiet_departures", False):
        return

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_departure(context):
            logger.info("a viewer's connection closed while data was still on its way")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handle.quiet_departures = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handle)
