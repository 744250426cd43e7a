"""Store-and-forward from the rooms of this mini-PC to the school hub (a room's `[hub]`).

Every `beat_seconds` each room puts into the outbox (`outbox.db`) its heartbeat (state
now, next bell, today's plan, last drill, disk and archive) and the report of each of
today's lessons held so far, as the same cells its own `/reports` shows; an unchanged
report is not queued again. The sender posts what is due, signed with the room's key;
a failure waits (doubling, capped, with jitter) and the row stays on disk through
restarts and hours without network. The hub upserts by (room, lesson id): a report
delivered twice counts once. The hub never calls the rooms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from capture.supervise import cancel_all, supervised
from edge.access.hubkey import read_key, signed_headers
from edge.config.settings import HubLinkSettings
from edge.live.state import room_state
from edge.school.outbox import Item, Outbox
from edge.school.reports import Rules, day_report, period_cells
from edge.school.timetable import plan_day

if TYPE_CHECKING:
    from edge.live.service import EdgeService

logger = logging.getLogger(__name__)

LESSONS_PATH = "/api/school/lessons"
BEAT_PATH = "/api/school/beat"
POST_SECONDS = 10.0  # one delivery attempt takes at most this long


@dataclass(frozen=True)
class Link:
    room: str
    settings: HubLinkSettings
    key: bytes


def backoff(attempts: int, base: float, longest: float) -> float:
    """Seconds before the next try after `attempts` failures: doubling, capped, +-20 %."""
    wait = min(longest, base * 2 ** min(attempts, 30))
    return float(wait * random.uniform(0.8, 1.2))


_DRILLS: dict[tuple[Path, str], tuple[int, dict[str, Any] | None]] = {}


def last_drill(folder: Path, room: str) -> dict[str, Any] | None:
    """The room's newest drill report in `<data dir>/drills`: when, passed, verdict. Read
    again only when the folder changed (a scrape of /metrics costs one `stat`)."""
    try:
        changed = folder.stat().st_mtime_ns
    except OSError:
        return None
    cached = _DRILLS.get((folder, room))
    if cached is not None and cached[0] == changed:
        return cached[1]
    found = _read_drills(folder, room)
    _DRILLS[(folder, room)] = (changed, found)
    return found


def _read_drills(folder: Path, room: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for path in sorted(folder.glob(f"{room}-*.json")) if folder.is_dir() else []:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        newer = found is None or str(report.get("started", "")) > str(found["started"])
        if isinstance(report, dict) and report.get("room") == room and newer:
            found = {
                "started": str(report.get("started", "")),
                "passed": bool(report.get("passed")),
                "verdict": str(report.get("verdict", "")),
            }
    return found


class Delivery:
    """The rooms' reports and heartbeats to their hub; `start()`/`stop()`."""

    def __init__(self, service: EdgeService, links: list[Link]) -> None:
        self.service = service
        self.links = {link.room: link for link in links}
        self.outbox = Outbox(service.config.site.data_dir / "outbox.db")
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.Client | None = None
        self.delivered = 0
        self.last_error = ""
        self.waiting: tuple[int, float] = (0, 0.0)  # lessons not yet delivered, oldest's age

    @classmethod
    def for_service(cls, service: EdgeService) -> Delivery | None:
        links = [
            Link(name, room.hub, read_key(room.hub.key_file))
            for name, room in service.config.rooms.items()
            if room.hub is not None
        ]
        return cls(service, links) if links else None

    async def start(self) -> None:
        self._client = httpx.Client(timeout=POST_SECONDS, follow_redirects=False)
        self._task = supervised("hub-delivery", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_all([self._task])
        try:
            if self._client is not None:
                self._client.close()
        finally:
            await asyncio.to_thread(self.outbox.close)

    async def _run(self) -> None:
        clock = self.service.clock
        beat = min(link.settings.beat_seconds for link in self.links.values())
        next_beat = clock.now()
        days = 2  # the first turn also reports yesterday's lessons a stop may have left
        while True:
            now = clock.now()
            if now >= next_beat:
                await self.queue_all(now, days)
                next_beat, days = now + dt.timedelta(seconds=beat), 1
            await self._send_due()
            due = await asyncio.to_thread(self.outbox.next_due)
            wake = next_beat if due is None else min(next_beat, due)
            await clock.sleep_until(max(wake, clock.now() + dt.timedelta(milliseconds=100)))

    async def queue_all(self, now: dt.datetime, days: int = 1) -> None:
        """Each room's heartbeat and the reports of its lessons of the last `days` days
        (today: 1), into the outbox."""
        beats = {name: self.heartbeat(name, now) for name in self.links}  # on the loop
        await asyncio.to_thread(self._queue, beats, now, days)

    def _queue(self, beats: dict[str, dict[str, Any]], now: dt.datetime, days: int) -> None:
        today = now.astimezone(self.service.config.zone).date()
        for name, beat in beats.items():
            beat["plan"] = self._plan(name, now)
            beat["drill"] = last_drill(self.service.config.site.data_dir / "drills", name)
            body = json.dumps(beat, ensure_ascii=False, sort_keys=True).encode()
            self.outbox.put(f"beat:{name}", name, BEAT_PATH, body, now)
            for back in range(days - 1, -1, -1):
                day = today - dt.timedelta(days=back)
                for lesson_id, report in self.lesson_reports(name, day, now):
                    body = json.dumps(report, ensure_ascii=False, sort_keys=True).encode()
                    self.outbox.put(f"lesson:{name}:{lesson_id}", name, LESSONS_PATH, body, now)

    def lesson_reports(
        self, room: str, day: dt.date, now: dt.datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """The lessons of `room` on `day` held so far, as the cells of its own report."""
        service = self.service
        config = service.config
        zone = config.zone
        site = config.site
        report = day_report(
            site.school,
            day,
            [room],
            lessons=service.store,
            roster=service.roster,
            attendance=service.attendance,
            zone=zone,
            rules=Rules(site.attendance.present_share, site.attendance.late_minutes),
            now=now,
        )
        records = site.recordings.enabled and config.rooms[room].record
        found = []
        for period, cells in zip(report.periods, period_cells(report, zone), strict=True):
            pupils = sorted((p.pupil.id, p.pupil.name) for p in period.pupils)
            roster = hashlib.sha256(json.dumps(pupils).encode()).hexdigest()[:16]
            found.append(
                (
                    period.lesson.id,
                    {
                        "room": room,
                        "lesson": period.lesson.id,
                        "state": period.lesson.state,
                        "records": records,  # False: "recorded" means ended, with no video
                        "roster": roster,
                        "cells": cells.as_json(),
                    },
                )
            )
        return found

    def _plan(self, room: str, now: dt.datetime) -> dict[str, Any]:
        config = self.service.config
        day = now.astimezone(config.zone).date()
        planned = plan_day(
            config.timetables.get(room, []),
            day,
            class_name=config.rooms[room].class_name,
            timezone=config.zone,
            calendar=config.site.calendar.calendar(),
            excluded=config.excluded_subjects(room),
        )
        return {"day": day.isoformat(), "periods": [p.as_json() for p in planned]}

    def heartbeat(self, room: str, now: dt.datetime) -> dict[str, Any]:
        """Room `room` now, as the hub's rooms view reads it."""
        service = self.service
        zone = service.config.zone
        state = room_state(service, room)
        archive = service.archiver.health()
        waiting, oldest = self.waiting
        due = state.lesson
        return {
            "room": room,
            "class": state.class_name,
            "time": now.astimezone(zone).isoformat(),
            "state": "live" if state.live else "warming" if state.capturing else "idle",
            "due": None if due is None else _bell(due.as_json(zone)),
            "next": None if state.next is None else _bell(state.next.as_json(zone)),
            "missing": list(state.missing),
            "mic_silent": state.mic_silent,
            "warnings": list(state.warnings),
            "disk_low": bool(archive["disk_low"]),
            "disk_free_mb": archive["disk_free_mb"],
            "archive_waiting": archive["waiting"],
            "archive_oldest_seconds": archive["oldest_seconds"],
            "hub_waiting": waiting,
            "hub_oldest_seconds": round(oldest),
        }

    async def _send_due(self) -> None:
        clock = self.service.clock
        while True:
            item = await asyncio.to_thread(self.outbox.due, clock.now())
            if item is None:
                break
            link = self.links.get(item.room)
            if link is None:  # a room no longer reporting: nothing to sign it with
                await asyncio.to_thread(self.outbox.failed, item, clock.now(), "no [hub]", 3600)
                continue
            error = await asyncio.to_thread(self._post, link, item)
            now = clock.now()
            if error is None:
                self.delivered += 1
                await asyncio.to_thread(self.outbox.sent, item, now)
                if self.last_error:  # the hub is back: what waited goes now
                    self.last_error = ""
                    await asyncio.to_thread(self.outbox.retry_now, now)
                continue
            self.last_error = error
            wait = backoff(
                item.attempts, link.settings.retry_base_seconds, link.settings.retry_max_seconds
            )
            logger.info("hub: %s not delivered (%s); again in %.0f s", item.key, error, wait)
            await asyncio.to_thread(self.outbox.failed, item, now, error, wait)
            break  # the hub is away: the rest waits for the next turn
        self.waiting = await asyncio.to_thread(self.outbox.backlog, clock.now())

    def _post(self, link: Link, item: Item) -> str | None:
        """POST one item (in a thread); None when the hub took it, else why not."""
        assert self._client is not None
        url = link.settings.url.rstrip("/") + item.path
        headers = signed_headers(link.key, link.room, self.service.clock.now(), item.body)
        try:
            answer = self._client.post(url, content=item.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}: {answer.text[:200]}"


def _bell(lesson: dict[str, object]) -> dict[str, object]:
    return {key: lesson[key] for key in ("start", "end", "subject", "period", "session")}
