"""The service's recent log lines, kept in memory for the admin page."""

from __future__ import annotations

import collections
import datetime as dt
import logging


class Logbook(logging.Handler):
    """Keeps the last `size` records (INFO and up) as dicts; `install()`/`remove()`."""

    def __init__(
        self, zone: dt.tzinfo = dt.UTC, size: int = 300, level: int = logging.INFO
    ) -> None:
        super().__init__(level)
        self.zone = zone  # the school's: the admin page shows its times
        self.records: collections.deque[dict[str, str]] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        self.records.append(
            {
                "at": dt.datetime.fromtimestamp(record.created, self.zone).isoformat(),
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


class SchoolTimeFormatter(logging.Formatter):
    """Log lines stamped in the school's time zone, with its offset
    (`2026-12-04 07:05:31.503 +07:00`), as the pages show times; `zone` may be set once
    the config is read (the machine's local time until then)."""

    def __init__(self, fmt: str, zone: dt.tzinfo | None = None) -> None:
        super().__init__(fmt)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = dt.datetime.fromtimestamp(record.created).astimezone(self.zone)  # None: local
        offset = moment.strftime("%z")  # +0700
        stamp = moment.strftime(datefmt or "%Y-%m-%d %H:%M:%S")
        return f"{stamp}.{int(record.msecs):03d} {offset[:3]}:{offset[3:]}"


def stamp_in_school_time(zone: dt.tzinfo) -> None:
    """Make the root logger's handlers stamp lines in `zone`."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, SchoolTimeFormatter):
            handler.formatter.zone = zone
