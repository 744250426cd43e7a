"""Device discovery on a fake sysfs/devfs/procfs tree, with a fake V4L2 ioctl that fills the
kernel's struct bytes (offsets from linux/videodev2.h, not from the code under test)."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from capture import discovery, v4l2abi
from capture.device import V4L2Camera
from capture.discovery import (
    AmbiguousDevice,
    DeviceMissing,
    fourcc_code,
    list_video_devices,
    resolve_camera,
)
from capture.source import SourceError
from capture.uvc import UsbCamera, find_usb_cameras
from edge.config.settings import V4L2Source
from edge.live.devices import discover, format_text, video_snippet
from tests import fake_usb

# The kernel's numbers (gcc on <linux/videodev2.h>: sizeof and the VIDIOC_* macros).
QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS = (
    0x80685600,
    0xC0405602,
    0xC02C564A,
    0xC034564B,
)
SIZES = {QUERYCAP: 104, ENUM_FMT: 64, ENUM_FRAMESIZES: 44, ENUM_FRAMEINTERVALS: 52}
CAP_VIDEO_CAPTURE, CAP_META_CAPTURE, CAP_STREAMING, CAP_DEVICE_CAPS = (
    0x1,
    0x00800000,
    0x04000000,
    0x80000000,
)

Rates = list[tuple[int, int]]  # frame intervals (numerator, denominator) in seconds


@dataclass
class FakeNode:
    """What a V4L2 driver answers for one /dev/videoN."""

    card: str
    driver: str = "uvcvideo"
    bus_info: str = ""
    device_caps: int = CAP_VIDEO_CAPTURE | CAP_STREAMING
    # fourcc → (description, flags, {(width, height): intervals}); or a stepwise spec
    formats: dict[str, tuple[str, int, dict[tuple[int, int], Rates]]] = field(default_factory=dict)
    stepwise: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    fail: int | None = None  # errno for every ioctl
    calls: list[int] = field(default_factory=list)


class FakeKernel:
    """An `ioctl(fd, request, buffer)` that answers like the V4L2 core for fake nodes."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}

    def __call__(self, fd: int, request: int, buffer: object) -> int:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        node = self.nodes[name]
        node.calls.append(request)
        if node.fail is not None:
            raise OSError(node.fail, os.strerror(node.fail))
        data = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if request not in SIZES or len(data) != SIZES[request]:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        if request == QUERYCAP:
            struct.pack_into("16s32s32s", data, 0, b"", b"", b"")
            struct.pack_into(
                "16s32s32sIII",
                data,
                0,
                node.driver.encode(),
                node.card.encode(),
                node.bus_info.encode(),
                0x60100,
                node.device_caps | CAP_VIDEO_CAPTURE | CAP_DEVICE_CAPS,
                node.device_caps,
            )
            return 0
        index = struct.unpack_from("I", data, 0)[0]
        fourccs = [*node.formats, *node.stepwise]
        if request == ENUM_FMT:
            buffer_type = struct.unpack_from("I", data, 4)[0]
            if buffer_type != 1 or not node.device_caps & CAP_VIDEO_CAPTURE:
                raise OSError(errno.EINVAL, "Invalid argument")
            if index >= len(fourccs):
                raise OSError(errno.EINVAL, "Invalid argument")
            fourcc = fourccs[index]
            if fourcc in node.formats:
                description, flags = node.formats[fourcc][:2]
            else:
                description, flags = node.stepwise[fourcc][0], 0
            struct.pack_into("I", data, 8, flags)
            struct.pack_into("32s", data, 12, description.encode())
            struct.pack_into("I", data, 44, fourcc_of(fourcc))
            return 0
        pixel_format = struct.unpack_from("I", data, 4)[0]
        fourcc = next((f for f in fourccs if fourcc_of(f) == pixel_format), None)
        if fourcc is None:
            raise OSError(errno.EINVAL, "Invalid argument")
        if request == ENUM_FRAMESIZES:
            if fourcc in node.stepwise:
                if index:
                    raise OSError(errno.EINVAL, "Invalid argument")
                struct.pack_into("I6I", data, 8, 3, *node.stepwise[fourcc][1])
                return 0
            sizes = list(node.formats[fourcc][2])
            if index >= len(sizes):
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("III", data, 8, 1, *sizes[index])
            return 0
        width, height = struct.unpack_from("II", data, 8)
        if fourcc in node.stepwise:
            if index:
                raise OSError(errno.EINVAL, "Invalid argument")
            struct.pack_into("I6I", data, 16, 3, *node.stepwise[fourcc][2])
            return 0
        intervals = node.formats[fourcc][2].get((width, height))
        if intervals is None or index >= len(intervals):
            raise OSError(errno.EINVAL, "Invalid argument")
        struct.pack_into("III", data, 16, 1, *intervals[index])
        return 0


