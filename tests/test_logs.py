"""Logs IT staff read: a pupil leaving is an INFO line, not a red traceback; times are the
school's, with its offset, as the pages show them."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import re
from zoneinfo import ZoneInfo

import pytest

from edge.live.logbook import Logbook, SchoolTimeFormatter
from webrtc import quiet_departures
from webrtc.departures import NOT_CONNECTED

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


async def fails(error: Exception) -> None:
    raise error


async def test_a_viewer_leaving_is_info_and_other_faults_stay_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    quiet_departures(loop)
    quiet_departures(loop)  # once is enough
    try:
        # as aiortc's SCTP timers do: a task nobody awaits sends on a closed transport
        for error in (ConnectionError(NOT_CONNECTED), ValueError("a real fault")):
            task = asyncio.ensure_future(fails(error))
            await asyncio.sleep(0.01)
            assert task.done()
            del task
            gc.collect()
    finally:
        loop.set_exception_handler(before)
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", "a viewer's connection closed while data was still on its way") in records
    errors = [m for level, m in records if level == "ERROR"]
    assert len(errors) == 1 and "Task exception was never retrieved" in errors[0], records
    assert all(NOT_CONNECTED not in (r.exc_text or "") for r in caplog.records)


def record_at(moment: dt.datetime) -> logging.LogRecord:
    record = logging.LogRecord(
        "edge.live.service", logging.INFO, __file__, 1, "lesson live", (), None
    )
    record.created = moment.timestamp()
    record.msecs = moment.microsecond // 1000
    return record


def test_log_lines_and_the_admin_logbook_use_the_school_time() -> None:
    moment = dt.datetime(2026, 12, 4, 0, 5, 31, 503000, tzinfo=dt.UTC)  # 07:05:31 in Hà Nội
    line = SchoolTimeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", ZONE).format(
        record_at(moment)
    )
    assert line == "2026-12-04 07:05:31.503 +07:00 INFO edge.live.service: lesson live"
    book = Logbook(ZONE)
    book.emit(record_at(moment))
    assert book.recent()[0]["at"] == "2026-12-04T07:05:31.503000+07:00"
    local = SchoolTimeFormatter("%(asctime)s").format(record_at(moment))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.503 [+-]\d\d:\d\d", local), local
