"""The service's recent log lines, kept in memory for the admin page."""

from __future__ import annotations

import collections
import datetime as dt
import logging


class Logbook(logging.Handler):
    """Keeps the last `size` records (INFO and up) as dicts; `install()`/`remove()`."""

    def __init__(self, size: int = 300, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.records: collections.deque[dict[str, str]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        self.records.append(
            {
                "at": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
                "level": record.levelname,
                "logger": record.name,
                "message": message[:2000],
            }
        )

    def install(self) -> None:
        logging.getLogger().addHandler(self)

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)

    def recent(self, count: int = 100) -> list[dict[str, str]]:
        return list(self.records)[-count:]
