"""`classroom-edge archive status|retry|verify`: the archive queue, for IT staff.

They act on the data dir of a running service (SQLite in WAL mode: the service sees a
retry at its next look, within seconds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import PurePosixPath

from capture.mux import file_sha256
from edge.config.settings import Config
from edge.recording.archive import ArchiveStore, Job, library_problems
from edge.recording.recordings import RECORD, RecordingStore


def _stores(config: Config) -> tuple[ArchiveStore, RecordingStore]:
    data = config.site.data_dir
    return ArchiveStore(data / "lessons.db"), RecordingStore(data / "recordings", config.zone)


def _progress(job: Job) -> str:
    if not job.bytes_total:
        return "–"
    return f"{100 * job.bytes_done / job.bytes_total:.0f} % of {job.bytes_total / 1e6:.1f} MB"


def status(config: Config, as_json: bool) -> int:
    from edge.live.service import library_target

    jobs, _ = _stores(config)
    try:
        found = jobs.jobs()
    finally:
        jobs.close()
    target = library_target(config.site.library, config.site.data_dir)
    if as_json:
        print(json.dumps([j.as_json(config.zone) for j in found], ensure_ascii=False, indent=2))
        return 0
    print(f"library: {target.describe() if target else 'none configured ([library] in edge.toml)'}")
    empty = [j for j in found if j.state == "empty"]
    found = [j for j in found if j.state != "empty"]
    waiting = [j for j in found if j.state != "done"]
    print(f"{len(found)} lesson(s): {len(found) - len(waiting)} archived, {len(waiting)} waiting")
    if empty:
        print(f"({len(empty)} more closed with nothing recorded)")
    for job in found:
        line = f"  {job.lesson_id:<28} {job.state:<10} {_progress(job):<22}"
        if job.state == "queued" and job.attempts:
            again = job.next_try.astimezone(config.zone).strftime("%d/%m %H:%M:%S")
            line += f" attempt {job.attempts}, again at {again}: {job.last_error}"
        elif job.state == "done" and job.archived_at is not None:
            line += f" {job.archived_at.astimezone(config.zone):%d/%m %H:%M} → {job.folder}"
            if job.evicted_at is not None:
                line += " (local copy deleted)"
        print(line)
    return 0


def retry(config: Config, lessons: list[str]) -> int:
    jobs, _ = _stores(config)
    try:
        changed = jobs.retry(dt.datetime.now(dt.UTC), lessons or None)
    finally:
        jobs.close()
    print(f"{changed} waiting lesson(s) will be sent now")
    return 0


async def _verify(config: Config, lessons: list[str]) -> int:
    from edge.live.service import library_target

    jobs, recordings = _stores(config)
    target = library_target(config.site.library, config.site.data_dir)
    bad = 0
    try:
        chosen = [j for j in jobs.jobs("done") if not lessons or j.lesson_id in lessons]
        for job in chosen:
            record = recordings.read(job.lesson_id)
            if record is None:
                print(f"SKIP {job.lesson_id}: no lesson.json here")
                continue
            problems = []
            local = recordings.folder(job.lesson_id)
            files = [(m.name, m.size, m.sha256) for m in record.media() if m.size]
            record_path = local / RECORD
            files.append((RECORD, record_path.stat().st_size, file_sha256(record_path)))
            if target is not None:
                problems += await library_problems(target, PurePosixPath(job.folder), files)
            for name, _, digest in files:
                path = local / name
                if name != RECORD and path.is_file() and file_sha256(path) != digest:
                    problems.append(f"local {name}: SHA-256 differs from lesson.json")
            if problems:
                bad += 1
                print(f"FAIL {job.lesson_id}: " + "; ".join(problems))
            else:
                print(f"OK   {job.lesson_id} ({len(files)} files)")
    finally:
        jobs.close()
    print(f"{len(chosen) - bad} of {len(chosen)} archived lesson(s) check out")
    return 1 if bad else 0


def verify(config: Config, lessons: list[str]) -> int:
    return asyncio.run(_verify(config, lessons))
