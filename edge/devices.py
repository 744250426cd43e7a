"""What capture hardware this machine has, with identities to paste into a room file."""

from __future__ import annotations

import os
from pathlib import Path


def list_devices() -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for folder, label in (("/dev/v4l/by-id", "by-id"), ("/dev/v4l/by-path", "by-path")):
        base = Path(folder)
        if base.is_dir():
            for link in sorted(base.iterdir()):
                found.append(
                    {
                        "type": "video",
                        "id": str(link),
                        "device": os.path.realpath(link),
                        "note": label,
                    }
                )
    cards = Path("/proc/asound/cards")
    if cards.exists():
        for line in cards.read_text().splitlines():
            parts = line.split("[", 1)
            if len(parts) == 2 and parts[0].strip().isdigit():
                short = parts[1].split("]", 1)[0].strip()
                found.append(
                    {
                        "type": "microphone",
                        "id": f"plughw:CARD={short},DEV=0",
                        "device": f"card {parts[0].strip()}",
                        "note": line.split(":", 1)[-1].strip(),
                    }
                )
    x11 = Path("/tmp/.X11-unix")
    if x11.is_dir():
        for socket in sorted(x11.iterdir()):
            if socket.name.startswith("X") and socket.name[1:].isdigit():
                found.append(
                    {
                        "type": "display",
                        "id": f":{socket.name[1:]}.0",
                        "device": str(socket),
                        "note": "x11grab",
                    }
                )
    return found
