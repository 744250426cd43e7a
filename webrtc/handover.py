"""Media sockets handed from one process to another on a `SOCK_SEQPACKET` socket of their
own (`SCM_RIGHTS`): one message per media socket given (with its key) or taken back. The
control process hands the media process the sending ends, and each viewer worker the
receiving ends; a key names the feed (a worker's number, or the room's media process)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

HANDOVER = struct.Struct("!ci")  # b"A" attach (the socket rides along) or b"D" detach; key
HANDLE_TIMEOUT = 30.0  # s for the loop to take a socket in


def hand(handover: socket.socket | None, key: int, given: socket.socket | None) -> None:
    """Give `given` under `key` (None: take back what `key` had); this process's copy of
    `given` is closed either way. Raises `ConnectionError` when the other side has gone
    or takes nothing (`handover` should be non-blocking: a hung peer must not hold the
    caller up)."""
    try:
        if handover is None:
            raise ConnectionError("the process to hand it to is not running")
        data = HANDOVER.pack(b"A" if given is not None else b"D", key)
        try:
            socket.send_fds(handover, [data], [given.fileno()] if given is not None else [])
        except OSError as exc:  # full (hung) or gone: its owner replaces it
            raise ConnectionError(f"no socket taken: {exc}") from exc
    finally:
        if given is not None:
            given.close()


def take_handovers(
    handover: socket.socket,
    loop: asyncio.AbstractEventLoop,
    on_attach: Callable[[int, socket.socket], Coroutine[Any, Any, None]],
    on_detach: Callable[[int], Coroutine[Any, Any, None]],
) -> None:
    """Blocking (a thread of its own): each socket given or taken back, handled by
    `on_attach`/`on_detach` on `loop` one after the other, until the handover socket
    closes."""
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(handover, HANDOVER.size, 1)
        except OSError:
            return
        if not data:
            return
        op, key = HANDOVER.unpack(data)
        if op == b"A" and fds:
            step = on_attach(key, socket.socket(fileno=fds[0]))
        else:
            for fd in fds:
                os.close(fd)
            step = on_detach(key)
        try:
            asyncio.run_coroutine_threadsafe(step, loop).result(timeout=HANDLE_TIMEOUT)
        except Exception:
            logger.exception("media socket %d", key)