def fourcc_of(text: str) -> int:
    a, b, c, d = text.encode()
    return a | b << 8 | c << 16 | d << 24


PTZ_FORMATS = {
    "MJPG": (
        "Motion-JPEG",
        1,
        {
            (1920, 1080): [(1, 30), (1, 15)],
            (1280, 720): [(1, 60), (1, 30), (1, 15)],
            (640, 360): [(1, 30)],
        },
    ),
    "YUYV": ("YUYV 4:2:2", 0, {(1280, 720): [(1, 10)], (640, 480): [(1, 30)]}),
    "H264": ("H.264", 1, {(1920, 1080): [(1, 30)]}),
}
WEBCAM_FORMATS = {
    "YUYV": ("YUYV 4:2:2", 0, {(640, 480): [(1, 30)], (1280, 720): [(1, 10)]}),
    "MJPG": ("Motion-JPEG", 1, {(1280, 720): [(1001, 30000)], (640, 480): [(1, 30)]}),
}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def link(path: Path, target: Path) -> None:
    """A relative symlink, as sysfs and udev make them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


class FakeMachine:
    """A mini-PC's /sys, /dev, /proc/asound and /tmp/.X11-unix under a temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kernel = FakeKernel()
        self.usb_root = root / "sys/devices/pci0000:00/0000:00:14.0/usb1"

    def usb_camera(
        self,
        port: str,
        *,
        vendor: str,
        product: str,
        devnum: int,
        name: str,
        serial: str | None = None,
        manufacturer: str | None = None,
        nodes: list[str],
        formats: dict[str, tuple[str, int, dict[tuple[int, int], Rates]]],
        by_id: str | None = None,
    ) -> None:
        device = self.usb_root / port
        for key, value in (
            ("idVendor", vendor),
            ("idProduct", product),
            ("busnum", "1"),
            ("devnum", str(devnum)),
            ("product", name),
            ("serial", serial),
            ("manufacturer", manufacturer),
        ):
            if value is not None:
                write(device / key, value + "\n")
        interface = device / f"{port}:1.0"
        interface.mkdir()
        link(interface / "driver", self.root / "sys/bus/usb/drivers/uvcvideo")
        usb_port = port.split("-", 1)[1].replace(".", ":")
        for index, node in enumerate(nodes):
            self.video_node(node, name, interface, index)
            caps = CAP_VIDEO_CAPTURE if index == 0 else CAP_META_CAPTURE
            self.kernel.nodes[node] = FakeNode(
                card=name,
                bus_info=f"usb-0000:00:14.0-{port.split('-', 1)[1]}",
                device_caps=caps | CAP_STREAMING,
                formats=formats if index == 0 else {},
            )
            suffix = f"video-index{index}"
            if by_id is not None:  # two cameras of one name: udev's last one wins
                by_id_link = self.root / f"dev/v4l/by-id/{by_id}-{suffix}"
                by_id_link.unlink(missing_ok=True)
                link(by_id_link, self.root / "dev" / node)
            by_path = self.root / f"dev/v4l/by-path/pci-0000:00:14.0-usb-0:{usb_port}:1.0-{suffix}"
            link(by_path, self.root / "dev" / node)

    def video_node(self, node: str, name: str, device: Path, index: int) -> None:
        folder = self.root / "sys/class/video4linux" / node
        write(folder / "name", name + "\n")
        write(folder / "index", f"{index}\n")
        link(folder / "device", device)
        write(self.root / "dev" / node, "")

    def pci_card(self, node: str, slot: str, name: str) -> None:
        device = self.root / "sys/devices/pci0000:00/0000:00:1c.0" / slot
        write(device / "vendor", "0x1cd7\n")
        link(device / "subsystem", self.root / "sys/bus/pci")
        link(device / "driver", self.root / "sys/bus/pci/drivers/ProCapture")
        self.video_node(node, name, device, 0)
        link(self.root / f"dev/v4l/by-path/pci-{slot}-video-index0", self.root / "dev" / node)
        self.kernel.nodes[node] = FakeNode(
            card=name,
            driver="ProCapture",
            bus_info=f"PCI:{slot}",
            stepwise={
                "YUYV": ("YUYV 4:2:2", (64, 4096, 2, 64, 2160, 2), (1, 60, 1, 1, 1, 60)),
            },
        )

    def move(self, old: str, new: str) -> None:
        """The camera was unplugged and came back as another node."""
        (self.root / "sys/class/video4linux" / old).rename(
            self.root / "sys/class/video4linux" / new
        )
        (self.root / "dev" / old).rename(self.root / "dev" / new)
        self.kernel.nodes[new] = self.kernel.nodes.pop(old)
        for folder in ("by-id", "by-path"):
            for entry in (self.root / "dev/v4l" / folder).iterdir():
                if Path(os.readlink(entry)).name == old:
                    entry.unlink()
                    link(entry, self.root / "dev" / new)


