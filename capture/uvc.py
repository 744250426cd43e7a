"""UVC camera control over pyusb: discovery of USB video devices and pan/tilt, zoom and focus
of one camera, byte-exact to the USB Video Class 1.5 specification.

Values are in UVC units: pan and tilt in arc seconds (3600 = 1°), zoom as
wObjectiveFocalLength, focus as wFocusAbsolute (both camera-specific scales).

Limitation (Linux): control requests go to the VideoControl interface, which pyusb must
claim. While the kernel's uvcvideo driver is bound to it (the camera is in use through
V4L2), the claim fails with EBUSY and we say so; we never detach the driver, because that
would stop the picture.
"""

from __future__ import annotations

import contextlib
import errno
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, overload

import usb.core
import usb.util

CONTROL_NAMES = ("pan_tilt", "zoom", "focus", "auto_focus")

ControlName = Literal["pan_tilt", "zoom", "focus", "auto_focus"]
RequestName = Literal["cur", "min", "max", "res", "def"]
ControlValue = int | bool | tuple[int, int]

# USB Video Class 1.5, appendix A.
CC_VIDEO = 0x0E
SC_VIDEOCONTROL = 0x01
CS_INTERFACE = 0x24
VC_HEADER = 0x01
VC_INPUT_TERMINAL = 0x02
ITT_CAMERA = 0x0201
VC_REQUEST_ERROR_CODE_CONTROL = 0x02

REQUEST_TYPE_GET = 0xA1  # device-to-host | class | interface
REQUEST_TYPE_SET = 0x21  # host-to-device | class | interface
SET_CUR = 0x01
GET_CUR = 0x81
GET_MIN = 0x82
GET_MAX = 0x83
GET_RES = 0x84
GET_DEF = 0x87
_GET_CODES: dict[str, int] = {
    "cur": GET_CUR,
    "min": GET_MIN,
    "max": GET_MAX,
    "res": GET_RES,
    "def": GET_DEF,
}
_REQUEST_NAMES = {
    SET_CUR: "SET_CUR",
    GET_CUR: "GET_CUR",
    GET_MIN: "GET_MIN",
    GET_MAX: "GET_MAX",
    GET_RES: "GET_RES",
    GET_DEF: "GET_DEF",
}
# bRequestErrorCode of VC_REQUEST_ERROR_CODE_CONTROL (UVC 1.5, 4.2.1.2).
_REQUEST_ERRORS = {
    0x01: "not ready",
    0x02: "wrong state",
    0x03: "power",
    0x04: "out of range",
    0x05: "invalid unit",
    0x06: "invalid control",
    0x07: "invalid request",
    0x08: "invalid value within range",
}
_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class _Control:
    selector: int  # CT_*_CONTROL
    bit: int  # its bit in the camera terminal's bmControls (UVC 1.5, table 3-6)
    layout: str  # struct format of the control's parameter block
    requests: frozenset[str]  # the GET_* requests the control answers
    label: str  # for messages: "the camera has no pan/tilt"

    @property
    def size(self) -> int:
        return struct.calcsize(self.layout)


_ALL_GETS = frozenset(_GET_CODES)
_CONTROLS: dict[str, _Control] = {
    # CT_PANTILT_ABSOLUTE_CONTROL: signed dwPanAbsolute, signed dwTiltAbsolute.
    "pan_tilt": _Control(0x0D, 11, "<ii", _ALL_GETS, "pan/tilt"),
    # CT_ZOOM_ABSOLUTE_CONTROL: wObjectiveFocalLength.
    "zoom": _Control(0x0B, 9, "<H", _ALL_GETS, "zoom"),
    # CT_FOCUS_ABSOLUTE_CONTROL: wFocusAbsolute.
    "focus": _Control(0x06, 5, "<H", _ALL_GETS, "focus"),
    # CT_FOCUS_AUTO_CONTROL: bFocusAuto; only GET_CUR and GET_DEF (no range).
    "auto_focus": _Control(0x08, 17, "<B", frozenset({"cur", "def"}), "auto focus"),
}


