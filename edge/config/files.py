"""Writing a file so that a crash or a power cut leaves the old one or the new one, never
half of either: written aside in the same folder, synced, renamed over, and (with
`sync_folder`) the folder synced so that the rename itself survives."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(
    path: Path, data: str | bytes, *, mode: int | None = None, sync_folder: bool = False
) -> None:
    """Replace `path` with `data`. `mode`: the new file's permissions (default: those of
    the file it replaces, else 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, aside = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(aside, mode)
        os.replace(aside, path)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    if sync_folder:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
