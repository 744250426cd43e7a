"""Which cameras, capture cards, microphones and displays this machine has, each with a
stable identity for a room file, and the resolution of such an identity to `/dev/videoN`.

Everything is read under `root` (sysfs, devfs, procfs, /tmp/.X11-unix) so that a test can
build a fake tree; V4L2 formats come from the device's ioctls through an injectable `ioctl`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from .source import SourceError
from .v4l2abi import (
    V4L2_BUF_TYPE_VIDEO_CAPTURE,
    V4L2_CAP_DEVICE_CAPS,
    V4L2_CAP_VIDEO_CAPTURE,
    V4L2_FMT_FLAG_COMPRESSED,
    V4L2_FRMIVAL_TYPE_DISCRETE,
    V4L2_FRMSIZE_TYPE_DISCRETE,
    VIDIOC_ENUM_FMT,
    VIDIOC_ENUM_FRAMEINTERVALS,
    VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_QUERYCAP,
    V4l2Capability,
    V4l2Fmtdesc,
    V4l2Frmivalenum,
    V4l2Frmsizeenum,
)

Ioctl = Callable[[int, int, Any], object]
"""`fcntl.ioctl`'s shape: (fd, request, mutable buffer); raises OSError with the errno."""

INPUT_FORMATS = {"MJPG": "mjpeg", "YUYV": "yuyv422", "H264": "h264"}
"""Fourcc → the room file's `input_format` (ffmpeg's name); other fourccs are listed as is."""

STANDARD_SIZES = (
    (3840, 2160),
    (2560, 1440),
    (1920, 1080),
    (1600, 1200),
    (1280, 1024),
    (1280, 720),
    (1024, 768),
    (800, 600),
    (640, 480),
    (640, 360),
    (320, 240),
)
STANDARD_RATES = (60.0, 50.0, 30.0, 25.0, 24.0, 20.0, 15.0, 10.0, 5.0)
_MAX_ENTRIES = 256  # a driver that never ends an enumeration must not hang us
_CAPTURE_CARD_WORDS = re.compile(r"hdmi|capture|grabber|cam ?link", re.IGNORECASE)


def fourcc_text(code: int) -> str:
    """The four characters of a V4L2 pixel format code (`0x47504a4d` → "MJPG")."""
    return bytes((code >> shift) & 0xFF for shift in (0, 8, 16, 24)).decode("latin-1").strip()


def fourcc_code(text: str) -> int:
    """The V4L2 pixel format code of four characters (v4l2_fourcc)."""
    raw = text.encode("latin-1").ljust(4)[:4]
    return raw[0] | raw[1] << 8 | raw[2] << 16 | raw[3] << 24


# --------------------------------------------------------------------------- what we report


class DeviceMissing(SourceError):
    """The camera a room file names is not plugged in (the message names it and near matches)."""


class AmbiguousDevice(SourceError):
    """More than one plugged-in camera answers to the identity."""


