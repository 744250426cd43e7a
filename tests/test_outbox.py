"""A room's outbox: the latest body per key, an unchanged body not queued again, a body
replaced while it was being sent stays owed, failures wait, all of it across a reopen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from edge.school.outbox import Outbox

T0 = dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC)


def test_the_latest_body_is_owed_once_and_survives_a_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    assert box.put("lesson:p1:a", "p1", "/api/school/lessons", b"v1", T0)
    assert not box.put("lesson:p1:a", "p1", "/api/school/lessons", b"v1", T0)  # unchanged
    first = box.due(T0)
    assert first is not None and first.body == b"v1"
    assert box.put("lesson:p1:a", "p1", "/api/school/lessons", b"v2", T0)  # changed meanwhile
    box.sent(first, T0)  # v1 reached the hub; v2 is still owed
    again = box.due(T0)
    assert again is not None and again.body == b"v2"
    box.failed(again, T0, "HTTP 503", 30)
    assert box.due(T0 + dt.timedelta(seconds=29)) is None
    assert box.backlog(T0 + dt.timedelta(seconds=60)) == (1, 60.0)
    box.close()
    box = Outbox(tmp_path / "outbox.db")  # a restart
    later = box.due(T0 + dt.timedelta(seconds=30))
    assert later is not None and later.body == b"v2" and later.attempts == 1
    box.sent(later, T0)
    assert box.due(T0 + dt.timedelta(days=1)) is None
    assert not box.put("lesson:p1:a", "p1", "/api/school/lessons", b"v2", T0)  # delivered
    assert box.backlog(T0) == (0, 0.0)
    box.close()


def test_a_heartbeat_goes_before_older_reports(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.put("lesson:p1:a", "p1", "/api/school/lessons", b"r", T0)
    box.put("beat:p1", "p1", "/api/school/beat", b"b", T0 + dt.timedelta(seconds=1))
    item = box.due(T0 + dt.timedelta(seconds=2))
    assert item is not None and item.key == "beat:p1"
    assert box.backlog(T0 + dt.timedelta(seconds=2)) == (1, 2.0)  # beats are not a backlog
    box.close()
