"""`lesson.mp4`: one file for simple sharing, the board large with the camera inset and
the classroom sound, made after the lesson by Debian's `ffmpeg` at low priority.

The two source files stay the archive of record; without ffmpeg there is no composed
copy and nothing else changes. Each part is composed on its own (the board and the
camera aligned by their offsets in `lesson.json`), then the parts are joined.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from capture.mux import file_sha256, probe
from edge.recording.commands import last_line, run_command
from edge.recording.recordings import (
    COMPOSED,
    PRESENTATION,
    PRESENTER,
    LessonRecord,
    MediaFile,
    Part,
)

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 1280, 720  # the board, large
INSET_WIDTH, INSET_HEIGHT, MARGIN = 320, 180, 16  # the camera, bottom right
FPS = 15
LIMIT_SECONDS = 4 * 3600


class ComposeError(RuntimeError):
    pass


class Composer:
    def __init__(self, *, nice: int = 19, binary: str = "ffmpeg") -> None:
        self.nice = nice
        self.binary = shutil.which(binary)

    @property
    def available(self) -> bool:
        return self.binary is not None

    def _part_command(self, folder: Path, part: Part, out: Path) -> list[str]:
        assert self.binary is not None
        files = {f.kind: f for f in part.files if (folder / f.name).is_file() and f.size}
        board, camera = files.get(PRESENTATION), files.get(PRESENTER)
        if board is None and camera is None:
            raise ComposeError(f"part {part.number}: no files")
        command = [self.binary, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        first = min(f.offset for f in files.values())
        inputs = [f for f in (board, camera) if f is not None]
        for media in inputs:  # shift each to where it starts in the part
            command += ["-itsoffset", f"{media.offset - first:.3f}", "-i", str(folder / media.name)]
        canvas = f"scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=decrease,"
        canvas += f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2,fps={FPS},format=yuv420p"
        pictured = camera is not None and any(t.startswith("camera") for t in camera.tracks)
        if board is None and not pictured:
            raise ComposeError(f"part {part.number}: no picture")
        if board is not None and pictured:
            inset = f"scale={INSET_WIDTH}:{INSET_HEIGHT},fps={FPS}"
            graph = (
                f"[0:v]{canvas}[board];[1:v]{inset}[camera];"
                f"[board][camera]overlay=W-w-{MARGIN}:H-h-{MARGIN}:eof_action=pass[v]"
            )
            command += ["-filter_complex", graph, "-map", "[v]"]
        else:  # the one picture there is (board, or camera), full size
            command += ["-filter_complex", f"[0:v]{canvas}[v]", "-map", "[v]"]
        sound = len(inputs) - 1 if camera is not None and "mic" in camera.tracks else None
        if sound is not None:
            command += ["-map", f"{sound}:a?", "-c:a", "aac", "-b:a", "64k", "-ac", "1"]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "27", "-g", str(FPS * 4)]
        command += ["-movflags", "+faststart", str(out)]
        return command

    async def _run(self, command: list[str]) -> None:
        prefix = ["nice", "-n", str(self.nice)] if self.nice and shutil.which("nice") else []
        if self.nice == 19 and shutil.which("chrt"):
            # the idle scheduling class: the CPU only when nothing else wants it (nice 19
            # still took 44 % of a core from 120 viewers' sending, bench/pressure.py)
            prefix += ["chrt", "--idle", "0"]
        if shutil.which("ionice"):
            prefix += ["ionice", "-c", "3"]  # idle I/O: never in a live lesson's way
        code, _, err = await run_command([*prefix, *command], LIMIT_SECONDS)
        if code != 0:
            raise ComposeError(last_line(err, f"ffmpeg exit {code}"))

    async def compose(self, folder: Path, record: LessonRecord) -> MediaFile:
        """Make `lesson.mp4` in `folder`; raises `ComposeError`."""
        if self.binary is None:
            raise ComposeError("ffmpeg is not installed (apt-get install ffmpeg)")
        parts = [p for p in record.parts if any(f.size for f in p.files)]
        if not parts:
            raise ComposeError("nothing recorded")
        out = folder / f"{COMPOSED}.mp4"
        pieces = [folder / f".compose-{p.number}.mp4" for p in parts]
        listing = folder / ".compose.txt"
        try:
            for part, piece in zip(parts, pieces, strict=True):
                await self._run(self._part_command(folder, part, piece))
            aside = folder / ".lesson.mp4"
            if len(pieces) == 1:
                pieces[0].replace(aside)
            else:
                listing.write_text("".join(f"file '{p.name}'\n" for p in pieces))
                assert self.binary is not None
                await self._run(
                    [
                        self.binary,
                        "-hide_banner",
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-y",
                        "-f",
                        "concat",
                        "-safe",
                        "0",
                        "-i",
                        str(listing),
                        "-c",
                        "copy",
                        "-movflags",
                        "+faststart",
                        "-f",
                        "mp4",
                        str(aside),
                    ]
                )
            duration, _ = await asyncio.to_thread(probe, aside)
            digest = await asyncio.to_thread(file_sha256, aside)
            aside.replace(out)
        finally:
            for leftover in (*pieces, listing, folder / ".lesson.mp4"):
                leftover.unlink(missing_ok=True)
        return MediaFile(
            name=out.name,
            kind=COMPOSED,
            tracks=["composed"],
            size=out.stat().st_size,
            sha256=digest,
            duration=round(duration, 3),
        )
