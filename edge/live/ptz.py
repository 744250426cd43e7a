"""A room's PTZ camera: steering through its V4L2 node or over USB (UVC), and named presets
kept in the room file."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from capture.discovery import resolve_camera
from capture.source import SourceError
from capture.uvc import NoCameraControl, Position, UvcCamera, UvcError
from capture.v4l2ctl import Ioctl, V4l2Head
from edge.config.files import write_atomically
from edge.config.settings import PresetSettings, RoomSettings
from edge.config.tomledit import set_table

logger = logging.getLogger(__name__)
T = TypeVar("T")

PRESET_LABELS = {"board": "Bảng", "teacher": "Giáo viên", "class": "Cả lớp"}
PAN_STEP_ARCSEC = 5 * 3600  # one press of an arrow: about 5 degrees
ZOOM_STEPS = 10  # presses from widest to closest
PRESET_NAME = re.compile(r"[a-z0-9_-]{1,24}")

Head = UvcCamera | V4l2Head


def _controls(camera: Head) -> tuple[str, ...]:
    return camera.controls if isinstance(camera, V4l2Head) else camera.info.controls


class CameraControlError(Exception):
    """Why the camera cannot be steered or a preset saved; `message` is for staff (vi)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class CameraControl:
    """Steers `identity` (usb:VID:PID[:SERIAL]) and saves presets into `room_file`.

    Requests block, so they run in a thread, one at a time; the camera is opened on first
    use and again after an error (it was unplugged). It is steered through the V4L2 node
    that `resolve` finds for the identity (uvcvideo's controls work while the camera
    streams), else over USB with UVC requests (no node: uvcvideo is not bound, so the USB
    interface is free); when one way fails the other is tried."""

    def __init__(
        self,
        room: str,
        identity: str | None,
        presets: dict[str, PresetSettings],
        room_file: Path | None,
        *,
        backend: object | None = None,
        resolve: Callable[[str], str] = resolve_camera,
        ioctl: Ioctl = fcntl.ioctl,
    ) -> None:
        self.room, self.identity = room, identity
        self.presets = dict(presets)
        self.room_file = room_file
        self._backend = backend
        self._resolve, self._ioctl = resolve, ioctl
        self._camera: Head | None = None
        self._lock = asyncio.Lock()
        self.error: str | None = None

    def labels(self) -> dict[str, str]:
        return {
            name: preset.label or PRESET_LABELS.get(name, name)
            for name, preset in self.presets.items()
        }

    async def state(self) -> dict[str, object]:
        """Whether the camera can be steered, its controls and position, the presets."""
        base: dict[str, object] = {"identity": self.identity, "presets": self.labels()}
        if self.identity is None:
            return {
                **base,
                "available": False,
                "controls": [],
                "position": None,
                "via": None,
                "error": "Camera này không điều khiển được qua USB (không có PTZ).",
            }
        try:
            camera, position = await self._call(lambda c: (c, c.position()))
        except CameraControlError as exc:
            return {
                **base,
                "available": False,
                "controls": [],
                "position": None,
                "via": None,
                "error": exc.message,
            }
        controls = _controls(camera)
        return {
            **base,
            "available": "pan_tilt" in controls or "zoom" in controls,
            "controls": list(controls),
            "position": position.as_json(),
            "via": "v4l2" if isinstance(camera, V4l2Head) else "usb",
            "error": None,
        }

    async def nudge(self, *, pan: int = 0, tilt: int = 0, zoom: int = 0) -> Position:
        """Arrow presses: pan/tilt about 5° a press, zoom a tenth of its range."""

        def move(camera: Head) -> Position:
            steps = {}
            if pan or tilt:
                pan_range, tilt_range = camera.range("pan_tilt")
                steps["pan"] = pan * max(PAN_STEP_ARCSEC // max(pan_range.resolution, 1), 1)
                steps["tilt"] = tilt * max(PAN_STEP_ARCSEC // max(tilt_range.resolution, 1), 1)
            if zoom:
                span = camera.range("zoom")
                whole = (span.maximum - span.minimum) // max(span.resolution, 1)
                steps["zoom"] = zoom * max(whole // ZOOM_STEPS, 1)
            return camera.nudge(**steps)

        return await self._call(move)

    async def recall(self, name: str) -> Position:
        preset = self.presets.get(name)
        if preset is None:
            known = ", ".join(self.presets) or "chưa lưu vị trí nào"
            raise CameraControlError(f"Không có vị trí {name!r} (có: {known}).", 404)
        target = Position(
            pan=preset.pan,
            tilt=preset.tilt,
            zoom=preset.zoom,
            focus=preset.focus,
            auto_focus=preset.auto_focus,
        )
        return await self._call(lambda camera: camera.move(target))

    async def save(self, name: str, label: str = "") -> Position:
        """The camera's current position becomes preset `name`, in the room file too."""
        if not PRESET_NAME.fullmatch(name):
            raise CameraControlError(
                f"Tên vị trí {name!r} không hợp lệ (chữ thường, số, - và _; vd. board).", 400
            )
        position = await self._call(lambda camera: camera.position())
        values: dict[str, str | int | bool] = {}
        if label or name not in PRESET_LABELS:
            values["label"] = label or name
        values.update({k: v for k, v in position.as_json().items() if isinstance(v, int | bool)})
        try:
            preset = PresetSettings.model_validate(values)
        except ValidationError as exc:
            raise CameraControlError(
                f"Vị trí không hợp lệ: {exc.errors()[0]['msg']}", 400
            ) from None
        if self.room_file is not None:
            await asyncio.to_thread(self._write_preset, name, values)
        self.presets[name] = preset
        logger.info("room %s: preset %s saved: %s", self.room, name, values)
        return position

    def _write_preset(self, name: str, values: dict[str, str | int | bool]) -> None:
        assert self.room_file is not None
        try:
            text = set_table(self.room_file.read_text(encoding="utf-8"), f"presets.{name}", values)
            RoomSettings.model_validate(tomllib.loads(text))  # never write a broken room file
            write_atomically(self.room_file, text)
        except (OSError, ValueError, ValidationError) as exc:
            raise CameraControlError(f"Không lưu được vào {self.room_file}: {exc}", 500) from None

    def _open(self, identity: str) -> Head:
        """The V4L2 node's head when the identity resolves to one, else (or when that fails)
        UVC over USB; UvcError with both reasons when neither opens."""
        no_node = ""
        try:
            node = self._resolve(identity)
        except (SourceError, OSError) as exc:
            node, no_node = None, str(exc)
        if node is not None:
            try:
                return V4l2Head(node, name=identity, ioctl=self._ioctl)
            except UvcError as exc:
                no_node = str(exc)
        camera: UvcCamera | None = None
        try:
            camera = UvcCamera(identity, backend=self._backend)
            camera.position()  # the first request claims the interface: busy shows here
        except UvcError as exc:
            if camera is not None:
                camera.close()
            raise UvcError(f"{exc} (V4L2: {no_node})") from exc
        return camera

    async def _call(self, action: Callable[[Head], T]) -> T:
        if self.identity is None:
            raise CameraControlError("Camera này không điều khiển được qua USB (không có PTZ).")
        identity = self.identity
        async with self._lock:

            def run() -> T:
                if self._camera is None:
                    self._camera = self._open(identity)
                return action(self._camera)

            try:
                result = await asyncio.to_thread(run)
            except NoCameraControl as exc:
                raise CameraControlError(f"Camera không có chức năng này: {exc}", 409) from None
            except UvcError as exc:
                camera, self._camera = self._camera, None
                if camera is not None:
                    await asyncio.to_thread(camera.close)
                self.error = str(exc)
                raise CameraControlError(f"Không điều khiển được camera: {exc}", 503) from None
            self.error = None
            return result

    async def close(self) -> None:
        async with self._lock:
            camera, self._camera = self._camera, None
            if camera is not None:
                await asyncio.to_thread(camera.close)
