"""The school's digital library (kho học liệu số): where recorded lessons are archived.

Layout: `<school>/<school year>/<class>/<YYYY-MM-DD>/<slot>-<subject> (<lesson id>)/`,
where the slot is `S3` for tiết 3 of the morning (sáng), `C2` for tiết 2 of the afternoon
(chiều), and the start time (`1430`) for an extra lesson; the lesson id makes the folder
one lesson's own (two extra lessons started in the same minute get two folders). A folder
whose `lesson.json` names another lesson is never written into. Targets:

- `DirectoryTarget`: a local or mounted (NAS, SMB) folder. A file is copied to
  `NAME.part` (an interrupted copy resumes where it stopped), checked by size and
  SHA-256 read back from the target, then renamed into place.
- `RcloneTarget`: any remote of the `rclone` command (WebDAV, SMB, S3, Google Drive,
  OneDrive...). A file already there with the right size is not sent again; a file is
  checked by size (`lsjson`) and SHA-256 (`hashsum`, downloading where the remote has no
  SHA-256 of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from capture.mux import file_sha256
from edge.recording.commands import last_line, run_command
from edge.recording.recordings import LessonRecord

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Called with the bytes of the current file that have reached the target so far."""

CHUNK = 1 << 18
DIRECTORY_NOT_FOUND = 3  # rclone's exit status
UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


class UploadError(RuntimeError):
    """An upload or a check that failed; the message says why (it goes to the log and
    `archive status`)."""


def school_year(day: dt.date) -> str:
    """Vietnamese school years start in September: 2026-11-25 is in 2026-2027."""
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}-{first + 1}"


def safe_name(text: str, fallback: str = "-") -> str:
    """A folder name that works on every file system and remote (NFC, no separators)."""
    cleaned = UNSAFE.sub("-", unicodedata.normalize("NFC", text)).strip(" .")
    return cleaned[:80] or fallback


def lesson_folder(record: LessonRecord, zone: dt.tzinfo) -> PurePosixPath:
    start = record.planned_start.astimezone(zone)
    if record.period is not None:
        slot = f"{'C' if record.session == 'afternoon' else 'S'}{record.period}"
    else:
        slot = f"{start:%H%M}"
    return PurePosixPath(
        safe_name(record.school),
        school_year(start.date()),
        safe_name(record.class_name),
        start.date().isoformat(),
        safe_name(f"{slot}-{record.subject or 'Tiết học'} ({record.lesson})"),
    )


def owner_of(text: str) -> str | None:
    """The lesson a `lesson.json` found in the library belongs to (None: unreadable)."""
    try:
        found = json.loads(text)
    except ValueError:
        return None
    lesson = found.get("lesson") if isinstance(found, dict) else None
    return lesson if isinstance(lesson, str) else None


class Target(Protocol):
    def describe(self) -> str:
        """Where it is, for people (logs, `archive status`)."""
        ...

    async def upload(
        self,
        source: Path,
        dest: PurePosixPath,
        *,
        size: int,
        sha256: str,
        progress: Progress,
        rate_bytes: int,
    ) -> None:
        """Put `source` at `dest` and check it there; raises `UploadError`."""
        ...

    async def verify(self, dest: PurePosixPath, *, size: int, sha256: str) -> str | None:
        """None if `dest` holds the file; else what is wrong."""
        ...

    async def read_small(self, dest: PurePosixPath) -> str | None:
        """The text of a small file at `dest` (a lesson.json); None when there is none."""
        ...

    async def probe(self) -> None:
        """Write, read back and delete a small file (the drill); raises `UploadError`."""
        ...


