"""Pan/tilt, zoom and focus of a UVC camera through its V4L2 node, the controls the kernel's
uvcvideo driver exposes. They work from a second file handle while another process streams
from the node, which UVC requests over pyusb cannot do (uvcvideo holds the interface).

Values are in the units of `capture.uvc` (uvcvideo passes UVC values through): pan and tilt
in arc seconds, zoom and focus on the camera's own scale. The ABI is that of
linux/videodev2.h and linux/v4l2-controls.h (VIDIOC_QUERYCTRL with struct v4l2_queryctrl,
VIDIOC_G_CTRL and VIDIOC_S_CTRL with struct v4l2_control).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, overload

from .discovery import describe_os_error
from .uvc import CONTROL_NAMES, ControlRange, NoCameraControl, Position, UvcError
from .v4l2abi import (
    V4L2_CID_FOCUS_ABSOLUTE,
    V4L2_CID_FOCUS_AUTO,
    V4L2_CID_PAN_ABSOLUTE,
    V4L2_CID_TILT_ABSOLUTE,
    V4L2_CID_ZOOM_ABSOLUTE,
    V4L2_CTRL_FLAG_DISABLED,
    V4L2_CTRL_FLAG_WRITE_ONLY,
    VIDIOC_G_CTRL,
    VIDIOC_QUERYCTRL,
    VIDIOC_S_CTRL,
    V4l2Control,
    V4l2Queryctrl,
)

Ioctl = Callable[[int, int, Any], object]
"""`fcntl.ioctl`'s shape: (fd, request, mutable buffer); raises OSError with the errno."""
Opener = Callable[[str], int]
"""A device node path → an open file descriptor (the head closes it with os.close)."""

_AXIS_IDS: dict[str, int] = {  # in the order of Position's fields
    "pan": V4L2_CID_PAN_ABSOLUTE,
    "tilt": V4L2_CID_TILT_ABSOLUTE,
    "zoom": V4L2_CID_ZOOM_ABSOLUTE,
    "focus": V4L2_CID_FOCUS_ABSOLUTE,
    "auto_focus": V4L2_CID_FOCUS_AUTO,
}
# capture.uvc's control names → their V4L2 controls; pan_tilt needs both.
_CONTROL_AXES: dict[str, tuple[str, ...]] = {
    "pan_tilt": ("pan", "tilt"),
    "zoom": ("zoom",),
    "focus": ("focus",),
    "auto_focus": ("auto_focus",),
}
_LABELS = {"pan_tilt": "pan/tilt", "zoom": "zoom", "focus": "focus", "auto_focus": "auto focus"}


def open_node(path: str) -> int:
    """The default opener: read-write, non-blocking (a second handle beside the stream)."""
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


@dataclass(frozen=True)
class _Query:
    """What VIDIOC_QUERYCTRL said of one control when the head was opened."""

    range: ControlRange
    flags: int


