"""The drill's report: each check is a `Step` (pass / warn / fail, the measured value, a
message in Vietnamese and English); `DrillReport` holds them, says the verdict, and is
saved as text and JSON."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.config.files import write_atomically

Status = Literal["pass", "warn", "fail"]
Progress = Callable[[str], None]

LABELS: dict[Status, tuple[str, str]] = {
    "pass": ("ĐẠT", "PASS"),
    "warn": ("CẢNH BÁO", "WARN"),
    "fail": ("KHÔNG ĐẠT", "FAIL"),
}
# the sources as the messages name them (Vietnamese, English)
SOURCE_NAMES = {"camera": ("Camera", "Camera"), "board": ("Bảng", "Board"), "mic": ("Micro", "Mic")}


class DrillError(RuntimeError):
    """The drill itself could not run a step (the message says why)."""


@dataclass
class Step:
    """One check: its status, what was measured, and what it means in both languages."""

    key: str
    status: Status
    vi: str
    en: str
    value: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        vi, en = LABELS[self.status]
        return f"[{vi} · {en}] {self.vi} · {self.en}"

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status,
            "value": self.value,
            "message_vi": self.vi,
            "message_en": self.en,
        }


def worst(*statuses: Status) -> Status:
    """The worst of `statuses` (pass when there are none)."""
    order: tuple[Status, ...] = ("pass", "warn", "fail")
    return max(statuses, key=order.index, default="pass")


@dataclass
class DrillReport:
    """The drill's outcome: `passed` when no step failed."""

    school: str
    room: str
    class_name: str
    zone: dt.tzinfo
    seconds: int
    started: dt.datetime
    finished: dt.datetime | None = None
    host: str = field(default_factory=socket.gethostname)
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def verdict(self) -> str:
        warned = sum(s.status == "warn" for s in self.steps)
        ok = sum(s.status == "pass" for s in self.steps)
        if self.passed:
            return (
                f"KẾT LUẬN: PHÒNG {self.room} SẴN SÀNG ({ok} đạt, {warned} cảnh báo) · "
                f"RESULT: ROOM {self.room} READY ({ok} passed, {warned} warning(s))"
            )
        names = ", ".join(s.key for s in self.failed)
        return (
            f"KẾT LUẬN: PHÒNG {self.room} CHƯA SẴN SÀNG: {len(self.failed)} mục không đạt "
            f"({names}) · RESULT: ROOM {self.room} NOT READY: {len(self.failed)} check(s) "
            f"failed ({names})"
        )

    def text(self) -> str:
        start = self.started.astimezone(self.zone)
        end = (self.finished or self.started).astimezone(self.zone)
        lines = [
            "BÁO CÁO KIỂM TRA PHÒNG HỌC · CLASSROOM DRILL REPORT",
            f"Trường · School: {self.school}",
            f"Phòng · Room: {self.room} (lớp · class {self.class_name})",
            f"Thời gian · Time: {start:%d/%m/%Y %H:%M:%S} – {end:%H:%M:%S} ({start:%z})",
            f"Máy · Host: {self.host}",
            f"Tiết thử · Mini-lesson: {self.seconds} s",
            "",
            *(step.line() for step in self.steps),
            "",
            self.verdict(),
            "",
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "school": self.school,
            "room": self.room,
            "class": self.class_name,
            "host": self.host,
            "started": self.started.astimezone(self.zone).isoformat(),
            "finished": (self.finished or self.started).astimezone(self.zone).isoformat(),
            "seconds": self.seconds,
            "passed": self.passed,
            "verdict": self.verdict(),
            "steps": [step.as_json() for step in self.steps],
        }


def fixed(value: float, digits: int = 1) -> str:
    """`value` with `digits` decimals, as the messages show numbers."""
    return f"{value:.{digits}f}"


def report_paths(report: DrillReport, data_dir: Path, output: Path | None) -> tuple[Path, Path]:
    """The text and JSON files: `--output` (a file, or a folder), else `<data dir>/drills/`."""
    name = f"{report.room}-{report.started.astimezone(report.zone):%Y-%m-%d-%H%M}"
    if output is None:
        base = data_dir / "drills" / name
    elif output.is_dir():
        base = output / name
    else:
        base = output.with_suffix("") if output.suffix in (".txt", ".json") else output
    return base.with_name(base.name + ".txt"), base.with_name(base.name + ".json")


def save_report(report: DrillReport, data_dir: Path, output: Path | None) -> tuple[Path, Path]:
    """Write the report as text and JSON (atomically); their paths."""
    text_path, json_path = report_paths(report, data_dir, output)
    write_atomically(text_path, report.text())
    write_atomically(json_path, json.dumps(report.as_json(), ensure_ascii=False, indent=2) + "\n")
    return text_path, json_path