PTZ_BY_ID = "usb-Logitech_PTZ_Pro_2_PTZ0001"


def ptz_camera(machine: FakeMachine, nodes: list[str]) -> None:
    machine.usb_camera(
        "1-2",
        vendor="046d",
        product="0853",
        devnum=4,
        name="PTZ Pro 2",
        serial="PTZ0001",
        manufacturer="Logitech",
        nodes=nodes,
        formats=PTZ_FORMATS,
        by_id=PTZ_BY_ID,
    )


def webcam(machine: FakeMachine, port: str, devnum: int, node: str) -> None:
    machine.usb_camera(
        port,
        vendor="0bda",
        product="58b0",
        devnum=devnum,
        name="USB2.0 HD UVC WebCam",
        nodes=[node],
        formats=WEBCAM_FORMATS,
        by_id="usb-Generic_USB2.0_HD_UVC_WebCam",
    )


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    root = tmp_path / "root"
    root.mkdir()
    machine = FakeMachine(root)
    ptz_camera(machine, ["video0", "video1"])  # video1: the UVC metadata node
    webcam(machine, "1-3", 7, "video2")
    machine.pci_card("video3", "0000:03:00.0", "Pro Capture HDMI 4K")
    asound = root / "proc/asound"
    write(
        asound / "cards",
        " 0 [PCH            ]: HDA-Intel - HDA Intel PCH\n"
        "                      HDA Intel PCH at 0xf7f10000 irq 32\n"
        " 1 [PTZPro2        ]: USB-Audio - PTZ Pro 2\n"
        "                      Logitech PTZ Pro 2 at usb-0000:00:14.0-2, high speed\n",
    )
    write(asound / "card0/id", "PCH\n")
    write(asound / "card0/pcm0p/info", "card: 0\ndevice: 0\nstream: PLAYBACK\nname: ALC3246\n")
    write(asound / "card0/pcm3p/info", "card: 0\ndevice: 3\nstream: PLAYBACK\nname: HDMI 0\n")
    write(asound / "card1/id", "PTZPro2\n")
    write(asound / "card1/usbid", "046d:0853\n")
    write(
        asound / "card1/pcm0c/info",
        "card: 1\ndevice: 0\nsubdevice: 0\nstream: CAPTURE\nid: USB Audio\nname: USB Audio\n",
    )
    write(root / "tmp/.X11-unix/X0", "")
    drm = root / "sys/class/drm"
    write(drm / "card0/dev", "226:0\n")
    write(drm / "card0-HDMI-A-1/status", "connected\n")
    write(drm / "card0-HDMI-A-1/modes", "1920x1080\n1280x720\n1024x768\n")
    write(drm / "card0-DP-1/status", "disconnected\n")
    write(drm / "card0-DP-1/modes", "")
    return machine


