"""Camera controls through a V4L2 node, against a fake kernel that reads and writes the
struct bytes at the offsets of linux/videodev2.h (not from the code under test) and answers
like uvcvideo; and CameraControl falling back to it when the USB interface is busy."""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from capture.discovery import DeviceMissing
from capture.uvc import ControlRange, NoCameraControl, Position, UvcError
from capture.v4l2ctl import V4l2Head
from edge.config.settings import PresetSettings
from edge.live.ptz import CameraControl, CameraControlError
from tests.fake_usb import FakeBackend, FakeDevice, ptz_camera

# The kernel's numbers (gcc on <linux/videodev2.h>, linux-libc-dev 6.1: the VIDIOC_* macros,
# sizeof and offsetof of struct v4l2_queryctrl and struct v4l2_control).
QUERYCTRL, G_CTRL, S_CTRL = 0xC0445624, 0xC008561B, 0xC008561C
SIZES = {QUERYCTRL: 68, G_CTRL: 8, S_CTRL: 8}
QUERYCTRL_LAYOUT = "<II32siiiiI8x"  # id type name minimum maximum step default_value flags
PAN, TILT, FOCUS, FOCUS_AUTO, ZOOM = 0x009A0908, 0x009A0909, 0x009A090A, 0x009A090C, 0x009A090D
INTEGER, BOOLEAN = 1, 2
DISABLED, READ_ONLY, INACTIVE, WRITE_ONLY = 0x0001, 0x0004, 0x0010, 0x0040
IDENTITY = "usb:046d:0853:PTZ0001"


@dataclass
class FakeControl:
    name: str
    type: int
    minimum: int
    maximum: int
    step: int
    default: int
    value: int
    flags: int = 0
    master: int | None = None  # the auto control that must be off (0) to write this one


@dataclass
class FakeUvcvideo:
    """`ioctl(fd, request, buffer)` like uvcvideo for one node. Stricter than uvcvideo on
    S_CTRL (which clamps and snaps): ERANGE outside the range, EINVAL off the step, so
    that a test sees what was sent."""

    node: Path
    controls: dict[int, FakeControl]
    calls: list[tuple[int, bytes]] = field(default_factory=list)  # request, bytes passed in
    unplugged: bool = False

    def __call__(self, fd: int, request: int, buffer: object) -> int:
        assert Path(os.readlink(f"/proc/self/fd/{fd}")) == self.node, "ioctl on another fd"
        data = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        self.calls.append((request, bytes(data)))
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        if request not in SIZES or len(data) != SIZES[request]:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        (cid,) = struct.unpack_from("<I", data, 0)
        control = self.controls.get(cid)
        if control is None:
            raise OSError(errno.EINVAL, "Invalid argument")
        if request == QUERYCTRL:
            flags = control.flags | (INACTIVE if self._slaved(control) else 0)
            struct.pack_into(
                QUERYCTRL_LAYOUT,
                data,
                0,
                cid,
                control.type,
                control.name.encode(),
                control.minimum,
                control.maximum,
                control.step,
                control.default,
                flags,
            )
            return 0
        if control.flags & DISABLED:
            raise OSError(errno.EINVAL, "Invalid argument")
        if request == G_CTRL:
            if control.flags & WRITE_ONLY:
                raise OSError(errno.EACCES, "Permission denied")
            struct.pack_into("<i", data, 4, control.value)
            return 0
        (value,) = struct.unpack_from("<i", data, 4)
        if control.flags & READ_ONLY or self._slaved(control):
            raise OSError(errno.EACCES, "Permission denied")  # uvc_ctrl_is_accessible
        if not control.minimum <= value <= control.maximum:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        if control.step > 1 and (value - control.minimum) % control.step:
            raise OSError(errno.EINVAL, "Invalid argument")
        control.value = value
        return 0

    def _slaved(self, control: FakeControl) -> bool:
        return control.master is not None and self.controls[control.master].value != 0

    def sets(self) -> list[tuple[int, int]]:
        """(control id, value) of every S_CTRL, decoded at the kernel's offsets."""
        return [struct.unpack("<Ii", raw) for request, raw in self.calls if request == S_CTRL]


