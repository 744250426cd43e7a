"""What capture hardware this machine has (`classroom-edge devices`), each with the stable
identity and the room-file lines to paste."""

from __future__ import annotations

import fcntl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from capture.discovery import (
    Display,
    Ioctl,
    Microphone,
    UsbCameraInfo,
    VideoDevice,
    list_displays,
    list_microphones,
    list_video_devices,
)

CAMERA_LIMIT = (1280, 720, 30.0)  # the camera's top rendition: capture no more than that
BOARD_LIMIT = (1920, 1080, 30.0)  # an HDMI card carries the board: text wants pixels
GROUPS = (
    ("camera", "Cameras"),
    ("capture-card", "Capture cards"),
    ("microphone", "Microphones"),
    ("display", "Displays"),
)


@dataclass
class Inventory:
    """What `discover` found, and why some information is missing (e.g. USB not scanned)."""

    videos: list[VideoDevice] = field(default_factory=list)
    microphones: list[Microphone] = field(default_factory=list)
    displays: list[Display] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> list[dict[str, object]]:
        """The JSON of `classroom-edge devices --json`: `type`, `id`, `name`, ..., `config`."""
        return (
            [{**v.as_json(), "config": video_snippet(v)} for v in self.videos]
            + [{**m.as_json(), "config": mic_snippet(m)} for m in self.microphones]
            + [{**d.as_json(), "config": display_snippet(d)} for d in self.displays]
        )


def discover(
    root: Path = Path("/"),
    *,
    ioctl: Ioctl = fcntl.ioctl,
    usb_cameras: Sequence[UsbCameraInfo] | None = None,
) -> Inventory:
    """Cameras, capture cards, microphones and displays under `root`.

    `usb_cameras` default: pyusb's view of the real bus when `root` is `/`, else none.
    """
    warnings: list[str] = []
    if usb_cameras is None:
        usb_cameras = _scan_usb(warnings) if root == Path("/") else ()
    videos = list_video_devices(root, ioctl=ioctl, usb_cameras=usb_cameras)
    return Inventory(
        videos=sorted(videos, key=lambda v: v.kind != "camera"),
        microphones=list_microphones(root),
        displays=list_displays(root),
        warnings=warnings,
    )


def list_devices(root: Path = Path("/")) -> list[dict[str, object]]:
    """The JSON of `classroom-edge devices --json`."""
    return discover(root).as_json()


def _scan_usb(warnings: list[str]) -> Sequence[UsbCameraInfo]:
    try:
        from capture.uvc import find_usb_cameras

        return find_usb_cameras()
    except Exception as exc:  # no libusb, no permission: the V4L2 side still works
        warnings.append(f"USB not scanned ({exc}): UVC versions and camera controls unknown")
        return ()


def _fps(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.3f}".rstrip("0")


def video_snippet(video: VideoDevice) -> str:
    """The room file's `[camera]` (a camera) or `[board]` (a capture card) for this device."""
    table, (max_width, max_height, max_fps) = (
        ("camera", CAMERA_LIMIT) if video.kind == "camera" else ("board", BOARD_LIMIT)
    )
    lines: list[str] = []
    if video.kind == "capture-card":
        lines.append("# an HDMI camera on this card? then use [camera] instead of [board]")
    if not video.identity.startswith(("usb:", "/dev/v4l/")):
        lines.append(
            f"# no stable name for this device (no udev links): {video.identity} can change"
        )
    lines += [f"[{table}]", 'kind = "v4l2"', f'device = "{video.identity}"']
    mode = video.best_mode(max_width=max_width, max_height=max_height, max_fps=max_fps)
    if mode is not None:
        lines += [
            f'input_format = "{mode.input_format}"',
            f"width = {mode.width}",
            f"height = {mode.height}",
            f"fps = {_fps(mode.fps)}",
        ]
    elif video.error:
        lines.append(f"# formats unknown ({video.error}): check input_format, width, height, fps")
    else:
        lines.append("# no mjpeg, yuyv422 or h264 mode fits: check input_format, width, height")
    if (
        video.usb is not None
        and video.usb.controls
        and {"pan_tilt", "zoom"} & set(video.usb.controls)
    ):
        lines.append("# it can pan/tilt/zoom: name positions in [presets.NAME] tables")
    return "\n".join(lines)