PTZ_USB = UsbCamera(
    identity="usb:046d:0853:PTZ0001",
    vendor_id=0x046D,
    product_id=0x0853,
    serial="PTZ0001",
    manufacturer="Logitech",
    product="PTZ Pro 2",
    bus=1,
    address=4,
    uvc_version="1.50",
    controls=("pan_tilt", "zoom", "focus", "auto_focus"),
)
LONE_USB = UsbCamera(
    identity="usb:1d6b:0102",
    vendor_id=0x1D6B,
    product_id=0x0102,
    serial=None,
    manufacturer=None,
    product="Document Camera",
    bus=2,
    address=3,
    uvc_version="1.00",
    controls=(),
)


def test_cameras_found_over_pyusb_are_merged_into_their_v4l2_node(machine: FakeMachine) -> None:
    backend = fake_usb.FakeBackend([fake_usb.usb_microphone(), fake_usb.ptz_camera(address=4)])
    found = find_usb_cameras(backend=backend)
    videos = list_video_devices(machine.root, ioctl=machine.kernel, usb_cameras=found)
    assert [(v.identity, v.node) for v in videos] == [
        ("usb:046d:0853:PTZ0001", "/dev/video0"),
        ("usb:0bda:58b0", "/dev/video2"),
        ("/dev/v4l/by-path/pci-0000:03:00.0-video-index0", "/dev/video3"),
    ]
    ptz = videos[0].usb
    assert ptz is not None and (ptz.uvc_version, ptz.controls) == (
        "1.50",
        ("pan_tilt", "zoom", "focus", "auto_focus"),
    )
    # the same bus address with another VID:PID is another device (re-enumerated): no merge
    moved = [replace(PTZ_USB, vendor_id=0x1234, identity="usb:1234:0853:PTZ0001")]
    videos = list_video_devices(machine.root, ioctl=machine.kernel, usb_cameras=moved)
    assert videos[0].usb is not None and videos[0].usb.uvc_version is None
    assert videos[-1].identity == "usb:1234:0853:PTZ0001" and videos[-1].node is None


def test_struct_layouts_and_request_numbers_match_the_kernel() -> None:
    assert ctypes.sizeof(v4l2abi.V4l2Capability) == 104
    assert ctypes.sizeof(v4l2abi.V4l2Fmtdesc) == 64
    assert ctypes.sizeof(v4l2abi.V4l2Frmsizeenum) == 44
    assert ctypes.sizeof(v4l2abi.V4l2Frmivalenum) == 52
    assert v4l2abi.V4l2Fmtdesc.pixelformat.offset == 44
    assert v4l2abi.V4l2Frmivalenum.interval.offset == 20
    assert (
        v4l2abi.VIDIOC_QUERYCAP,
        v4l2abi.VIDIOC_ENUM_FMT,
        v4l2abi.VIDIOC_ENUM_FRAMESIZES,
        v4l2abi.VIDIOC_ENUM_FRAMEINTERVALS,
    ) == (QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS)
    assert fourcc_code("MJPG") == 0x47504A4D and discovery.fourcc_text(0x56595559) == "YUYV"