def ptz_controls() -> dict[int, FakeControl]:
    """The fake_usb PTZ camera as uvcvideo shows it: ±170° pan, -30°…+90° tilt, 1° steps."""
    return {
        PAN: FakeControl("Pan, Absolute", INTEGER, -612000, 612000, 3600, 0, 0),
        TILT: FakeControl("Tilt, Absolute", INTEGER, -108000, 324000, 3600, 0, 0),
        ZOOM: FakeControl("Zoom, Absolute", INTEGER, 100, 500, 10, 100, 100),
        FOCUS: FakeControl("Focus, Absolute", INTEGER, 0, 250, 5, 0, 0, master=FOCUS_AUTO),
        FOCUS_AUTO: FakeControl("Focus, Automatic Continuous", BOOLEAN, 0, 1, 1, 1, 1),
    }


@pytest.fixture
def node(tmp_path: Path) -> Path:
    path = tmp_path / "video0"
    path.write_bytes(b"")
    return path


@pytest.fixture
def kernel(node: Path) -> FakeUvcvideo:
    return FakeUvcvideo(node, ptz_controls())


@pytest.fixture
def head(node: Path, kernel: FakeUvcvideo) -> V4l2Head:
    return V4l2Head(str(node), name=IDENTITY, ioctl=kernel)


# -- the head ------------------------------------------------------------------------------


def test_queryctrl_bytes_for_each_control_and_the_controls_found(
    head: V4l2Head, kernel: FakeUvcvideo
) -> None:
    queried = [(request, raw) for request, raw in kernel.calls if request == QUERYCTRL]
    assert [struct.unpack_from("<I", raw)[0] for _, raw in queried] == [
        PAN,
        TILT,
        ZOOM,
        FOCUS,
        FOCUS_AUTO,
    ]
    assert all(len(raw) == 68 and raw[4:] == bytes(64) for _, raw in queried)
    assert len(kernel.calls) == 5
    assert head.controls == ("pan_tilt", "zoom", "focus", "auto_focus") and head.has_ptz


def test_ranges_come_from_queryctrl(head: V4l2Head) -> None:
    assert head.range("pan_tilt") == (
        ControlRange(-612000, 612000, 3600),
        ControlRange(-108000, 324000, 3600),
    )
    assert head.range("zoom") == ControlRange(100, 500, 10)
    assert head.range("focus") == ControlRange(0, 250, 5)
    with pytest.raises(ValueError, match="no range"):
        head.range("auto_focus")
    with pytest.raises(ValueError, match="unknown control"):
        head.range("iris")


def test_position_reads_every_control_with_g_ctrl(head: V4l2Head, kernel: FakeUvcvideo) -> None:
    kernel.controls[PAN].value, kernel.controls[TILT].value = -7200, 10800
    kernel.controls[ZOOM].value = 230
    kernel.calls.clear()
    assert head.position() == Position(pan=-7200, tilt=10800, zoom=230, focus=0, auto_focus=True)
    assert [(request, raw) for request, raw in kernel.calls] == [
        (G_CTRL, struct.pack("<Ii", cid, 0)) for cid in (PAN, TILT, ZOOM, FOCUS, FOCUS_AUTO)
    ]


def test_move_sends_s_ctrl_bytes_clamped_and_snapped(head: V4l2Head, kernel: FakeUvcvideo) -> None:
    kernel.calls.clear()
    where = head.move(Position(pan=1_000_000, tilt=-5000, zoom=123))
    assert [(request, raw) for request, raw in kernel.calls if request == S_CTRL] == [
        (S_CTRL, struct.pack("<Ii", PAN, 612000)),  # clamped to +170°
        (S_CTRL, struct.pack("<Ii", TILT, -3600)),  # snapped to a whole degree
        (S_CTRL, struct.pack("<Ii", ZOOM, 120)),
    ]
    assert (where.pan, where.tilt, where.zoom) == (612000, -3600, 120)
    assert head.move(Position(pan=-1801, zoom=99)).pan == -3600  # rounds to the nearer step
    assert (kernel.controls[PAN].value, kernel.controls[ZOOM].value) == (-3600, 100)


def test_pan_alone_is_one_s_ctrl(head: V4l2Head, kernel: FakeUvcvideo) -> None:
    kernel.controls[TILT].value = 36000
    kernel.calls.clear()
    assert head.move(Position(pan=7200)).tilt == 36000
    assert kernel.sets() == [(PAN, 7200)]