class UvcError(Exception):
    """A UVC request failed or the camera is gone; the message says which and why."""


class NoCameraControl(UvcError):
    """The camera lacks the control asked for (e.g. it has no pan/tilt)."""


@dataclass(frozen=True)
class UsbCamera:
    """A USB video device (VideoControl interface) as found on the bus."""

    identity: str  # "usb:046d:0853" or "usb:046d:0853:SERIAL" when it has a serial
    vendor_id: int
    product_id: int
    serial: str | None
    manufacturer: str | None
    product: str | None
    bus: int
    address: int
    uvc_version: str  # bcdUVC, e.g. "1.50"
    controls: tuple[str, ...]  # subset of CONTROL_NAMES, in that order

    @property
    def has_ptz(self) -> bool:
        """True when the camera can pan/tilt or zoom."""
        return "pan_tilt" in self.controls or "zoom" in self.controls

    def as_json(self) -> dict[str, object]:
        """JSON-ready fields; vendor and product ids as 4-digit hex like lsusb."""
        return {
            "identity": self.identity,
            "vendor_id": f"{self.vendor_id:04x}",
            "product_id": f"{self.product_id:04x}",
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "bus": self.bus,
            "address": self.address,
            "uvc_version": self.uvc_version,
            "controls": list(self.controls),
            "has_ptz": self.has_ptz,
        }


