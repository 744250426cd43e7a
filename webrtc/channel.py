"""The class data channel of a viewer ("classroom"): small JSON messages both ways
(raise a hand, a message to the teacher; the teacher's answers). It knows nothing of
pupils: it checks size, shape and rate, and hands each message on."""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from .client_json import parse_client_json

logger = logging.getLogger(__name__)

LABEL = "classroom"
MAX_BYTES = 2000  # a message longer than this is dropped
BURST, WINDOW = 10, 10.0  # at most this many messages in this many seconds

Message = dict[str, Any]


class ClassChannel:
    def __init__(self, channel: Any, on_message: Callable[[Message], None]) -> None:
        self._channel = channel
        self._on_message = on_message
        self._recent: collections.deque[float] = collections.deque()
        self.dropped = 0
        channel.on("message", self._received)

    @property
    def open(self) -> bool:
        return bool(self._channel.readyState == "open")

    def _received(self, data: object) -> None:
        now = time.monotonic()
        while self._recent and now - self._recent[0] > WINDOW:
            self._recent.popleft()
        if not isinstance(data, str) or len(data) > MAX_BYTES or len(self._recent) >= BURST:
            self.dropped += 1
            return
        self._recent.append(now)
        try:  # a message the page never sends is dropped; it must not end the session
            message = parse_client_json(data)
        except ValueError:
            self.dropped += 1
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.dropped += 1
            return
        try:
            self._on_message(message)
        except Exception:  # one odd message must not close the channel
            logger.exception("class channel message %r", message.get("type"))

    def send(self, message: Message) -> bool:
        """Send if the channel is open; False otherwise (the viewer will hear on rejoin)."""
        if not self.open:
            return False
        self._channel.send(json.dumps(message, ensure_ascii=False))
        return True

    def close(self) -> None:
        self._channel.close()
