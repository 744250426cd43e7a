"""The mini-PC around the room: the library takes a probe file, the disk holds the
recordings for long enough, the clock is synchronized."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from edge.config.settings import Config, LibrarySettings, RoomSettings
from edge.live.service import library_target
from edge.recording.library import UploadError

from .report import Status, Step, fixed

LIBRARY_TIMEOUT = 120.0


# ------------------------------------------------------------------ library


async def check_library(library: LibrarySettings, data_dir: Path) -> Step:
    """Write, read back, compare and delete a probe file at the library target."""
    target = library_target(library, data_dir)
    if target is None:
        return Step(
            "library",
            "warn",
            "Kho học liệu: chưa cấu hình, bài ghi chỉ nằm trên máy này",
            "Library: none configured; recordings stay on this mini-PC only",
            {"target": None},
        )
    where = target.describe()
    started = time.monotonic()
    try:
        await asyncio.wait_for(target.probe(), LIBRARY_TIMEOUT)
    except UploadError as exc:
        return Step(
            "library",
            "fail",
            f"Kho học liệu: không ghi được vào {where}: {exc}",
            f"Library: cannot write to {where}: {exc}",
            {"target": where, "error": str(exc)},
        )
    except TimeoutError:
        return Step(
            "library",
            "fail",
            f"Kho học liệu: {where} không trả lời trong {LIBRARY_TIMEOUT:.0f} giây",
            f"Library: {where} did not answer within {LIBRARY_TIMEOUT:.0f} s",
            {"target": where, "error": "timeout"},
        )
    took = time.monotonic() - started
    return Step(
        "library",
        "pass",
        f"Kho học liệu: ghi, đọc lại, so sánh và xoá tệp thử tại {where} ({fixed(took, 2)} giây)",
        f"Library: wrote, read back, compared and deleted a probe at {where} ({fixed(took, 2)} s)",
        {"target": where, "seconds": round(took, 3)},
    )


# ------------------------------------------------------------------ disk


def recorded_bytes_per_second(settings: RoomSettings) -> float:
    """At the configured bitrates: the camera's top rendition, the mic, the first board
    rendition that is not stills (what `recorded_tracks` puts into the files)."""
    bits = 0
    if settings.camera is not None:
        bits += settings.camera_renditions[0].bitrate_kbps
    if settings.mic is not None:
        bits += settings.audio.bitrate_kbps
    if settings.board is not None:
        boards = [r for r in settings.board_renditions if not r.stills] or settings.board_renditions
        bits += boards[0].bitrate_kbps
    return bits * 1000 / 8


def check_disk(config: Config, room: str, measured_bytes_per_second: float | None) -> Step:
    """Free space of the data dir against the recording thresholds, and hours that fit."""
    site = config.site
    data_dir = site.data_dir
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    usage = shutil.disk_usage(existing)  # the data dir may not exist yet
    free = usage.free
    stop_below = site.recordings.stop_below_mb * 1_000_000
    min_free = site.recordings.min_free_mb * 1_000_000
    recording = site.recordings.enabled and config.rooms[room].record
    rate = measured_bytes_per_second or recorded_bytes_per_second(config.rooms[room])
    hours = max(free - stop_below, 0) / (rate * 3600) if recording and rate > 0 else None
    lesson_hours = site.schedule.max_period_minutes / 60
    value: dict[str, Any] = {
        "free_mb": round(free / 1e6),
        "total_mb": round(usage.total / 1e6),
        "min_free_mb": site.recordings.min_free_mb,
        "stop_below_mb": site.recordings.stop_below_mb,
        "hours": round(hours, 1) if hours is not None else None,
        "bytes_per_second": round(rate),
        "rate_measured": measured_bytes_per_second is not None,
        "path": str(data_dir),
    }
    free_text = f"{free / 1e9:.1f} GB"
    if hours is None:
        fits_vi, fits_en = "phòng này không ghi hình", "this room does not record"
    else:
        how = "đo được" if measured_bytes_per_second else "theo cấu hình"
        how_en = "as measured" if measured_bytes_per_second else "at the configured bitrates"
        fits_vi = f"đủ ghi khoảng {hours:.0f} giờ ({how} {rate * 3.6 / 1e6:.2f} GB/giờ)"
        fits_en = f"about {hours:.0f} h of recording ({how_en}, {rate * 3.6 / 1e6:.2f} GB/h)"
    status: Status = "pass"
    note_vi = note_en = ""
    if free < stop_below or (hours is not None and hours < lesson_hours):
        status = "fail"
        note_vi = f"; dưới {site.recordings.stop_below_mb} MB việc ghi hình sẽ dừng"
        note_en = f"; recording pauses below {site.recordings.stop_below_mb} MB"
    elif free < min_free:
        status = "warn"
        note_vi = f"; dưới {site.recordings.min_free_mb} MB bài đã lưu trữ bị xoá dần"
        note_en = f"; below {site.recordings.min_free_mb} MB archived lessons are deleted"
    return Step(
        "disk",
        status,
        f"Ổ đĩa ({data_dir}): còn trống {free_text}, {fits_vi}{note_vi}",
        f"Disk ({data_dir}): {free_text} free, {fits_en}{note_en}",
        value,
    )


# ------------------------------------------------------------------ clock


def check_clock(zone: dt.tzinfo) -> Step:
    """NTP synchronization as systemd sees it; "unknown" (a container) only warns."""
    now = dt.datetime.now(zone)
    shown = f"{now:%H:%M:%S %d/%m/%Y}"
    answer, why = "unknown", ""
    try:
        result = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
            answer = result.stdout.strip()
        else:
            lines = (result.stderr or result.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit {result.returncode}"
    except FileNotFoundError:
        why = "timedatectl not installed"
    except (OSError, subprocess.SubprocessError) as exc:
        why = str(exc)
    value = {"ntp_synchronized": answer, "local_time": now.isoformat()}
    if answer == "yes":
        return Step(
            "clock",
            "pass",
            f"Đồng hồ: đã đồng bộ NTP (giờ máy {shown})",
            f"Clock: NTP synchronized (local time {shown})",
            value,
        )
    if answer == "no":
        return Step(
            "clock",
            "fail",
            f"Đồng hồ: CHƯA đồng bộ NTP (giờ máy {shown}); tiết học sẽ lệch giờ chuông: "
            "`timedatectl set-ntp true` và kiểm tra máy chủ NTP",
            f"Clock: NOT NTP synchronized (local time {shown}); lessons would miss the bell: "
            "`timedatectl set-ntp true` and check the NTP server",
            value,
        )
    return Step(
        "clock",
        "warn",
        f"Đồng hồ: không rõ đã đồng bộ chưa ({why}); giờ máy {shown}, hãy so với đồng hồ chuẩn",
        f"Clock: sync unknown ({why}); local time {shown}, compare with a reference clock",
        {**value, "why": why},
    )