def test_devices_json(machine: FakeMachine) -> None:
    inventory = discover(machine.root, ioctl=machine.kernel, usb_cameras=[PTZ_USB, LONE_USB])
    devices: list[dict[str, Any]] = inventory.as_json()
    assert [(d["type"], d["id"]) for d in devices] == [
        ("camera", "usb:046d:0853:PTZ0001"),
        ("camera", "usb:0bda:58b0"),
        ("camera", "usb:1d6b:0102"),
        ("capture-card", "/dev/v4l/by-path/pci-0000:03:00.0-video-index0"),
        ("microphone", "plughw:CARD=PTZPro2,DEV=0"),
        ("display", ":0.0"),
        ("display", "card0-DP-1"),
        ("display", "card0-HDMI-A-1"),
    ]
    ptz, webcam, lone, card, mic, x11, dp, hdmi = devices

    assert ptz["name"] == "PTZ Pro 2" and ptz["driver"] == "uvcvideo" and ptz["error"] is None
    assert ptz["paths"] == {
        "node": "/dev/video0",
        "by_id": [f"/dev/v4l/by-id/{PTZ_BY_ID}-video-index0"],
        "by_path": ["/dev/v4l/by-path/pci-0000:00:14.0-usb-0:2:1.0-video-index0"],
    }
    assert ptz["usb"] == {
        "vendor_id": "046d",
        "product_id": "0853",
        "serial": "PTZ0001",
        "manufacturer": "Logitech",
        "product": "PTZ Pro 2",
        "bus": 1,
        "address": 4,
        "port": "1-2",
        "uvc_version": "1.50",
        "controls": ["pan_tilt", "zoom", "focus", "auto_focus"],
    }
    formats = ptz["formats"]
    assert isinstance(formats, list)
    assert [(f["fourcc"], f["input_format"], f["compressed"]) for f in formats] == [
        ("MJPG", "mjpeg", True),
        ("YUYV", "yuyv422", False),
        ("H264", "h264", True),
    ]
    assert formats[0]["sizes"] == [
        {"width": 1920, "height": 1080, "fps": [30, 15]},
        {"width": 1280, "height": 720, "fps": [60, 30, 15]},
        {"width": 640, "height": 360, "fps": [30]},
    ]
    assert ptz["config"] == (
        '[camera]\nkind = "v4l2"\ndevice = "usb:046d:0853:PTZ0001"\ninput_format = "mjpeg"\n'
        "width = 1280\nheight = 720\nfps = 30\n"
        "# it can pan/tilt/zoom: name positions in [presets.NAME] tables"
    )

    # no pyusb entry for it: sysfs still gives the USB identity; NTSC rate kept exact
    assert webcam["usb"]["uvc_version"] is None and webcam["usb"]["serial"] is None
    assert webcam["paths"]["node"] == "/dev/video2"
    assert webcam["config"] == (
        '[camera]\nkind = "v4l2"\ndevice = "usb:0bda:58b0"\ninput_format = "mjpeg"\n'
        "width = 1280\nheight = 720\nfps = 29.97"
    )

    assert lone["paths"]["node"] is None and lone["formats"] == []
    assert "no V4L2 capture node" in str(lone["error"])
    assert lone["usb"]["uvc_version"] == "1.00" and lone["usb"]["controls"] == []

    assert card["bus"] == "pci" and card["pci_slot"] == "0000:03:00.0"
    assert card["driver"] == "ProCapture" and card["usb"] is None
    card_format = card["formats"][0]
    assert card_format["size_range"] == "64x64-4096x2160 step 2x2"
    assert card_format["sizes"][2] == {
        "width": 1920,
        "height": 1080,
        "fps": [60, 50, 30, 25, 24, 20, 15, 10, 5],
    }
    assert card["config"] == (
        "# an HDMI camera on this card? then use [camera] instead of [board]\n"
        '[board]\nkind = "v4l2"\ndevice = "/dev/v4l/by-path/pci-0000:03:00.0-video-index0"\n'
        'input_format = "yuyv422"\nwidth = 1920\nheight = 1080\nfps = 30'
    )

    assert mic == {
        "type": "microphone",
        "id": "plughw:CARD=PTZPro2,DEV=0",
        "name": "PTZ Pro 2: USB Audio",
        "paths": {"card": 1, "card_id": "PTZPro2", "device": 0},
        "pcm_name": "USB Audio",
        "usb_id": "046d:0853",
        "config": '[mic]\nkind = "alsa"\ndevice = "plughw:CARD=PTZPro2,DEV=0"',
    }
    assert x11["kind"] == "x11grab"
    assert x11["config"] == '[board]\nkind = "x11grab"\ndisplay = ":0.0"\nfps = 5'
    assert (hdmi["connected"], hdmi["preferred_mode"], hdmi["config"]) == (True, "1920x1080", None)
    assert (dp["connected"], dp["preferred_mode"]) == (False, None)
    assert inventory.warnings == []