class UsbCameraInfo(Protocol):
    """What discovery uses of `capture.uvc.UsbCamera`."""

    @property
    def identity(self) -> str: ...
    @property
    def vendor_id(self) -> int: ...
    @property
    def product_id(self) -> int: ...
    @property
    def serial(self) -> str | None: ...
    @property
    def manufacturer(self) -> str | None: ...
    @property
    def product(self) -> str | None: ...
    @property
    def bus(self) -> int: ...
    @property
    def address(self) -> int: ...
    @property
    def uvc_version(self) -> str: ...
    @property
    def controls(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class FrameSize:
    width: int
    height: int
    fps: tuple[float, ...]  # highest first


@dataclass(frozen=True)
class VideoFormat:
    fourcc: str
    description: str
    compressed: bool
    sizes: tuple[FrameSize, ...]  # largest first
    size_range: str | None = None  # "160x120-1920x1080 step 8x8" for stepwise/continuous sizes

    @property
    def input_format(self) -> str:
        return INPUT_FORMATS.get(self.fourcc, self.fourcc)

    def as_json(self) -> dict[str, object]:
        return {
            "fourcc": self.fourcc,
            "input_format": self.input_format,
            "description": self.description,
            "compressed": self.compressed,
            "sizes": [
                {"width": s.width, "height": s.height, "fps": [_number(x) for x in s.fps]}
                for s in self.sizes
            ],
            "size_range": self.size_range,
        }


@dataclass(frozen=True)
class CaptureMode:
    input_format: str
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class UsbDetails:
    vendor_id: int
    product_id: int
    serial: str | None
    manufacturer: str | None
    product: str | None
    bus: int
    address: int
    port: str | None = None  # the sysfs name of the USB device, e.g. "1-2.3"
    uvc_version: str | None = None  # from the UVC descriptors, when pyusb could read them
    controls: tuple[str, ...] | None = None

    @property
    def model(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"

    @property
    def identity(self) -> str:
        return f"usb:{self.model}" + (f":{self.serial}" if self.serial else "")

    def as_json(self) -> dict[str, object]:
        return {
            "vendor_id": f"{self.vendor_id:04x}",
            "product_id": f"{self.product_id:04x}",
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "bus": self.bus,
            "address": self.address,
            "port": self.port,
            "uvc_version": self.uvc_version,
            "controls": None if self.controls is None else list(self.controls),
        }


@dataclass(frozen=True)
class VideoDevice:
    """A V4L2 capture node (or a USB camera seen only over USB: `node` None)."""

    identity: str  # what to paste into a room file
    name: str
    kind: Literal["camera", "capture-card"]
    bus: str  # "usb", "pci", "platform", ...
    node: str | None  # /dev/videoN today (it can change; never paste it)
    index: int | None  # sysfs `index`: the node's number among its device's nodes
    driver: str | None
    bus_info: str | None
    by_id: tuple[str, ...]
    by_path: tuple[str, ...]
    usb: UsbDetails | None
    pci_slot: str | None
    formats: tuple[VideoFormat, ...]
    capture: bool | None  # V4L2_CAP_VIDEO_CAPTURE; None when the node could not be queried
    error: str | None  # why the node could not be opened or queried

    def as_json(self) -> dict[str, object]:
        return {
            "type": self.kind,
            "id": self.identity,
            "name": self.name,
            "paths": {"node": self.node, "by_id": list(self.by_id), "by_path": list(self.by_path)},
            "bus": self.bus,
            "driver": self.driver,
            "bus_info": self.bus_info,
            "usb": None if self.usb is None else self.usb.as_json(),
            "pci_slot": self.pci_slot,
            "formats": [f.as_json() for f in self.formats],
            "error": self.error,
        }

    def best_mode(
        self,
        *,
        max_width: int,
        max_height: int,
        max_fps: float,
        formats: Sequence[str] = ("mjpeg", "yuyv422", "h264"),
    ) -> CaptureMode | None:
        """The largest, then fastest, mode within the limits, of the first format that has one."""
        for wanted in formats:
            modes = [
                CaptureMode(wanted, size.width, size.height, fps)
                for fmt in self.formats
                if fmt.input_format == wanted
                for size in fmt.sizes
                if size.width <= max_width and size.height <= max_height
                for fps in size.fps
                if fps <= max_fps + 0.01
            ]
            if modes:
                return max(modes, key=lambda m: (m.width * m.height, m.fps))
        return None


@dataclass(frozen=True)
class Microphone:
    identity: str  # plughw:CARD=<id>,DEV=<M>
    name: str
    card: int
    card_id: str
    device: int
    pcm_name: str
    usb_id: str | None  # "046d:082d" for a USB sound card (often a webcam's microphone)

    def as_json(self) -> dict[str, object]:
        return {
            "type": "microphone",
            "id": self.identity,
            "name": self.name,
            "paths": {"card": self.card, "card_id": self.card_id, "device": self.device},
            "pcm_name": self.pcm_name,
            "usb_id": self.usb_id,
        }


@dataclass(frozen=True)
class Display:
    identity: str  # ":0.0" for X11, the connector ("card0-HDMI-A-1") for DRM
    name: str
    kind: Literal["x11grab", "drm"]
    path: str
    connected: bool | None = None  # DRM only
    modes: tuple[str, ...] = ()  # DRM only; the preferred mode first

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "type": "display",
            "id": self.identity,
            "name": self.name,
            "kind": self.kind,
            "paths": {"path": self.path},
        }
        if self.kind == "drm":
            data["connected"] = self.connected
            data["preferred_mode"] = self.modes[0] if self.modes else None
            data["modes"] = list(self.modes)
        return data


# ------------------------------------------------------------------------------- V4L2 nodes


@dataclass(frozen=True)
class NodeInfo:
    """What VIDIOC_QUERYCAP and the ENUM ioctls told of one node."""

    driver: str
    card: str
    bus_info: str
    capture: bool
    formats: tuple[VideoFormat, ...]


def _text(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace").strip()


_S = TypeVar("_S", bound=ctypes.Structure)


def _enumerate(fd: int, ioctl: Ioctl, request: int, make: Callable[[int], _S]) -> Iterator[_S]:
    """Calls an ENUM ioctl with index 0, 1, ... until the driver answers EINVAL (the end;
    ENOTTY: the driver has no such enumeration)."""
    for index in range(_MAX_ENTRIES):
        entry = make(index)
        try:
            ioctl(fd, request, entry)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOTTY):
                return
            raise
        yield entry


def _rates(fd: int, ioctl: Ioctl, pixel_format: int, width: int, height: int) -> tuple[float, ...]:
    rates: set[float] = set()
    for entry in _enumerate(
        fd,
        ioctl,
        VIDIOC_ENUM_FRAMEINTERVALS,
        lambda i: V4l2Frmivalenum(index=i, pixel_format=pixel_format, width=width, height=height),
    ):
        if entry.type == V4L2_FRMIVAL_TYPE_DISCRETE:
            if entry.discrete.numerator:
                rates.add(round(entry.discrete.denominator / entry.discrete.numerator, 3))
            continue
        low, high = entry.stepwise.min, entry.stepwise.max  # shortest and longest interval
        fastest = low.denominator / low.numerator if low.numerator else 0.0
        slowest = high.denominator / high.numerator if high.numerator else 0.0
        if fastest > 0:
            rates.add(round(fastest, 3))
        rates.update(r for r in STANDARD_RATES if slowest - 0.01 <= r <= fastest + 0.01)
        break  # stepwise and continuous have a single entry
    return tuple(sorted(rates, reverse=True))


def _sizes(fd: int, ioctl: Ioctl, pixel_format: int) -> tuple[tuple[FrameSize, ...], str | None]:
    sizes: list[FrameSize] = []
    size_range = None
    for entry in _enumerate(
        fd,
        ioctl,
        VIDIOC_ENUM_FRAMESIZES,
        lambda i: V4l2Frmsizeenum(index=i, pixel_format=pixel_format),
    ):
        if entry.type == V4L2_FRMSIZE_TYPE_DISCRETE:
            width, height = entry.discrete.width, entry.discrete.height
            sizes.append(FrameSize(width, height, _rates(fd, ioctl, pixel_format, width, height)))
            continue
        step = entry.stepwise
        step_w, step_h = max(step.step_width, 1), max(step.step_height, 1)
        size_range = (
            f"{step.min_width}x{step.min_height}-{step.max_width}x{step.max_height}"
            f" step {step_w}x{step_h}"
        )
        for width, height in STANDARD_SIZES:
            if (
                step.min_width <= width <= step.max_width
                and step.min_height <= height <= step.max_height
                and (width - step.min_width) % step_w == 0
                and (height - step.min_height) % step_h == 0
            ):
                rates = _rates(fd, ioctl, pixel_format, width, height)
                sizes.append(FrameSize(width, height, rates))
        break
    sizes.sort(key=lambda s: (s.width * s.height, s.width), reverse=True)
    return tuple(sizes), size_range


def query_node(path: Path, ioctl: Ioctl = fcntl.ioctl, *, formats: bool = True) -> NodeInfo:
    """QUERYCAP (and, for capture nodes, the formats, sizes and rates) of a V4L2 node.

    Raises OSError when the node cannot be opened or does not answer.
    """
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        cap = V4l2Capability()
        ioctl(fd, VIDIOC_QUERYCAP, cap)
        caps = cap.device_caps if cap.capabilities & V4L2_CAP_DEVICE_CAPS else cap.capabilities
        capture = bool(caps & V4L2_CAP_VIDEO_CAPTURE)
        found: list[VideoFormat] = []
        if capture and formats:
            for desc in _enumerate(
                fd,
                ioctl,
                VIDIOC_ENUM_FMT,
                lambda i: V4l2Fmtdesc(index=i, type=V4L2_BUF_TYPE_VIDEO_CAPTURE),
            ):
                sizes, size_range = _sizes(fd, ioctl, desc.pixelformat)
                found.append(
                    VideoFormat(
                        fourcc=fourcc_text(desc.pixelformat),
                        description=_text(desc.description),
                        compressed=bool(desc.flags & V4L2_FMT_FLAG_COMPRESSED),
                        sizes=sizes,
                        size_range=size_range,
                    )
                )
        return NodeInfo(
            _text(cap.driver), _text(cap.card), _text(cap.bus_info), capture, tuple(found)
        )
    finally:
        os.close(fd)


def describe_os_error(exc: OSError) -> str:
    """A short reason for IT staff: why a device node could not be used."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: add this user to the 'video' group"
    if exc.errno == errno.ENOENT:
        return f"no device node{where}"
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return f"device gone{where}"
    if exc.errno == errno.EBUSY:
        return f"device busy{where}"
    if exc.errno == errno.ENOTTY:
        return f"not a V4L2 device{where}"
    return f"{exc.strerror or exc}{where}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _link_name(path: Path) -> str | None:
    try:
        return Path(os.readlink(path)).name
    except OSError:
        return None


def _node_number(name: str) -> int:
    digits = re.sub(r"\D", "", name)
    return int(digits) if digits else -1


def _links(root: Path, folder: str) -> dict[str, list[str]]:
    """`/dev/v4l/by-*/NAME` links by the basename of their target (`video0`)."""
    found: dict[str, list[str]] = {}
    base = root / "dev" / "v4l" / folder
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return found
    for link in entries:
        target = _link_name(link)
        if target is not None:
            found.setdefault(target, []).append(f"/dev/v4l/{folder}/{link.name}")
    return found


def _usb_parent(device: Path, root: Path) -> tuple[Path, UsbDetails] | None:
    sys_root = (root / "sys").resolve()
    for folder in (device, *device.parents):
        if folder == sys_root or sys_root not in folder.parents:
            return None
        if (folder / "idVendor").is_file():
            try:
                vendor = int(_read(folder / "idVendor") or "", 16)
                product = int(_read(folder / "idProduct") or "", 16)
                bus = int(_read(folder / "busnum") or "0")
                address = int(_read(folder / "devnum") or "0")
            except ValueError:
                return None
            details = UsbDetails(
                vendor_id=vendor,
                product_id=product,
                serial=_read(folder / "serial") or None,
                manufacturer=_read(folder / "manufacturer") or None,
                product=_read(folder / "product") or None,
                bus=bus,
                address=address,
                port=folder.name,
            )
            return folder, details
    return None


_PCI_SLOT = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


@dataclass(frozen=True)
class _Node:
    name: str  # video0
    sysfs_name: str
    index: int | None
    driver: str | None
    bus: str
    usb: UsbDetails | None
    usb_device: str | None  # sysfs path of the USB device: one physical camera
    pci_slot: str | None
    query: NodeInfo | None
    error: str | None

    @property
    def node(self) -> str:
        return f"/dev/{self.name}"

    @property
    def maybe_capture(self) -> bool:
        """A capture node, or an unqueryable one that is its device's first node."""
        if self.query is not None:
            return self.query.capture
        return self.index in (None, 0)


def _scan_nodes(root: Path, ioctl: Ioctl, *, formats: bool) -> list[_Node]:
    classes = root / "sys" / "class" / "video4linux"
    try:
        names = sorted(
            (p.name for p in classes.iterdir() if p.name.startswith("video")), key=_node_number
        )
    except OSError:
        return []
    nodes: list[_Node] = []
    for name in names:
        folder = classes / name
        index_text = _read(folder / "index")
        device_link = folder / "device"
        device = device_link.resolve() if device_link.exists() else None
        driver = _link_name(device_link / "driver") if device else None
        usb = _usb_parent(device, root) if device else None
        subsystem = _link_name(device / "subsystem") if device else None
        pci_slot = device.name if device and _PCI_SLOT.match(device.name) else None
        bus = "usb" if usb else ("pci" if pci_slot or subsystem == "pci" else subsystem or "")
        query = error = None
        try:
            query = query_node(root / "dev" / name, ioctl, formats=formats)
        except OSError as exc:
            exc.filename = f"/dev/{name}"
            error = describe_os_error(exc)
        nodes.append(
            _Node(
                name=name,
                sysfs_name=_read(folder / "name") or name,
                index=int(index_text) if index_text and index_text.isdigit() else None,
                driver=driver,
                bus=bus or "unknown",
                usb=usb[1] if usb else None,
                usb_device=str(usb[0]) if usb else None,
                pci_slot=pci_slot,
                query=query,
                error=error,
            )
        )
    return nodes


def _kind(name: str, bus: str) -> Literal["camera", "capture-card"]:
    if bus == "pci" or _CAPTURE_CARD_WORDS.search(name):
        return "capture-card"
    return "camera"


def _pasteable(serial: str | None) -> bool:
    return serial is None or (bool(serial) and not re.search(r"\s", serial))


def list_video_devices(
    root: Path = Path("/"),
    *,
    ioctl: Ioctl = fcntl.ioctl,
    usb_cameras: Sequence[UsbCameraInfo] = (),
) -> list[VideoDevice]:
    """V4L2 capture nodes (metadata nodes left out), merged with what pyusb found.

    `usb_cameras` (from `capture.uvc.find_usb_cameras`) add the UVC version and controls to
    the node of the same bus, address, VID and PID; a USB camera without a node is listed
    on its own.
    """
    by_id, by_path = _links(root, "by-id"), _links(root, "by-path")
    by_address = {(c.bus, c.address, c.vendor_id, c.product_id): c for c in usb_cameras}
    merged: set[tuple[int, int, int, int]] = set()
    devices: list[VideoDevice] = []
    for node in _scan_nodes(root, ioctl, formats=True):
        if not node.maybe_capture:
            continue
        usb = node.usb
        key = (usb.bus, usb.address, usb.vendor_id, usb.product_id) if usb else None
        if usb is not None and key is not None and (found := by_address.get(key)) is not None:
            merged.add(key)
            usb = replace(
                usb,
                uvc_version=found.uvc_version,
                controls=tuple(found.controls),
                manufacturer=usb.manufacturer or found.manufacturer,
                product=usb.product or found.product,
            )
        name = node.query.card if node.query and node.query.card else node.sysfs_name
        devices.append(
            VideoDevice(
                identity="",
                name=name,
                kind=_kind(name, node.bus),
                bus=node.bus,
                node=node.node,
                index=node.index,
                driver=node.driver or (node.query.driver if node.query else None),
                bus_info=node.query.bus_info if node.query else None,
                by_id=tuple(by_id.get(node.name, ())),
                by_path=tuple(by_path.get(node.name, ())),
                usb=usb,
                pci_slot=node.pci_slot,
                formats=node.query.formats if node.query else (),
                capture=node.query.capture if node.query else None,
                error=node.error,
            )
        )
    for camera in usb_cameras:
        if (camera.bus, camera.address, camera.vendor_id, camera.product_id) in merged:
            continue
        name = camera.product or camera.identity
        devices.append(
            VideoDevice(
                identity="",
                name=name,
                kind=_kind(name, "usb"),
                bus="usb",
                node=None,
                index=None,
                driver=None,
                bus_info=None,
                by_id=(),
                by_path=(),
                usb=UsbDetails(
                    vendor_id=camera.vendor_id,
                    product_id=camera.product_id,
                    serial=camera.serial,
                    manufacturer=camera.manufacturer,
                    product=camera.product,
                    bus=camera.bus,
                    address=camera.address,
                    uvc_version=camera.uvc_version,
                    controls=tuple(camera.controls),
                ),
                pci_slot=None,
                formats=(),
                capture=None,
                error="no V4L2 capture node for this USB camera (is the uvcvideo driver loaded?)",
            )
        )
    return _with_identities(devices)


def _with_identities(devices: list[VideoDevice]) -> list[VideoDevice]:
    """`usb:VID:PID[:SERIAL]` when it names one camera, else the by-path (or by-id) link."""

    def physical(device: VideoDevice) -> object:
        assert device.usb is not None
        return device.usb.port or (device.usb.bus, device.usb.address)

    owners: dict[str, set[object]] = {}
    for device in devices:
        if device.usb is not None:
            owners.setdefault(device.usb.identity, set()).add(physical(device))
    named: list[VideoDevice] = []
    for device in devices:
        usb = device.usb
        links = (*device.by_path, *device.by_id)  # a port (by-path) is stable without a serial
        if usb is not None:
            unique = len(owners[usb.identity]) == 1
            if unique and _pasteable(usb.serial):
                identity = usb.identity
            elif unique and device.by_id:
                identity = device.by_id[0]  # a serial with spaces: udev's link spells it
            else:
                identity = links[0] if links else device.node or usb.identity
        else:
            identity = links[0] if links else device.node or device.name
        named.append(replace(device, identity=identity))
    return named


# ------------------------------------------------------------------------ resolve an identity


def parse_usb_identity(identity: str) -> tuple[int, int, str | None]:
    """`usb:046d:0853[:SERIAL]` → (0x046d, 0x0853, "SERIAL" or None); ValueError if malformed."""
    parts = identity.split(":", 3)
    if len(parts) < 3 or parts[0] != "usb":
        raise ValueError(f"{identity!r} is not usb:VID:PID[:SERIAL]")
    try:
        vendor, product = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        raise ValueError(
            f"{identity!r}: VID and PID are 4 hex digits, e.g. usb:046d:0853"
        ) from None
    if len(parts[1]) != 4 or len(parts[2]) != 4:
        raise ValueError(f"{identity!r}: VID and PID are 4 hex digits, e.g. usb:046d:0853")
    serial = parts[3] if len(parts) == 4 and parts[3] else None
    return vendor, product, serial


def resolve_camera(identity: str, *, root: Path = Path("/"), ioctl: Ioctl = fcntl.ioctl) -> str:
    """The `/dev/videoN` capture node of a camera named `usb:VID:PID[:SERIAL]` or by a
    `/dev/v4l/by-id/...` / `/dev/v4l/by-path/...` link (a plain /dev/videoN is returned as is).

    Raises `DeviceMissing` when it is not plugged in, `AmbiguousDevice` when two cameras
    answer to it, `SourceError` when the identity is malformed or names a non-capture node.
    """
    if identity.startswith("usb:"):
        try:
            vendor, product, serial = parse_usb_identity(identity)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        return _resolve_usb(identity, vendor, product, serial, root, ioctl)
    if identity.startswith(("/dev/v4l/by-id/", "/dev/v4l/by-path/")):
        return _resolve_link(identity, root, ioctl)
    if re.fullmatch(r"/dev/video\d+", identity):
        return identity
    raise SourceError(
        f"{identity!r} is not a camera identity "
        "(expected usb:VID:PID[:SERIAL] or /dev/v4l/by-id/... or /dev/v4l/by-path/...)"
    )


def _resolve_usb(
    identity: str, vendor: int, product: int, serial: str | None, root: Path, ioctl: Ioctl
) -> str:
    nodes = [
        n for n in _scan_nodes(root, ioctl, formats=False) if n.usb is not None and n.maybe_capture
    ]
    same_model = [
        n for n in nodes if n.usb and (n.usb.vendor_id, n.usb.product_id) == (vendor, product)
    ]
    matching = [n for n in same_model if serial is None or (n.usb and n.usb.serial == serial)]
    cameras: dict[str, list[_Node]] = {}
    for node in matching:
        cameras.setdefault(node.usb_device or node.name, []).append(node)
    if not cameras:
        raise DeviceMissing(
            _missing_message(identity, f"{vendor:04x}:{product:04x}", same_model, nodes)
        )
    if len(cameras) > 1:
        by_path = _links(root, "by-path")
        names = [
            by_path.get(group[0].name, [group[0].node])[0]
            for group in sorted(cameras.values(), key=lambda g: _node_number(g[0].name))
        ]
        why = (
            "they have no serial number to tell them apart"
            if serial is None
            else "they report the same serial number"
        )
        raise AmbiguousDevice(
            f"camera {identity}: {len(cameras)} cameras of this model are plugged in and {why}; "
            f"name the USB port instead, with its by-path name: {', '.join(names)}"
        )
    group = next(iter(cameras.values()))
    return min(group, key=lambda n: (not (n.query and n.query.capture), _node_number(n.name))).node


def _missing_message(identity: str, model: str, same_model: list[_Node], nodes: list[_Node]) -> str:
    message = f"camera {identity} is not plugged in"
    if same_model:
        others = sorted({n.usb.identity for n in same_model if n.usb})
        return f"{message}; the same model is, with another serial: {', '.join(others)}"
    if nodes:
        present = sorted({n.usb.identity for n in nodes if n.usb})
        return f"{message} (no {model} camera found); USB cameras present: {', '.join(present)}"
    return f"{message} (no USB camera found at all)"


def _resolve_link(identity: str, root: Path, ioctl: Ioctl) -> str:
    link = root / identity.lstrip("/")
    target = _link_name(link)
    if target is None:
        folder = link.parent
        try:
            present = sorted(f"/dev/v4l/{folder.name}/{p.name}" for p in folder.iterdir())
        except OSError:
            present = []
        stem = re.sub(r"-video-index\d+$", "", link.name)
        near = [p for p in present if Path(p).name.startswith(stem)]
        message = f"camera {identity} is not plugged in"
        if near:
            message += f"; the same device has: {', '.join(near)}"
        elif present:
            message += f"; present: {', '.join(present)}"
        else:
            message += " (no V4L2 camera found at all)"
        raise DeviceMissing(message)
    node = root / "dev" / target
    try:
        query = query_node(node, ioctl, formats=False)
    except OSError:
        return f"/dev/{target}"  # let the capture open report permissions and the like
    if not query.capture:
        raise SourceError(
            f"{identity} (/dev/{target}) is not a video capture node "
            "(a UVC metadata node? use the link ending in -video-index0)"
        )
    return f"/dev/{target}"


# ------------------------------------------------------------------------ microphones, displays


def list_microphones(root: Path = Path("/")) -> list[Microphone]:
    """ALSA capture PCMs from /proc/asound (`pcmNc`), as `plughw:CARD=<id>,DEV=<N>`."""
    cards = _read(root / "proc" / "asound" / "cards")
    if not cards:
        return []
    found: list[Microphone] = []
    for line in cards.splitlines():
        match = re.match(r"^\s*(\d+)\s+\[([^\]]*)\]\s*:\s*(.*)$", line)
        if not match:
            continue
        number = int(match.group(1))
        folder = root / "proc" / "asound" / f"card{number}"
        card_id = _read(folder / "id") or match.group(2).strip()
        description = match.group(3)
        card_name = description.split(" - ", 1)[1] if " - " in description else description
        usb_id = _read(folder / "usbid")
        try:
            pcms = sorted(
                (p for p in folder.iterdir() if re.fullmatch(r"pcm\d+c", p.name)),
                key=lambda p: _node_number(p.name),
            )
        except OSError:
            continue
        for pcm in pcms:
            info = _read(pcm / "info") or ""
            fields = dict(
                (key.strip(), value.strip())
                for key, _, value in (row.partition(":") for row in info.splitlines())
            )
            device = _node_number(pcm.name)
            pcm_name = fields.get("name", "")
            found.append(
                Microphone(
                    identity=f"plughw:CARD={card_id},DEV={device}",
                    name=f"{card_name}: {pcm_name}" if pcm_name else card_name,
                    card=number,
                    card_id=card_id,
                    device=device,
                    pcm_name=pcm_name,
                    usb_id=usb_id,
                )
            )
    return found


def list_displays(root: Path = Path("/")) -> list[Display]:
    """X11 displays (sockets in /tmp/.X11-unix, for x11grab) and DRM connectors with modes."""
    found: list[Display] = []
    sockets = root / "tmp" / ".X11-unix"
    try:
        names = sorted((p.name for p in sockets.iterdir()), key=_node_number)
    except OSError:
        names = []
    for name in names:
        if re.fullmatch(r"X\d+", name):
            number = name[1:]
            found.append(
                Display(
                    identity=f":{number}.0",
                    name=f"X display :{number}",
                    kind="x11grab",
                    path=f"/tmp/.X11-unix/{name}",
                )
            )
    drm = root / "sys" / "class" / "drm"
    try:
        connectors = sorted(p for p in drm.iterdir() if re.fullmatch(r"card\d+-.+", p.name))
    except OSError:
        connectors = []
    for folder in connectors:
        status = _read(folder / "status")
        if status is None:
            continue
        modes = tuple(m for m in (_read(folder / "modes") or "").splitlines() if m)
        found.append(
            Display(
                identity=folder.name,
                name=folder.name.split("-", 1)[1],
                kind="drm",
                path=f"/sys/class/drm/{folder.name}",
                connected={"connected": True, "disconnected": False}.get(status),
                modes=modes,
            )
        )
    return found


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
