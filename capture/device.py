"""Real capture devices read with PyAV (libavdevice): V4L2 cameras and HDMI cards,
the X11 screen of the smart board, and ALSA microphones."""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Literal

import av

from .discovery import Ioctl, resolve_camera
from .source import Source, SourceError

V4L2InputFormat = Literal["mjpeg", "yuyv422", "h264"]

logger = logging.getLogger(__name__)


class DeviceSource(Source):
    """Demuxes and decodes one stream of a libavdevice input until stopped."""

    format_name: str

    def __init__(self, name: str, url: str, options: dict[str, str]) -> None:
        super().__init__(name)
        self.url = url
        self.options = options

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(self.url, format=self.format_name, options=self.options, timeout=5.0)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.format_name} {self.url}: {exc}") from exc

    def _run(self) -> None:
        container = self._open()
        try:
            stream: av.VideoStream | av.AudioStream
            if self.kind == "video":
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
            else:
                stream = container.streams.audio[0]
            self.state = "running"
            self.error = None
            for packet in container.demux(stream):
                if self.stopping:
                    return
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame | av.AudioFrame):
                        self._emit(frame, time.monotonic())
            raise SourceError(f"{self.url}: end of stream")
        finally:
            container.close()


class V4L2Camera(DeviceSource):
    """A UVC camera or HDMI capture card via `video4linux2`, named by a stable identity
    (`usb:VID:PID[:SERIAL]`, `/dev/v4l/by-id/...` or `/dev/v4l/by-path/...`).

    The identity is resolved to its `/dev/videoN` at every (re)open, so a camera that comes
    back as another node after a replug is found again; `root` and `ioctl` are for tests.
    """

    kind = "video"
    format_name = "video4linux2"

    def __init__(
        self,
        name: str,
        device: str,
        *,
        input_format: V4L2InputFormat = "mjpeg",
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        root: Path = Path("/"),
        ioctl: Ioctl = fcntl.ioctl,
    ) -> None:
        options = {
            "input_format": input_format,
            "video_size": f"{width}x{height}",
            "framerate": f"{fps:g}",
        }
        super().__init__(name, device, options)
        self.device = device
        self._root = root
        self._ioctl = ioctl

    def resolve(self) -> str:
        """The capture node the identity names now; `DeviceMissing` when it is not plugged in."""
        return resolve_camera(self.device, root=self._root, ioctl=self._ioctl)

    def _open(self) -> av.container.InputContainer:
        self.url = self.resolve()
        try:
            return super()._open()
        except SourceError as exc:
            raise SourceError(f"camera {self.device}: {exc}") from exc


class ScreenGrab(DeviceSource):
    """The X11 screen (`:0.0`, optionally `+x,y`) via `x11grab`; the smart board's picture."""

    kind = "video"
    format_name = "x11grab"

    def __init__(
        self,
        name: str,
        display: str = ":0.0",
        *,
        fps: float = 5.0,
        width: int | None = None,
        height: int | None = None,
        draw_mouse: bool = True,
    ) -> None:
        options = {"framerate": f"{fps:g}", "draw_mouse": "1" if draw_mouse else "0"}
        if width and height:
            options["video_size"] = f"{width}x{height}"
        super().__init__(name, display, options)


SYSTEM_ALSA_CONFIG = Path("/usr/share/alsa/alsa.conf")


class AlsaMicrophone(DeviceSource):
    """An ALSA capture device (`default`, `hw:CARD=...`, `plughw:...`).

    PyAV's wheels bundle an alsa-lib that looks for its configuration under a build
    path; without `ALSA_CONFIG_PATH` it knows no device names at all, so we point it
    at the system's file.
    """

    kind = "audio"
    format_name = "alsa"

    def __init__(
        self, name: str, device: str = "default", *, sample_rate: int = 48000, channels: int = 1
    ) -> None:
        super().__init__(name, device, {"sample_rate": str(sample_rate), "channels": str(channels)})
        if "ALSA_CONFIG_PATH" not in os.environ and SYSTEM_ALSA_CONFIG.exists():
            os.environ["ALSA_CONFIG_PATH"] = str(SYSTEM_ALSA_CONFIG)
        quiet_alsa()


# alsa-lib's error handler: void (*)(const char *file, int line, const char *function,
# int err, const char *fmt, ...); the variadic rest is ignored (the caller cleans up)
_AlsaErrorHandler = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)


def _ignore_alsa_error(file: bytes, line: int, function: bytes, err: int, fmt: bytes) -> None:
    """alsa-lib's own messages (it prints them on stderr at every retry of a missing
    device, once a second): the source's error says what failed, logged once a minute."""


_alsa_error = _AlsaErrorHandler(_ignore_alsa_error)  # kept: alsa-lib holds the pointer


_alsa_quiet: list[str] = []


def quiet_alsa() -> list[str]:
    """Route alsa-lib's error messages (which it writes to stderr itself) to nowhere, in
    the alsa-lib PyAV loaded (its wheels bundle one: found among the process's mapped
    libraries) and the system's. Idempotent; the libraries it quieted."""
    if _alsa_quiet:
        return _alsa_quiet
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    paths = {line.split()[-1] for line in maps.splitlines() if "/libasound" in line}
    system = ctypes.util.find_library("asound")
    for path in sorted(paths) + ([system] if system else []):
        try:
            library = ctypes.CDLL(path)
            library.snd_lib_error_set_handler(_alsa_error)
        except (OSError, AttributeError) as exc:
            logger.debug("alsa-lib %s not quieted: %s", path, exc)
            continue
        _alsa_quiet.append(path)
    return _alsa_quiet