def test_snippets_are_valid_room_sources(machine: FakeMachine) -> None:
    inventory = discover(machine.root, ioctl=machine.kernel, usb_cameras=[PTZ_USB, LONE_USB])
    for device in inventory.as_json():
        if device["type"] in ("camera", "capture-card"):
            table = tomllib.loads(str(device["config"]))
            V4L2Source.model_validate(next(iter(table.values())))


def test_metadata_nodes_are_queried_but_not_listed(machine: FakeMachine) -> None:
    nodes = [d.node for d in list_video_devices(machine.root, ioctl=machine.kernel)]
    assert nodes == ["/dev/video0", "/dev/video2", "/dev/video3"]
    assert machine.kernel.nodes["video1"].calls == [QUERYCAP]  # skipped after QUERYCAP


def test_a_node_that_cannot_be_opened_is_listed_with_the_reason(machine: FakeMachine) -> None:
    (machine.root / "dev/video2").unlink()
    machine.kernel.nodes["video0"].fail = errno.EIO
    machine.kernel.nodes["video1"].fail = errno.EIO
    devices = {d.node: d for d in list_video_devices(machine.root, ioctl=machine.kernel)}
    assert devices["/dev/video2"].error == "no device node (/dev/video2)"
    assert (
        devices["/dev/video2"].identity == "usb:0bda:58b0" and devices["/dev/video2"].formats == ()
    )
    assert devices["/dev/video0"].error == "Input/output error (/dev/video0)"
    assert devices["/dev/video0"].capture is None
    # video1 (its metadata node) cannot be told apart by ioctl either: index 1 leaves it out
    assert "/dev/video1" not in devices
    inventory = discover(machine.root, ioctl=machine.kernel, usb_cameras=[])
    ptz = next(v for v in inventory.videos if v.node == "/dev/video0")
    assert "# formats unknown (Input/output error (/dev/video0))" in video_snippet(ptz)


def test_identical_cameras_without_serial_are_named_by_port(machine: FakeMachine) -> None:
    webcam(machine, "1-4", 8, "video4")
    ids = [d.identity for d in list_video_devices(machine.root, ioctl=machine.kernel)]
    assert ids == [
        "usb:046d:0853:PTZ0001",
        "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:3:1.0-video-index0",
        "/dev/v4l/by-path/pci-0000:03:00.0-video-index0",
        "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:4:1.0-video-index0",
    ]
    for identity in ids:  # every listed identity resolves back to its own node
        assert resolve_camera(identity, root=machine.root, ioctl=machine.kernel).startswith(
            "/dev/video"
        )
    with pytest.raises(AmbiguousDevice) as caught:
        resolve_camera("usb:0bda:58b0", root=machine.root, ioctl=machine.kernel)
    message = str(caught.value)
    assert "usb:0bda:58b0" in message and "2 cameras" in message and "by-path" in message
    assert "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:3:1.0-video-index0" in message
    assert "/dev/v4l/by-path/pci-0000:00:14.0-usb-0:4:1.0-video-index0" in message


def test_resolve_identities(machine: FakeMachine) -> None:
    kernel, root = machine.kernel, machine.root
    assert resolve_camera("usb:046d:0853:PTZ0001", root=root, ioctl=kernel) == "/dev/video0"
    assert resolve_camera("usb:046D:0853", root=root, ioctl=kernel) == "/dev/video0"
    assert resolve_camera("usb:0bda:58b0", root=root, ioctl=kernel) == "/dev/video2"
    by_id = f"/dev/v4l/by-id/{PTZ_BY_ID}-video-index0"
    assert resolve_camera(by_id, root=root, ioctl=kernel) == "/dev/video0"
    by_path = "/dev/v4l/by-path/pci-0000:03:00.0-video-index0"
    assert resolve_camera(by_path, root=root, ioctl=kernel) == "/dev/video3"
    with pytest.raises(SourceError, match="not a video capture node"):
        resolve_camera(f"/dev/v4l/by-id/{PTZ_BY_ID}-video-index1", root=root, ioctl=kernel)
    with pytest.raises(SourceError, match="not a camera identity"):
        resolve_camera("video0", root=root, ioctl=kernel)
    with pytest.raises(SourceError, match="4 hex digits"):
        resolve_camera("usb:46d:853", root=root, ioctl=kernel)