def test_focus_turns_auto_focus_off_first(head: V4l2Head, kernel: FakeUvcvideo) -> None:
    assert head.move(Position(focus=123)) == Position(
        pan=0, tilt=0, zoom=100, focus=125, auto_focus=False
    )
    assert kernel.sets() == [(FOCUS_AUTO, 0), (FOCUS, 125)]
    kernel.calls.clear()
    assert head.move(Position(focus=200, auto_focus=True)).auto_focus is True
    assert kernel.sets() == [(FOCUS_AUTO, 1)]  # the focus is left to the camera


def test_the_fake_refuses_focus_under_auto_focus_and_the_message_says_why(
    node: Path, kernel: FakeUvcvideo
) -> None:
    # A driver without the auto focus control on the head's list, but with focus slaved.
    kernel.controls[FOCUS_AUTO].flags = DISABLED
    head = V4l2Head(str(node), name=IDENTITY, ioctl=kernel)
    assert head.controls == ("pan_tilt", "zoom", "focus")
    with pytest.raises(UvcError, match=r"refused VIDIOC_S_CTRL focus=50: auto focus owns"):
        head.move(Position(focus=50))
    assert kernel.controls[FOCUS].value == 0


def test_nudge_moves_whole_steps_within_the_range(head: V4l2Head, kernel: FakeUvcvideo) -> None:
    kernel.controls[ZOOM].value = 110
    where = head.nudge(pan=2, tilt=-1, zoom=-3)
    assert (where.pan, where.tilt, where.zoom) == (7200, -3600, 100)
    kernel.controls[PAN].value = 608400
    kernel.calls.clear()
    assert head.nudge(pan=5).pan == 612000
    assert kernel.sets() == [(PAN, 612000)]


def test_a_camera_without_pan_tilt_is_reported_as_such(node: Path) -> None:
    kernel = FakeUvcvideo(node, {FOCUS_AUTO: ptz_controls()[FOCUS_AUTO]})
    head = V4l2Head(str(node), name="usb:0c45:6366", ioctl=kernel)
    assert head.controls == ("auto_focus",) and not head.has_ptz
    assert head.position() == Position(auto_focus=True)
    kernel.calls.clear()
    with pytest.raises(NoCameraControl, match=r"camera usb:0c45:6366 \(.*video0\) has no pan/tilt"):
        head.move(Position(pan=0, auto_focus=False))
    with pytest.raises(NoCameraControl, match="has no zoom"):
        head.nudge(zoom=1)
    with pytest.raises(NoCameraControl, match="has no focus"):
        head.range("focus")
    assert kernel.calls == []  # nothing moved, not even auto focus


def test_pan_without_tilt_or_a_disabled_control_is_no_pan_tilt(node: Path) -> None:
    controls = ptz_controls()
    del controls[TILT]
    controls[ZOOM].flags = DISABLED
    head = V4l2Head(str(node), ioctl=FakeUvcvideo(node, controls))
    assert head.controls == ("focus", "auto_focus")
    assert head.position().pan is None and head.position().zoom is None


def test_read_only_control_refused_with_a_clear_message(
    head: V4l2Head, kernel: FakeUvcvideo
) -> None:
    kernel.controls[ZOOM].flags = READ_ONLY
    with pytest.raises(UvcError, match=r"refused VIDIOC_S_CTRL zoom=200: .*read-only"):
        head.move(Position(zoom=200))


def test_unplugged_open_failures_and_close(node: Path, kernel: FakeUvcvideo) -> None:
    head = V4l2Head(str(node), name=IDENTITY, ioctl=kernel)
    kernel.unplugged = True
    with pytest.raises(UvcError, match=r"camera usb:046d:0853:PTZ0001 .* is gone \(unplugged\?\)"):
        head.position()
    with pytest.raises(UvcError, match="no device node"):
        V4l2Head(str(node.parent / "video9"), ioctl=kernel)

    def refuse(path: str) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with pytest.raises(UvcError, match=r"permission denied .* 'video' group"):
        V4l2Head(str(node), ioctl=kernel, opener=refuse)
    open_fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(UvcError, match="gone"):
        V4l2Head(str(node), ioctl=kernel)  # QUERYCTRL fails: the fd is closed again
    assert len(os.listdir("/proc/self/fd")) == open_fds
    head.close()
    head.close()
    assert len(os.listdir("/proc/self/fd")) == open_fds - 1  # the head's handle is closed
    with pytest.raises(UvcError, match="is closed"):
        head.position()


# -- CameraControl: V4L2 while the camera streams, UVC without a node ----------------------


