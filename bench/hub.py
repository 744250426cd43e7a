"""The school hub at a school's scale: N rooms (one class each, P periods a day, K pupils)
report a week; how long the hub takes to take one signed lesson report (verify, parse,
upsert), and to build the day's page data, the day's CSV, the week's XLSX and the
district summary. Prints numbers; passes or fails nothing.

    python -m bench.hub [--rooms 40] [--periods 8] [--pupils 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from edge.access.hubkey import signed_headers, verify
from edge.school.hub import HubStore
from edge.school.overview import day_lines, district_rows
from edge.school.reports import (
    DETAIL_HEADERS,
    SUMMARY_HEADERS,
    PeriodCells,
    render_cells_csv,
    render_school_xlsx,
    week_of_cells,
)

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY = dt.date(2026, 11, 23)


def cells(cls: str, day: dt.date, period: int, pupils: int) -> PeriodCells:
    start = dt.datetime.combine(day, dt.time(7, 0), ZONE) + dt.timedelta(minutes=50 * period)
    summary: list[object] = [
        cls,
        day,
        f"{period + 1} (sáng)",
        "Toán",
        "Nguyễn Thị Lan",
        start.time(),
        (start + dt.timedelta(minutes=45)).time(),
        pupils,
        5,
        4,
        80.0,
        0,
    ]
    details = [
        [
            cls,
            day,
            f"{period + 1} (sáng)",
            "Toán",
            f"01{n:08d}",
            f"Học sinh {n}",
            "có" if n < 5 else "không",
            "Có mặt" if n < 4 else "Vắng",
            start.time() if n < 4 else None,
            45 if n < 4 else 0,
            "",
        ]
        for n in range(pupils)
    ]
    assert len(summary) == len(SUMMARY_HEADERS) and len(details[0]) == len(DETAIL_HEADERS)
    return PeriodCells(cls, day, start, 5, 4, summary, details)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--periods", type=int, default=8)
    parser.add_argument("--pupils", type=int, default=40)
    args = parser.parse_args()
    keys = {f"r{n:02d}": os.urandom(32) for n in range(args.rooms)}
    classes = {room: f"{6 + n % 4}A{n // 4 + 1}" for n, room in enumerate(keys)}
    with tempfile.TemporaryDirectory() as folder:
        store = HubStore(Path(folder) / "school.db")
        now = dt.datetime.combine(MONDAY + dt.timedelta(days=5), dt.time(17), ZONE)
        took: list[float] = []
        size = 0
        for d in range(6):
            day = MONDAY + dt.timedelta(days=d)
            for room, key in keys.items():
                for period in range(args.periods):
                    body = json.dumps(
                        {
                            "room": room,
                            "lesson": f"{day}-{period}",
                            "cells": cells(classes[room], day, period, args.pupils).as_json(),
                        }
                    ).encode()
                    size = len(body)
                    headers = {
                        k.lower(): v for k, v in signed_headers(key, room, now, body).items()
                    }
                    began = time.perf_counter()
                    assert verify(keys, headers, body, now, 300) == room
                    data = json.loads(body)
                    store.put_lesson(
                        room,
                        data["lesson"],
                        "recorded",
                        "x",
                        PeriodCells.from_json(data["cells"]),
                        now,
                        now,
                    )
                    took.append(time.perf_counter() - began)
        took.sort()
        print(
            f"{args.rooms} rooms x {args.periods} periods x 6 days, {args.pupils} pupils: "
            f"one lesson report ({size / 1024:.1f} KiB) taken in median "
            f"{took[len(took) // 2] * 1000:.2f} ms, p99 {took[len(took) * 99 // 100] * 1000:.2f} ms"
        )
        timings: dict[str, float] = {}
        began = time.perf_counter()
        week = store.lessons(MONDAY, MONDAY + dt.timedelta(days=5))
        timings["read the week from school.db"] = time.perf_counter() - began
        began = time.perf_counter()
        lines, _ = day_lines(classes, MONDAY, week, {}, {}, now, dt.timedelta(seconds=30))
        timings["the day's table"] = time.perf_counter() - began
        day_cells = sorted(
            (h.cells for h in week if h.cells.day == MONDAY), key=lambda c: (c.class_name, c.start)
        )
        began = time.perf_counter()
        csv = render_cells_csv("Trường THCS Thử", MONDAY, day_cells)
        timings[f"the day's CSV ({len(csv) // 1024} KiB)"] = time.perf_counter() - began
        began = time.perf_counter()
        by_day = [
            (
                MONDAY + dt.timedelta(days=d),
                [h.cells for h in week if h.cells.day == MONDAY + dt.timedelta(days=d)],
            )
            for d in range(6)
        ]
        book = render_school_xlsx("Trường THCS Thử", by_day, week_of_cells([h.cells for h in week]))
        timings[f"the week's XLSX ({len(book) // 1024} KiB)"] = time.perf_counter() - began
        began = time.perf_counter()
        district_rows([lines], week)
        timings["the district summary"] = time.perf_counter() - began
        for what, seconds in timings.items():
            print(f"  {what}: {seconds * 1000:.0f} ms")
        store.close()


if __name__ == "__main__":
    main()