class V4l2Head:
    """Pan/tilt, zoom and focus of the camera behind one V4L2 node (`/dev/videoN`), with
    the surface of `capture.uvc.UvcCamera`; errors are its `UvcError`/`NoCameraControl`.

    `name` (e.g. the camera's identity) is used in messages; `ioctl` and `opener` are the
    lowest layer, injectable for tests."""

    def __init__(
        self,
        node: str,
        *,
        name: str | None = None,
        ioctl: Ioctl = fcntl.ioctl,
        opener: Opener = open_node,
    ) -> None:
        self.node = node
        self._label = f"camera {name} ({node})" if name else f"camera {node}"
        self._ioctl = ioctl
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._fd = opener(node)
        except OSError as exc:
            exc.filename = exc.filename or node
            raise UvcError(f"{self._label}: cannot open: {describe_os_error(exc)}") from exc
        try:
            self._queries = {
                axis: found for axis in _AXIS_IDS if (found := self._query(axis)) is not None
            }
        except BaseException:
            os.close(self._fd)
            raise
        self.controls: tuple[str, ...] = tuple(
            control
            for control in CONTROL_NAMES
            if all(axis in self._queries for axis in _CONTROL_AXES[control])
        )

    def __enter__(self) -> V4l2Head:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def has_ptz(self) -> bool:
        """True when the camera can pan/tilt or zoom."""
        return "pan_tilt" in self.controls or "zoom" in self.controls

    @overload
    def range(self, control: Literal["pan_tilt"]) -> tuple[ControlRange, ControlRange]: ...

    @overload
    def range(self, control: Literal["zoom", "focus"]) -> ControlRange: ...

    @overload
    def range(self, control: str) -> ControlRange | tuple[ControlRange, ControlRange]: ...

    def range(self, control: str) -> ControlRange | tuple[ControlRange, ControlRange]:
        """Minimum, maximum and step from VIDIOC_QUERYCTRL; for pan_tilt one per axis."""
        self._require(control)
        if control == "auto_focus":
            raise ValueError(f"{control} is on or off; it has no range")
        if control == "pan_tilt":
            return self._queries["pan"].range, self._queries["tilt"].range
        return self._queries[control].range

    def position(self) -> Position:
        """The current value of every control the camera has."""
        with self._lock:
            pan, tilt, zoom, focus, auto = (
                self._get(axis) if self._readable(axis) else None for axis in _AXIS_IDS
            )
            auto_focus = None if auto is None else bool(auto)
            return Position(pan=pan, tilt=tilt, zoom=zoom, focus=focus, auto_focus=auto_focus)

    def move(self, position: Position) -> Position:
        """Applies the fields that are not None, clamped to the range and snapped to its
        step, and returns where the camera then is.

        A focus turns auto focus off first (uvcvideo refuses a focus while auto focus is
        on); auto_focus=True leaves focus to the camera (the focus field is then not sent)."""
        needed = position.controls()
        for control in needed:
            self._require(control)  # NoCameraControl before anything moves
        with self._lock:
            # uvcvideo maps pan and tilt onto one UVC control and fills in the other axis.
            if position.pan is not None:
                self._set("pan", self._queries["pan"].range.fit(position.pan))
            if position.tilt is not None:
                self._set("tilt", self._queries["tilt"].range.fit(position.tilt))
            if position.zoom is not None:
                self._set("zoom", self._queries["zoom"].range.fit(position.zoom))
            if position.auto_focus is True:
                self._set("auto_focus", 1)
            elif position.focus is not None:
                if "auto_focus" in self.controls:
                    self._set("auto_focus", 0)
                self._set("focus", self._queries["focus"].range.fit(position.focus))
            elif position.auto_focus is False:
                self._set("auto_focus", 0)
            return self.position()

    def nudge(self, *, pan: int = 0, tilt: int = 0, zoom: int = 0) -> Position:
        """Moves by whole steps of the control's step (pan=-2: two steps left), within the
        range; returns where the camera then is."""
        if pan or tilt:
            self._require("pan_tilt")
        if zoom:
            self._require("zoom")
        with self._lock:
            for axis, steps in (("pan", pan), ("tilt", tilt), ("zoom", zoom)):
                if steps:
                    span = self._queries[axis].range
                    self._set(axis, span.fit(self._get(axis) + steps * max(span.resolution, 1)))
            return self.position()

    def close(self) -> None:
        """Closes the file handle (idempotent); the stream on the node goes on."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)

    # -- ioctls ----------------------------------------------------------------------------

    def _require(self, control: str) -> None:
        if control not in _CONTROL_AXES:
            raise ValueError(f"unknown control {control!r} (one of {', '.join(CONTROL_NAMES)})")
        if control not in self.controls:
            raise NoCameraControl(f"{self._label} has no {_LABELS[control]}")

    def _readable(self, axis: str) -> bool:
        """The axis belongs to a control the camera has (pan without tilt is none) and the
        driver lets it be read."""
        control = "pan_tilt" if axis in ("pan", "tilt") else axis
        found = self._queries.get(axis)
        return (
            control in self.controls
            and found is not None
            and not found.flags & V4L2_CTRL_FLAG_WRITE_ONLY
        )

    def _query(self, axis: str) -> _Query | None:
        """VIDIOC_QUERYCTRL; None when the driver lacks the control or has it disabled."""
        query = V4l2Queryctrl(id=_AXIS_IDS[axis])
        try:
            self._call(VIDIOC_QUERYCTRL, query)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return None
            raise self._explain(exc, f"VIDIOC_QUERYCTRL {axis}") from exc
        if query.flags & V4L2_CTRL_FLAG_DISABLED:
            return None
        return _Query(ControlRange(query.minimum, query.maximum, query.step), query.flags)

    def _get(self, axis: str) -> int:
        control = V4l2Control(id=_AXIS_IDS[axis])
        try:
            self._call(VIDIOC_G_CTRL, control)
        except OSError as exc:
            raise self._explain(exc, f"VIDIOC_G_CTRL {axis}") from exc
        return int(control.value)

    def _set(self, axis: str, value: int) -> int:
        """VIDIOC_S_CTRL; the value the driver took (uvcvideo writes back what it set)."""
        control = V4l2Control(id=_AXIS_IDS[axis], value=value)
        try:
            self._call(VIDIOC_S_CTRL, control)
        except OSError as exc:
            raise self._explain(exc, f"VIDIOC_S_CTRL {axis}={value}", axis) from exc
        return int(control.value)

    def _call(self, request: int, buffer: ctypes.Structure) -> None:
        if self._closed:
            raise UvcError(f"{self._label} is closed")
        self._ioctl(self._fd, request, buffer)

    def _explain(self, exc: OSError, what: str, axis: str | None = None) -> UvcError:
        reason = exc.strerror or os.strerror(exc.errno or 0)
        if exc.errno == errno.EACCES:
            why = (
                "auto focus owns the focus"
                if axis == "focus"
                else "the control is inactive (its automatic mode is on) or read-only"
            )
            return UvcError(f"{self._label} refused {what}: {why}")
        if exc.errno == errno.ERANGE:
            return UvcError(f"{self._label} refused {what}: value out of range")
        if exc.errno == errno.EINVAL:
            return UvcError(f"{self._label} refused {what}: the driver rejects the value")
        if exc.errno == errno.EBUSY:
            return UvcError(f"{self._label}: {what} failed: another program holds the control")
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return UvcError(f"{self._label} is gone (unplugged?): {what} failed")
        if exc.errno == errno.ENOTTY:
            return UvcError(f"{self._label}: {self.node} is not a V4L2 device ({what} failed)")
        if exc.errno in (errno.EIO, errno.EPIPE, errno.EPROTO, errno.EILSEQ, errno.ETIMEDOUT):
            return UvcError(f"{self._label} did not take {what}: the camera failed it ({reason})")
        return UvcError(f"{self._label}: {what} failed: {reason}")