@pytest.fixture
def busy_camera() -> FakeDevice:
    device = ptz_camera()
    device.busy = True  # uvcvideo is bound to the VideoControl interface
    return device


def control(device: FakeDevice, kernel: FakeUvcvideo | None) -> CameraControl:
    def found(identity: str) -> str:
        assert identity == IDENTITY
        if kernel is None:
            raise DeviceMissing(f"camera {identity} is not plugged in (no USB camera found at all)")
        return str(kernel.node)

    board = {"pan": -36000, "tilt": 7200, "zoom": 200, "focus": 60}
    presets = {"board": PresetSettings.model_validate(board)}
    return CameraControl(
        "r1",
        IDENTITY,
        presets,
        None,
        backend=FakeBackend([device]),
        resolve=found,
        ioctl=kernel if kernel is not None else FakeUvcvideo(Path("/nonexistent"), {}),
    )


async def test_streaming_camera_is_steered_through_its_v4l2_node(
    busy_camera: FakeDevice, kernel: FakeUvcvideo
) -> None:
    camera = control(busy_camera, kernel)
    state = await camera.state()
    assert state["via"] == "v4l2" and state["available"] is True and state["error"] is None
    assert state["controls"] == ["pan_tilt", "zoom", "focus", "auto_focus"]
    assert state["position"] == {"pan": 0, "tilt": 0, "zoom": 100, "focus": 0, "auto_focus": True}
    where = await camera.recall("board")
    assert where == Position(pan=-36000, tilt=7200, zoom=200, focus=60, auto_focus=False)
    assert kernel.sets() == [(PAN, -36000), (TILT, 7200), (ZOOM, 200), (FOCUS_AUTO, 0), (FOCUS, 60)]
    kernel.calls.clear()
    assert (await camera.nudge(pan=1, zoom=1)).pan == -18000  # 5° a press, a tenth of the zoom
    assert kernel.sets() == [(PAN, -18000), (ZOOM, 240)]
    assert busy_camera.uvc_requests() == [] and busy_camera.claimed == set()
    await camera.close()


async def test_camera_without_a_v4l2_node_is_steered_over_usb(kernel: FakeUvcvideo) -> None:
    device = ptz_camera()
    camera = control(device, None)
    state = await camera.state()
    assert state["via"] == "usb" and state["available"] is True
    assert (await camera.recall("board")).pan == -36000
    assert device.controls[0x0D].current == (-36000, 7200)  # CT_PANTILT_ABSOLUTE over USB
    assert kernel.calls == []
    await camera.close()


async def test_busy_usb_without_a_node_names_both_reasons(busy_camera: FakeDevice) -> None:
    camera = control(busy_camera, None)
    state = await camera.state()
    assert state["available"] is False and state["via"] is None
    message = str(state["error"])
    assert message.startswith("Không điều khiển được camera: ")
    assert "busy, held by the kernel's uvcvideo driver" in message
    assert "(V4L2: camera usb:046d:0853:PTZ0001 is not plugged in" in message
    with pytest.raises(CameraControlError) as refused:
        await camera.recall("board")
    assert refused.value.status == 503


async def test_node_that_will_not_open_falls_back_to_usb(tmp_path: Path) -> None:
    device = ptz_camera()
    gone = FakeUvcvideo(tmp_path / "video7", ptz_controls())  # no such file: ENOENT on open
    camera = control(device, gone)
    assert (await camera.state())["via"] == "usb"
    assert device.claimed == {0}


async def test_unplugged_mid_lesson_reopens_through_the_node(
    busy_camera: FakeDevice, kernel: FakeUvcvideo
) -> None:
    camera = control(busy_camera, kernel)
    assert (await camera.state())["via"] == "v4l2"
    kernel.unplugged = True
    with pytest.raises(CameraControlError, match="gone") as refused:
        await camera.nudge(pan=1)
    assert refused.value.status == 503 and camera.error is not None
    kernel.unplugged = False  # plugged in again: the next call opens the node anew
    assert (await camera.nudge(pan=1)).pan == 18000
    assert camera.error is None


def test_the_real_ioctl_on_a_node_that_is_not_v4l2() -> None:
    # fcntl.ioctl itself takes the ctypes structs; /dev/null answers ENOTTY like any non-V4L2 file.
    with pytest.raises(UvcError, match=r"/dev/null is not a V4L2 device \(VIDIOC_QUERYCTRL pan"):
        V4l2Head("/dev/null", name=IDENTITY)