@dataclass(frozen=True)
class Position:
    """Where the camera points; None where it lacks the control (or leaves it alone)."""

    pan: int | None = None  # arc seconds
    tilt: int | None = None  # arc seconds
    zoom: int | None = None
    focus: int | None = None
    auto_focus: bool | None = None

    def as_json(self) -> dict[str, object]:
        """The fields that are set (TOML has no null, so None fields are left out)."""
        return {name: value for name, value in self._fields() if value is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Position:
        """The inverse of as_json; ValueError naming the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"a position is a table of pan, tilt, zoom, focus, auto_focus, "
                f"not {type(data).__name__}"
            )
        unknown = sorted(set(data) - {"pan", "tilt", "zoom", "focus", "auto_focus"})
        if unknown:
            raise ValueError(
                f"unknown position key {unknown[0]!r} (expected pan, tilt, zoom, focus, auto_focus)"
            )
        numbers: dict[str, int | None] = {}
        for key in ("pan", "tilt", "zoom", "focus"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key}: {value!r} is not a whole number (UVC units)")
            numbers[key] = value
        auto_focus = data.get("auto_focus")
        if auto_focus is not None and not isinstance(auto_focus, bool):
            raise ValueError(f"auto_focus: {auto_focus!r} is not true or false")
        return cls(auto_focus=auto_focus, **numbers)

    def controls(self) -> list[str]:
        """The controls a move to this position sets (of CONTROL_NAMES); a focus is left
        to the camera when auto_focus is True."""
        needed = []
        if self.pan is not None or self.tilt is not None:
            needed.append("pan_tilt")
        if self.zoom is not None:
            needed.append("zoom")
        if self.focus is not None and self.auto_focus is not True:
            needed.append("focus")
        if self.auto_focus is not None:
            needed.append("auto_focus")
        return needed

    def _fields(self) -> Iterator[tuple[str, int | bool | None]]:
        yield "pan", self.pan
        yield "tilt", self.tilt
        yield "zoom", self.zoom
        yield "focus", self.focus
        yield "auto_focus", self.auto_focus


@dataclass(frozen=True)
class ControlRange:
    """GET_MIN, GET_MAX and GET_RES of one axis of a control."""

    minimum: int
    maximum: int
    resolution: int

    def fit(self, value: int) -> int:
        """Value clamped to [minimum, maximum] and snapped to a step of resolution."""
        step = max(self.resolution, 1)
        if self.maximum < self.minimum:
            return self.minimum
        clamped = min(max(value, self.minimum), self.maximum)
        snapped = self.minimum + (clamped - self.minimum + step // 2) // step * step
        return snapped if snapped <= self.maximum else snapped - step


def parse_identity(text: str) -> tuple[int, int, str | None]:
    """(vendor id, product id, serial or None) of "usb:VVVV:PPPP[:SERIAL]"."""
    expected = 'expected "usb:VID:PID" or "usb:VID:PID:SERIAL" with 4 hex digits each'
    parts = text.strip().split(":", 3)
    if len(parts) < 3 or parts[0].lower() != "usb":
        raise ValueError(f"{text!r} is not a USB camera identity ({expected})")
    ids: list[int] = []
    for label, part in (("vendor id", parts[1]), ("product id", parts[2])):
        if len(part) != 4 or any(c not in "0123456789abcdefABCDEF" for c in part):
            raise ValueError(f"{text!r}: {label} {part!r} is not 4 hex digits ({expected})")
        ids.append(int(part, 16))
    serial = parts[3] if len(parts) == 4 else None
    if serial is not None and not serial.strip():
        raise ValueError(f"{text!r}: empty serial ({expected})")
    return ids[0], ids[1], serial


def find_usb_cameras(backend: object | None = None) -> list[UsbCamera]:
    """Every USB video device with a VideoControl interface, in bus order.

    Strings a device will not give (no permission) are None; UvcError when pyusb has no
    libusb backend at all."""
    cameras: list[UsbCamera] = []
    for device in _devices(backend):
        try:
            found = _describe(device)
        finally:
            _release(device)
        if found is not None:
            cameras.append(found[0])
    return sorted(cameras, key=lambda camera: (camera.bus, camera.address))


class UvcCamera:
    """Pan/tilt, zoom and focus of one UVC camera, named by its identity."""

    def __init__(self, identity: str, *, backend: object | None = None) -> None:
        vendor_id, product_id, serial = parse_identity(identity)
        self._lock = threading.RLock()
        self._ranges: dict[str, tuple[ControlRange, ...]] = {}
        self._closed = False
        self._device, self.info, self._interface, self._terminal = _open(
            identity, vendor_id, product_id, serial, backend
        )

    def __enter__(self) -> UvcCamera:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @overload
    def get(self, control: Literal["pan_tilt"], request: RequestName = ...) -> tuple[int, int]: ...

    @overload
    def get(self, control: Literal["zoom", "focus"], request: RequestName = ...) -> int: ...

    @overload
    def get(self, control: Literal["auto_focus"], request: RequestName = ...) -> bool: ...

    @overload
    def get(self, control: str, request: str = ...) -> ControlValue: ...

    def get(self, control: str, request: str = "cur") -> ControlValue:
        """GET_CUR (or GET_MIN/MAX/RES/DEF with request "min"/"max"/"res"/"def")."""
        spec = self._control(control)
        if request not in _GET_CODES:
            raise ValueError(f"request {request!r} is not one of cur, min, max, res, def")
        if request not in spec.requests:
            raise ValueError(f"{control} answers only {', '.join(sorted(spec.requests))}")
        with self._lock:
            values = self._get_values(control, spec, _GET_CODES[request])
        if control == "pan_tilt":
            return values[0], values[1]
        if control == "auto_focus":
            return bool(values[0])
        return values[0]

    @overload
    def range(self, control: Literal["pan_tilt"]) -> tuple[ControlRange, ControlRange]: ...

    @overload
    def range(self, control: Literal["zoom", "focus"]) -> ControlRange: ...

    @overload
    def range(self, control: str) -> ControlRange | tuple[ControlRange, ControlRange]: ...

    def range(self, control: str) -> ControlRange | tuple[ControlRange, ControlRange]:
        """Minimum, maximum and resolution; for pan_tilt one per axis (pan, tilt).

        Read once per camera and remembered."""
        axes = self._axes(control)
        return (axes[0], axes[1]) if control == "pan_tilt" else axes[0]

    def position(self) -> Position:
        """The current value of every control the camera has."""
        with self._lock:
            pan = tilt = zoom = focus = None
            auto_focus = None
            if "pan_tilt" in self.info.controls:
                pan, tilt = self.get("pan_tilt")
            if "zoom" in self.info.controls:
                zoom = self.get("zoom")
            if "focus" in self.info.controls:
                focus = self.get("focus")
            if "auto_focus" in self.info.controls:
                auto_focus = self.get("auto_focus")
            return Position(pan=pan, tilt=tilt, zoom=zoom, focus=focus, auto_focus=auto_focus)

    def move(self, position: Position) -> Position:
        """Applies the fields that are not None, clamped to the range and snapped to its
        resolution, and returns where the camera then is.

        A focus turns auto focus off first; auto_focus=True leaves focus to the camera (the
        focus field is then not sent)."""
        needed = position.controls()
        for control in needed:
            self._control(control)  # NoCameraControl before anything moves
        with self._lock:
            if "pan_tilt" in needed:
                pan_range, tilt_range = self.range("pan_tilt")
                if position.pan is None or position.tilt is None:
                    current_pan, current_tilt = self.get("pan_tilt")
                pan = position.pan if position.pan is not None else current_pan
                tilt = position.tilt if position.tilt is not None else current_tilt
                self._set("pan_tilt", pan_range.fit(pan), tilt_range.fit(tilt))
            if position.zoom is not None:
                self._set("zoom", self.range("zoom").fit(position.zoom))
            if position.auto_focus is True:
                self._set("auto_focus", 1)
            elif position.focus is not None:
                if "auto_focus" in self.info.controls:
                    self._set("auto_focus", 0)
                self._set("focus", self.range("focus").fit(position.focus))
            elif position.auto_focus is False:
                self._set("auto_focus", 0)
            return self.position()

    def nudge(self, *, pan: int = 0, tilt: int = 0, zoom: int = 0) -> Position:
        """Moves by whole steps of the control's resolution (pan=-2: two steps left),
        within the range; returns where the camera then is."""
        if pan or tilt:
            self._control("pan_tilt")
        if zoom:
            self._control("zoom")
        with self._lock:
            if pan or tilt:
                pan_range, tilt_range = self.range("pan_tilt")
                current_pan, current_tilt = self.get("pan_tilt")
                self._set(
                    "pan_tilt",
                    pan_range.fit(current_pan + pan * max(pan_range.resolution, 1)),
                    tilt_range.fit(current_tilt + tilt * max(tilt_range.resolution, 1)),
                )
            if zoom:
                zoom_range = self.range("zoom")
                current = self.get("zoom")
                self._set("zoom", zoom_range.fit(current + zoom * max(zoom_range.resolution, 1)))
            return self.position()

    def close(self) -> None:
        """Releases the interface and the device handle (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._ranges.clear()
                _release(self._device)

    # -- requests --------------------------------------------------------------------------

    def _control(self, control: str) -> _Control:
        spec = _CONTROLS.get(control)
        if spec is None:
            raise ValueError(f"unknown control {control!r} (one of {', '.join(CONTROL_NAMES)})")
        if control not in self.info.controls:
            raise NoCameraControl(f"camera {self.info.identity} has no {spec.label}")
        return spec

    def _axes(self, control: str) -> tuple[ControlRange, ...]:
        spec = self._control(control)
        if "min" not in spec.requests:
            raise ValueError(f"{control} is on or off; it has no range")
        with self._lock:
            if control not in self._ranges:
                lows = self._get_values(control, spec, GET_MIN)
                highs = self._get_values(control, spec, GET_MAX)
                steps = self._get_values(control, spec, GET_RES)
                self._ranges[control] = tuple(
                    ControlRange(low, high, step)
                    for low, high, step in zip(lows, highs, steps, strict=True)
                )
            return self._ranges[control]

    def _get_values(self, control: str, spec: _Control, code: int) -> tuple[int, ...]:
        answer = self._transfer(REQUEST_TYPE_GET, code, spec.selector << 8, spec.size, control)
        assert isinstance(answer, bytes)
        if len(answer) != spec.size:
            raise UvcError(
                f"camera {self.info.identity}: {_REQUEST_NAMES[code]} {control} answered "
                f"{len(answer)} bytes instead of {spec.size}"
            )
        return struct.unpack(spec.layout, answer)

    def _set(self, control: str, *values: int) -> None:
        spec = _CONTROLS[control]
        self._transfer(
            REQUEST_TYPE_SET,
            SET_CUR,
            spec.selector << 8,
            struct.pack(spec.layout, *values),
            control,
        )

    def _transfer(
        self, request_type: int, code: int, value: int, payload: int | bytes, control: str
    ) -> bytes | int:
        if self._closed:
            raise UvcError(f"camera {self.info.identity} is closed")
        index = (self._terminal << 8) | self._interface
        try:
            answer = self._device.ctrl_transfer(
                request_type, code, value, index, payload, _TIMEOUT_MS
            )
        except usb.core.USBError as exc:
            raise self._explain(exc, f"{_REQUEST_NAMES[code]} {control}") from exc
        return bytes(answer) if request_type & 0x80 else int(answer)

    def _explain(self, exc: usb.core.USBError, what: str) -> UvcError:
        name = f"camera {self.info.identity}"
        if exc.errno == errno.EPIPE:
            return UvcError(f"{name} refused {what} ({self._request_error()})")
        return _usb_error(name, what, exc, self._interface)

    def _request_error(self) -> str:
        """Why the camera stalled the last request (VC_REQUEST_ERROR_CODE_CONTROL)."""
        try:
            answer = self._device.ctrl_transfer(
                REQUEST_TYPE_GET,
                GET_CUR,
                VC_REQUEST_ERROR_CODE_CONTROL << 8,
                self._interface,
                1,
                _TIMEOUT_MS,
            )
        except usb.core.USBError:
            return "request stalled"
        code = bytes(answer)[0] if len(answer) else 0
        reason = _REQUEST_ERRORS.get(code)
        return f"request stalled: {reason}" if reason else "request stalled"


# -- discovery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _VideoControl:
    interface: int  # bInterfaceNumber of the VideoControl interface
    bcd_uvc: int | None
    terminal: int | None  # bTerminalID of the camera terminal
    controls: int  # its bmControls


def _devices(backend: object | None, **match: int) -> list[Any]:
    try:
        return list(usb.core.find(find_all=True, backend=backend, **match))
    except usb.core.NoBackendError as exc:
        raise UvcError("pyusb found no libusb backend (install libusb-1.0-0)") from exc
    except usb.core.USBError as exc:
        raise UvcError(f"cannot list USB devices: {exc}") from exc


def _describe(device: Any) -> tuple[UsbCamera, _VideoControl] | None:
    try:
        video = _video_control(device)
    except (usb.core.USBError, IndexError):
        return None  # unplugged while we looked
    if video is None:
        return None
    vendor_id, product_id = int(device.idVendor), int(device.idProduct)
    serial = _string(device, "serial_number")
    identity = f"usb:{vendor_id:04x}:{product_id:04x}" + (f":{serial}" if serial else "")
    bcd = video.bcd_uvc
    camera = UsbCamera(
        identity=identity,
        vendor_id=vendor_id,
        product_id=product_id,
        serial=serial,
        manufacturer=_string(device, "manufacturer"),
        product=_string(device, "product"),
        bus=int(device.bus or 0),
        address=int(device.address or 0),
        uvc_version=f"{bcd >> 8:x}.{bcd & 0xFF:02x}" if bcd is not None else "unknown",
        controls=tuple(name for name in CONTROL_NAMES if video.controls >> _CONTROLS[name].bit & 1),
    )
    return camera, video


def _video_control(device: Any) -> _VideoControl | None:
    for configuration in device:
        for interface in configuration:
            if (
                int(interface.bInterfaceClass) == CC_VIDEO
                and int(interface.bInterfaceSubClass) == SC_VIDEOCONTROL
            ):
                return _parse_video_control(
                    int(interface.bInterfaceNumber), bytes(interface.extra_descriptors)
                )
    return None


def _parse_video_control(interface: int, extra: bytes) -> _VideoControl:
    """Reads VC_HEADER and the first camera terminal from the class-specific VC descriptors."""
    bcd_uvc: int | None = None
    terminal: int | None = None
    controls = 0
    offset = 0
    while offset + 3 <= len(extra):
        length = extra[offset]
        if length < 3 or offset + length > len(extra):
            break  # malformed: keep what was read
        block = extra[offset : offset + length]
        offset += length
        if block[1] != CS_INTERFACE:
            continue
        if block[2] == VC_HEADER and length >= 5 and bcd_uvc is None:
            bcd_uvc = int.from_bytes(block[3:5], "little")
        elif (
            block[2] == VC_INPUT_TERMINAL
            and length >= 15
            and terminal is None
            and int.from_bytes(block[4:6], "little") == ITT_CAMERA
        ):
            terminal = block[3]
            controls = int.from_bytes(block[15 : 15 + block[14]], "little")  # bControlSize
    return _VideoControl(interface, bcd_uvc, terminal, controls)


def _string(device: Any, attribute: str) -> str | None:
    try:
        text = getattr(device, attribute)
    except (usb.core.USBError, ValueError, NotImplementedError, UnicodeDecodeError):
        return None  # no permission, no language ids, or a broken descriptor
    text = str(text).strip() if text is not None else ""
    return text or None


def _release(device: Any) -> None:
    with contextlib.suppress(usb.core.USBError):  # gone: nothing left to release
        usb.util.dispose_resources(device)


def _open(
    identity: str, vendor_id: int, product_id: int, serial: str | None, backend: object | None
) -> tuple[Any, UsbCamera, int, int]:
    found: list[tuple[Any, UsbCamera, _VideoControl]] = []
    others: list[str] = []
    not_video = False
    for device in _devices(backend, idVendor=vendor_id, idProduct=product_id):
        described = _describe(device)
        if described is None:
            not_video = True
        elif serial is None or described[0].serial == serial:
            found.append((device, *described))
            continue
        else:
            others.append(described[0].identity)
        _release(device)
    if not found:
        if others:
            raise UvcError(
                f"camera {identity} is not plugged in (same model here: {', '.join(others)}; "
                "a serial that cannot be read means no permission on the USB device)"
            )
        if not_video:
            raise UvcError(f"USB device {identity} is not a UVC camera")
        raise UvcError(f"camera {identity} is not plugged in")
    if len({camera.identity for _, camera, _ in found}) > 1:
        for device, *_ in found:
            _release(device)
        names = ", ".join(camera.identity for _, camera, _ in found)
        raise UvcError(f"{identity} matches several cameras ({names}); name one by its serial")
    device, camera, video = found[0]
    for extra, *_ in found[1:]:
        _release(extra)
    return device, camera, video.interface, video.terminal if video.terminal is not None else 0


def _usb_error(name: str, what: str, exc: usb.core.USBError, interface: int) -> UvcError:
    if exc.errno == errno.EBUSY:
        return UvcError(
            f"{name}: {what} failed: its VideoControl interface {interface} is busy, held by "
            "the kernel's uvcvideo driver (the camera is in use through V4L2). PTZ over USB "
            "control requests is not possible while uvcvideo is bound; the driver is left "
            "alone so the picture keeps going"
        )
    if exc.errno == errno.ENODEV:
        return UvcError(f"{name} is gone (unplugged?): {what} failed")
    if exc.errno == errno.EACCES:
        return UvcError(
            f"{name}: {what} failed: no permission on the USB device "
            "(a udev rule must give this user access to USB video devices)"
        )
    if exc.errno == errno.ETIMEDOUT or isinstance(exc, usb.core.USBTimeoutError):
        return UvcError(f"{name} did not answer {what} within {_TIMEOUT_MS} ms")
    return UvcError(f"{name}: {what} failed: {exc}")