class DirectoryTarget:
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root)

    def _path(self, dest: PurePosixPath) -> Path:
        path = self.root.joinpath(*dest.parts)
        if ".." in dest.parts or dest.is_absolute():
            raise UploadError(f"not a library path: {dest}")
        return path

    async def upload(
        self,
        source: Path,
        dest: PurePosixPath,
        *,
        size: int,
        sha256: str,
        progress: Progress,
        rate_bytes: int,
    ) -> None:
        cancel = threading.Event()
        try:
            await asyncio.to_thread(
                self._copy, source, self._path(dest), size, sha256, progress, rate_bytes, cancel
            )
        finally:
            cancel.set()  # a cancelled upload's thread stops at its next chunk

    def _copy(
        self,
        source: Path,
        target: Path,
        size: int,
        sha256: str,
        progress: Progress,
        rate_bytes: int,
        cancel: threading.Event,
    ) -> None:
        try:
            if target.is_file() and target.stat().st_size == size and file_sha256(target) == sha256:
                progress(size)
                return  # already there (an upload whose bookkeeping a restart cut short)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            done = partial.stat().st_size if partial.is_file() else 0
            if done > size:
                done = 0
            started, sent = time.monotonic(), 0
            with source.open("rb") as reader, partial.open("r+b" if done else "wb") as writer:
                reader.seek(done)
                writer.seek(done)
                writer.truncate(done)
                while block := reader.read(CHUNK):
                    if cancel.is_set():
                        return
                    writer.write(block)
                    done += len(block)
                    sent += len(block)
                    progress(done)
                    if rate_bytes > 0:  # pace to the cap
                        ahead = sent / rate_bytes - (time.monotonic() - started)
                        if ahead > 0 and cancel.wait(ahead):
                            return
                writer.flush()
                os.fsync(writer.fileno())
            got = partial.stat().st_size
            if got != size or file_sha256(partial) != sha256:
                partial.unlink(missing_ok=True)  # start afresh next time
                raise UploadError(f"{target}: the copy does not match ({got} of {size} bytes)")
            partial.replace(target)
        except OSError as exc:
            raise UploadError(f"{target}: {exc.strerror or exc}") from None

    async def verify(self, dest: PurePosixPath, *, size: int, sha256: str) -> str | None:
        def check() -> str | None:
            path = self._path(dest)
            if not path.is_file():
                return "missing"
            if path.stat().st_size != size:
                return f"size {path.stat().st_size} (expected {size})"
            return None if file_sha256(path) == sha256 else "SHA-256 differs"

        try:
            return await asyncio.to_thread(check)
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"

    async def read_small(self, dest: PurePosixPath) -> str | None:
        def read() -> str | None:
            path = self._path(dest)
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None

        try:
            return await asyncio.to_thread(read)
        except OSError as exc:
            raise UploadError(f"{self._path(dest)}: {exc.strerror or exc}") from None

    async def probe(self) -> None:
        def run() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f".classroom-edge-probe-{secrets.token_hex(4)}"
            data = secrets.token_bytes(4096)
            try:
                with path.open("wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())  # a full or read-only disk says so here
                if path.read_bytes() != data:
                    raise UploadError(f"{self.root}: what was written did not read back")
            finally:
                path.unlink(missing_ok=True)
            if path.exists():
                raise UploadError(f"{self.root}: the probe file could not be deleted")

        try:
            await asyncio.to_thread(run)
        except OSError as exc:
            raise UploadError(f"{self.root}: {exc.strerror or exc}") from None


class RcloneTarget:
    def __init__(self, remote: str, *, binary: str = "rclone", config: Path | None = None) -> None:
        self.remote = remote.rstrip("/")
        self.binary = binary
        self.config = config

    def describe(self) -> str:
        return f"rclone {self.remote}"

    def _where(self, dest: PurePosixPath) -> str:
        base = self.remote if self.remote.endswith(":") else self.remote + "/"
        return base + str(dest)

    def _command(self, *args: str) -> list[str]:
        head = [self.binary]
        if self.config is not None:
            head += ["--config", str(self.config)]
        # fail fast: the archive queue does the retrying, with backoff
        return [
            *head,
            "--retries",
            "1",
            "--low-level-retries",
            "2",
            "--contimeout",
            "15s",
            "--timeout",
            "60s",
            *args,
        ]

    async def _exec(self, *args: str, limit: float) -> tuple[int, str, str]:
        """rclone's exit status, output and errors; `UploadError` when it cannot run."""
        try:
            return await run_command(self._command(*args), limit)
        except FileNotFoundError:
            raise UploadError(f"{self.binary}: not installed (apt-get install rclone)") from None
        except TimeoutError:
            raise UploadError(f"rclone {args[0]}: no answer within {limit:.0f} s") from None

    async def _run(self, *args: str, limit: float = 300) -> str:
        code, out, err = await self._exec(*args, limit=limit)
        if code != 0:
            raise UploadError(f"rclone {args[0]}: {last_line(err, f'exit {code}')}")
        return out

    async def upload(
        self,
        source: Path,
        dest: PurePosixPath,
        *,
        size: int,
        sha256: str,
        progress: Progress,
        rate_bytes: int,
    ) -> None:
        args = [
            "copyto",
            str(source),
            self._where(dest),
            "--size-only",
            "--stats",
            "1s",
            "--stats-one-line",
            "--use-json-log",
            "-v",
        ]
        if rate_bytes > 0:
            args += ["--bwlimit", f"{max(rate_bytes // 1024, 1)}K"]
        await self._copy(args, progress)
        problem = await self.verify(dest, size=size, sha256=sha256)
        if problem is not None:  # a file of the same size but other bytes: send it again
            await self._copy([*args, "--ignore-times"], progress)
            problem = await self.verify(dest, size=size, sha256=sha256)
        if problem is not None:
            raise UploadError(f"{self._where(dest)}: {problem}")
        progress(size)

    async def _copy(self, args: list[str], progress: Progress) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command(*args),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise UploadError(f"{self.binary}: not installed (apt-get install rclone)") from None
        last = ""
        try:
            assert process.stderr is not None
            async for line in process.stderr:
                text = line.decode(errors="replace")
                with contextlib.suppress(ValueError, AttributeError):
                    entry = json.loads(text)
                    if isinstance(entry.get("stats"), dict):
                        progress(int(entry["stats"].get("bytes", 0)))
                    if entry.get("level") in ("error", "critical"):
                        last = str(entry.get("msg", "")).strip()
            await process.wait()
        except asyncio.CancelledError:  # paused: the next attempt sends what is missing
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()
            raise
        if process.returncode != 0:
            raise UploadError(f"rclone copyto: {last or f'exit {process.returncode}'}")

    async def verify(self, dest: PurePosixPath, *, size: int, sha256: str) -> str | None:
        try:
            listing = json.loads(await self._run("lsjson", self._where(dest), limit=60) or "[]")
        except UploadError as exc:
            return f"missing ({exc})"
        except ValueError:
            return "unreadable listing"
        if not listing:
            return "missing"
        if int(listing[0].get("Size", -1)) != size:
            return f"size {listing[0].get('Size')} (expected {size})"
        try:
            out = await self._run("hashsum", "sha256", self._where(dest), limit=600)
        except UploadError:  # the remote keeps no SHA-256: read the file back
            out = await self._run("hashsum", "sha256", "--download", self._where(dest), limit=3600)
        got = out.split()[0] if out.split() else ""
        return None if got == sha256 else "SHA-256 differs"

    async def read_small(self, dest: PurePosixPath) -> str | None:
        code, out, err = await self._exec(
            "lsjson", "--files-only", self._where(dest.parent), limit=60
        )
        if code == DIRECTORY_NOT_FOUND:
            return None
        if code != 0:
            raise UploadError(f"rclone lsjson: {last_line(err, f'exit {code}')}")
        try:
            listing = json.loads(out or "[]")
        except ValueError:
            raise UploadError("rclone lsjson: unreadable listing") from None
        if not any(entry.get("Name") == dest.name for entry in listing):
            return None
        return await self._run("cat", self._where(dest), limit=60)

    async def probe(self) -> None:
        name = PurePosixPath(f".classroom-edge-probe-{secrets.token_hex(4)}")
        data = secrets.token_hex(2048).encode()  # text: `rclone cat` gives it back as such
        local = Path(os.environ.get("TMPDIR", "/tmp")) / str(name)
        local.write_bytes(data)
        try:
            digest = hashlib.sha256(data).hexdigest()
            await self.upload(
                local, name, size=len(data), sha256=digest, progress=lambda _: None, rate_bytes=0
            )
            try:
                back = await self._run("cat", self._where(name), limit=60)
                if back.encode() != data:
                    raise UploadError(f"{self._where(name)}: what was written did not read back")
            finally:
                await self._run("deletefile", self._where(name), limit=60)
        finally:
            local.unlink(missing_ok=True)