def mic_snippet(mic: Microphone) -> str:
    return f'[mic]\nkind = "alsa"\ndevice = "{mic.identity}"'


def display_snippet(display: Display) -> str | None:
    if display.kind != "x11grab":
        return None  # a DRM connector tells what is plugged in; the board is grabbed from X
    return f'[board]\nkind = "x11grab"\ndisplay = "{display.identity}"\nfps = 5'


def _video_lines(video: VideoDevice) -> list[str]:
    facts = [video.node or "no /dev/video node"]
    facts += [x for x in (video.driver, video.bus_info) if x]
    if video.usb is not None:
        facts.append(f"USB {video.usb.model} on bus {video.usb.bus}")
        if video.usb.uvc_version:
            facts.append(f"UVC {video.usb.uvc_version}")
        if video.usb.controls is not None:
            facts.append("controls: " + (", ".join(video.usb.controls) or "none"))
    lines = ["    " + "; ".join(facts)]
    lines += [f"    by-id: {link}" for link in video.by_id]
    lines += [f"    by-path: {link}" for link in video.by_path]
    for fmt in video.formats:
        modes = [
            f"{s.width}x{s.height}@{_fps(s.fps[0])}" if s.fps else f"{s.width}x{s.height}"
            for s in fmt.sizes
        ]
        shown = " ".join(modes[:8]) + (f" (+{len(modes) - 8} more)" if len(modes) > 8 else "")
        extra = f" [{fmt.size_range}]" if fmt.size_range else ""
        lines.append(f"    {fmt.input_format}: {shown or 'no sizes'}{extra}")
    if video.error:
        lines.append(f"    problem: {video.error}")
    return lines


def _entry(name: str, identity: str, details: list[str], config: str | None) -> list[str]:
    lines = [f"  {name}  —  {identity}", *details]
    if config:
        lines.append("    paste into the room file:")
        lines += [f"      {line}" for line in config.splitlines()]
    return [*lines, ""]


def format_text(inventory: Inventory) -> str:
    """The text of `classroom-edge devices`: grouped by type, each with the lines to paste."""
    groups: dict[str, list[list[str]]] = {kind: [] for kind, _ in GROUPS}
    for video in inventory.videos:
        groups[video.kind].append(
            _entry(video.name, video.identity, _video_lines(video), video_snippet(video))
        )
    for mic in inventory.microphones:
        where = f"    ALSA card {mic.card} ({mic.card_id}), device {mic.device}"
        if mic.usb_id:
            where += f"; USB {mic.usb_id}"
        groups["microphone"].append(_entry(mic.name, mic.identity, [where], mic_snippet(mic)))
    for display in inventory.displays:
        if display.kind == "drm":
            state = {None: "unknown", True: "connected", False: "disconnected"}[display.connected]
            mode = f", preferred mode {display.modes[0]}" if display.modes else ""
            details = [f"    monitor output: {state}{mode}"]
        else:
            details = [f"    X11 socket {display.path} (x11grab)"]
        groups["display"].append(
            _entry(display.name, display.identity, details, display_snippet(display))
        )
    out: list[str] = []
    if not any(groups.values()):
        out.append("no cameras, capture cards, microphones or displays found")
    for kind, title in GROUPS:
        entries = groups[kind]
        if not entries:
            out += [f"{title}: none found", ""]
            continue
        out.append(f"{title} ({len(entries)})")
        for entry in entries:
            out += entry
    out += [f"note: {warning}" for warning in inventory.warnings]
    return "\n".join(out).rstrip("\n") + "\n"