def test_missing_cameras_name_the_identity_and_near_matches(machine: FakeMachine) -> None:
    kernel, root = machine.kernel, machine.root
    with pytest.raises(DeviceMissing) as caught:
        resolve_camera("usb:046d:0853:PTZ0002", root=root, ioctl=kernel)
    assert str(caught.value) == (
        "camera usb:046d:0853:PTZ0002 is not plugged in; "
        "the same model is, with another serial: usb:046d:0853:PTZ0001"
    )
    with pytest.raises(DeviceMissing) as caught:
        resolve_camera("usb:046d:085e", root=root, ioctl=kernel)
    assert str(caught.value) == (
        "camera usb:046d:085e is not plugged in (no 046d:085e camera found); "
        "USB cameras present: usb:046d:0853:PTZ0001, usb:0bda:58b0"
    )
    with pytest.raises(DeviceMissing) as caught:
        resolve_camera(f"/dev/v4l/by-id/{PTZ_BY_ID}-video-index3", root=root, ioctl=kernel)
    assert str(caught.value) == (
        f"camera /dev/v4l/by-id/{PTZ_BY_ID}-video-index3 is not plugged in; the same device "
        f"has: /dev/v4l/by-id/{PTZ_BY_ID}-video-index0, /dev/v4l/by-id/{PTZ_BY_ID}-video-index1"
    )
    assert isinstance(caught.value, SourceError)


def test_camera_moved_from_video0_to_video2(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    machine = FakeMachine(root)
    ptz_camera(machine, ["video0", "video1"])
    by_id = f"/dev/v4l/by-id/{PTZ_BY_ID}-video-index0"
    cameras = [
        V4L2Camera("camera", x, root=root, ioctl=machine.kernel)
        for x in ("usb:046d:0853:PTZ0001", by_id)
    ]
    assert [c.resolve() for c in cameras] == ["/dev/video0", "/dev/video0"]
    machine.move("video1", "video3")
    machine.move("video0", "video2")
    assert [c.resolve() for c in cameras] == ["/dev/video2", "/dev/video2"]


def test_camera_source_reopens_the_node_the_identity_names_now(tmp_path: Path) -> None:
    """The capture thread resolves at every retry: here no real /dev/videoN exists, so each
    open fails, naming the node it tried."""
    root = tmp_path / "root"
    root.mkdir()
    machine = FakeMachine(root)
    camera = V4L2Camera("camera", "usb:046d:0853:PTZ0001", root=root, ioctl=machine.kernel)
    camera.start(lambda frame, at: None)
    try:
        assert wait_for(lambda: "is not plugged in" in (camera.error or ""))
        assert (
            camera.error
            == "camera usb:046d:0853:PTZ0001 is not plugged in (no USB camera found at all)"
        )
        ptz_camera(machine, ["video57", "video58"])
        assert wait_for(lambda: "/dev/video57" in (camera.error or ""))
        assert str(camera.error).startswith(
            "camera usb:046d:0853:PTZ0001: video4linux2 /dev/video57"
        )
        assert camera.frames == 0
    finally:
        camera.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_text_output_groups_and_snippets(machine: FakeMachine) -> None:
    text = format_text(discover(machine.root, ioctl=machine.kernel, usb_cameras=[PTZ_USB]))
    assert text.index("Cameras (2)") < text.index("Capture cards (1)")
    assert text.index("Capture cards (1)") < text.index("Microphones (1)")
    assert text.index("Microphones (1)") < text.index("Displays (3)")
    assert "  PTZ Pro 2  —  usb:046d:0853:PTZ0001\n" in text
    assert "UVC 1.50; controls: pan_tilt, zoom, focus, auto_focus" in text
    assert "    mjpeg: 1920x1080@30 1280x720@60 640x360@30\n" in text
    assert '      device = "usb:046d:0853:PTZ0001"\n' in text
    assert "    monitor output: connected, preferred mode 1920x1080\n" in text


def test_empty_machine(tmp_path: Path) -> None:
    inventory = discover(tmp_path, usb_cameras=[])
    assert inventory.as_json() == []
    assert format_text(inventory).startswith("no cameras, capture cards, microphones or displays")
