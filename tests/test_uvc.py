"""UVC camera control against the fake pyusb backend (real descriptor and request bytes)."""

from __future__ import annotations

import pytest

from capture.uvc import (
    ControlRange,
    NoCameraControl,
    Position,
    UsbCamera,
    UvcCamera,
    UvcError,
    find_usb_cameras,
    parse_identity,
)
from tests.fake_usb import (
    CT_FOCUS_AUTO,
    FakeBackend,
    FakeDevice,
    classroom,
    plain_webcam,
    ptz_camera,
    usb_microphone,
    uvc_camera,
)
from tests.fake_usb import zoom as zoom_control

PTZ = "usb:046d:0853:PTZ0001"
WEBCAM = "usb:0c45:6366"
GET, SET = 0xA1, 0x21
# wIndex = camera terminal id << 8 | VideoControl interface number
PTZ_INDEX = 0x0100  # terminal 1 on interface 0
WEBCAM_INDEX = 0x0302  # terminal 3 on interface 2


def device(backend: FakeBackend, product_id: int) -> FakeDevice:
    return next(d for d in backend.devices if d.descriptor.idProduct == product_id)


@pytest.fixture
def backend() -> FakeBackend:
    return classroom()


@pytest.fixture
def ptz(backend: FakeBackend) -> FakeDevice:
    return device(backend, 0x0853)


@pytest.fixture
def camera(backend: FakeBackend) -> UvcCamera:
    return UvcCamera(PTZ, backend=backend)


# -- discovery -----------------------------------------------------------------------------


def test_discovery_lists_only_video_devices_with_identity_version_and_controls(
    backend: FakeBackend,
) -> None:
    assert find_usb_cameras(backend) == [
        UsbCamera(
            identity="usb:0c45:6366",
            vendor_id=0x0C45,
            product_id=0x6366,
            serial=None,
            manufacturer="Sonix",
            product="USB 2.0 Camera",
            bus=1,
            address=3,
            uvc_version="1.00",
            controls=("auto_focus",),
        ),
        UsbCamera(
            identity="usb:046d:0853:PTZ0001",
            vendor_id=0x046D,
            product_id=0x0853,
            serial="PTZ0001",
            manufacturer="Logitech",
            product="PTZ Pro Camera",
            bus=1,
            address=4,
            uvc_version="1.50",
            controls=("pan_tilt", "zoom", "focus", "auto_focus"),
        ),
    ]
    # The microphone (an AudioControl INPUT_TERMINAL of type 0x0201) is not a camera, and
    # discovery leaves no device open.
    assert all(not d.handles for d in backend.devices)


def test_camera_json_and_ptz_flag(backend: FakeBackend) -> None:
    webcam, ptz = find_usb_cameras(backend)
    assert ptz.has_ptz and not webcam.has_ptz
    assert ptz.as_json() == {
        "identity": "usb:046d:0853:PTZ0001",
        "vendor_id": "046d",
        "product_id": "0853",
        "serial": "PTZ0001",
        "manufacturer": "Logitech",
        "product": "PTZ Pro Camera",
        "bus": 1,
        "address": 4,
        "uvc_version": "1.50",
        "controls": ["pan_tilt", "zoom", "focus", "auto_focus"],
        "has_ptz": True,
    }


def test_controls_come_from_the_camera_terminal_bits() -> None:
    # Zoom only (bit 9) in a two-byte bmControls, UVC 1.10, terminal 5 on interface 1.
    zoom_only = uvc_camera(
        vendor_id=0x1234,
        product_id=0x5678,
        strings=(None, None, None),
        uvc_version=0x0110,
        controls={0x0B: zoom_control()},
        vc_interface=1,
        terminal_id=5,
        control_size=2,
    )
    [found] = find_usb_cameras(FakeBackend([zoom_only]))
    assert (found.uvc_version, found.controls, found.has_ptz) == ("1.10", ("zoom",), True)
    with UvcCamera("usb:1234:5678", backend=FakeBackend([zoom_only])) as camera:
        assert camera.get("zoom") == 100
    assert zoom_only.uvc_requests() == [(GET, 0x81, 0x0B00, 0x0501, 2)]


def test_unreadable_strings_are_none_not_a_crash(backend: FakeBackend, ptz: FakeDevice) -> None:
    ptz.no_permission = True
    found = {c.product_id: c for c in find_usb_cameras(backend)}[0x0853]
    assert (found.serial, found.manufacturer, found.product) == (None, None, None)
    assert found.identity == "usb:046d:0853"
    assert found.controls == ("pan_tilt", "zoom", "focus", "auto_focus")


# -- identities ----------------------------------------------------------------------------


def test_parse_identity() -> None:
    assert parse_identity("usb:046d:0853") == (0x046D, 0x0853, None)
    assert parse_identity("USB:046D:0853:PTZ0001") == (0x046D, 0x0853, "PTZ0001")
    assert parse_identity("usb:046d:0853:A:B") == (0x046D, 0x0853, "A:B")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("/dev/video0", "not a USB camera identity"),
        ("usb:46d:0853", "vendor id '46d' is not 4 hex digits"),
        ("usb:046d:08g3", "product id '08g3' is not 4 hex digits"),
        ("usb:046d:0853:", "empty serial"),
        ("usb:046d", "not a USB camera identity"),
    ],
)
def test_parse_identity_refuses_with_a_clear_message(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_identity(text)
    assert 'expected "usb:VID:PID"' in str(caught.value)


def test_opening_absent_ambiguous_and_non_video_devices(backend: FakeBackend) -> None:
    with pytest.raises(UvcError, match=r"usb:046d:0853:OTHER is not plugged in .*PTZ0001"):
        UvcCamera("usb:046d:0853:OTHER", backend=backend)
    with pytest.raises(UvcError, match="usb:1111:2222 is not plugged in"):
        UvcCamera("usb:1111:2222", backend=backend)
    with pytest.raises(UvcError, match="usb:0d8c:0014 is not a UVC camera"):
        UvcCamera("usb:0d8c:0014", backend=backend)
    twins = FakeBackend([ptz_camera(address=4), ptz_camera(address=5)])
    device(twins, 0x0853).strings[3] = "PTZ0002"
    with pytest.raises(UvcError, match=r"several cameras .*PTZ0002.*name one by its serial"):
        UvcCamera("usb:046d:0853", backend=twins)
    assert all(not d.handles for d in twins.devices)


# -- request bytes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_name", "code"),
    [("cur", 0x81), ("min", 0x82), ("max", 0x83), ("res", 0x84), ("def", 0x87)],
)
@pytest.mark.parametrize(
    ("control", "selector", "length"),
    [("pan_tilt", 0x0D, 8), ("zoom", 0x0B, 2), ("focus", 0x06, 2)],
)
def test_get_request_bytes(
    camera: UvcCamera,
    ptz: FakeDevice,
    control: str,
    selector: int,
    length: int,
    request_name: str,
    code: int,
) -> None:
    camera.get(control, request_name)
    assert ptz.uvc_requests() == [(GET, code, selector << 8, PTZ_INDEX, length)]
    assert 0 in ptz.claimed  # pyusb claimed the VideoControl interface for the request


def test_get_values_decode_little_endian_and_signed(camera: UvcCamera, ptz: FakeDevice) -> None:
    assert camera.get("pan_tilt", "min") == (-170 * 3600, -30 * 3600)
    assert camera.get("pan_tilt", "max") == (170 * 3600, 90 * 3600)
    assert camera.get("zoom", "res") == 10
    assert camera.get("auto_focus") is True
    assert camera.get("auto_focus", "def") is True
    assert ptz.uvc_requests()[-2:] == [
        (GET, 0x81, 0x0800, PTZ_INDEX, 1),
        (GET, 0x87, 0x0800, PTZ_INDEX, 1),
    ]
    with pytest.raises(ValueError, match="auto_focus answers only cur, def"):
        camera.get("auto_focus", "min")
    with pytest.raises(ValueError, match="not one of cur, min, max, res, def"):
        camera.get("zoom", "len")
    with pytest.raises(ValueError, match="unknown control 'iris'"):
        camera.get("iris")


def test_set_cur_bytes_for_each_control(camera: UvcCamera, ptz: FakeDevice) -> None:
    camera.move(Position(pan=-36000, tilt=7200, zoom=330, focus=100))
    sets = [r for r in ptz.uvc_requests() if r[1] == 0x01]
    assert sets == [
        # dwPanAbsolute -36000 = 0xFFFF7360, dwTiltAbsolute 7200 = 0x1C20, little-endian
        (SET, 0x01, 0x0D00, PTZ_INDEX, bytes.fromhex("6073ffff 201c0000")),
        (SET, 0x01, 0x0B00, PTZ_INDEX, bytes.fromhex("4a01")),  # zoom 330
        (SET, 0x01, 0x0800, PTZ_INDEX, bytes.fromhex("00")),  # auto focus off first
        (SET, 0x01, 0x0600, PTZ_INDEX, bytes.fromhex("6400")),  # focus 100
    ]


def test_webcam_requests_use_its_terminal_and_interface(backend: FakeBackend) -> None:
    webcam = device(backend, 0x6366)
    with UvcCamera(WEBCAM, backend=backend) as camera:
        assert camera.position() == Position(auto_focus=True)
        assert camera.move(Position(auto_focus=False)) == Position(auto_focus=False)
    assert webcam.uvc_requests() == [
        (GET, 0x81, 0x0800, WEBCAM_INDEX, 1),
        (SET, 0x01, 0x0800, WEBCAM_INDEX, b"\x00"),
        (GET, 0x81, 0x0800, WEBCAM_INDEX, 1),
    ]
    assert not webcam.handles and not webcam.claimed  # close() released both


# -- presets, clamping, snapping -----------------------------------------------------------


def test_preset_round_trip(camera: UvcCamera) -> None:
    board = Position(pan=-20 * 3600, tilt=5 * 3600, zoom=250, focus=120, auto_focus=False)
    assert camera.move(board) == board
    saved = camera.position().as_json()
    assert saved == {"pan": -72000, "tilt": 18000, "zoom": 250, "focus": 120, "auto_focus": False}
    camera.move(Position(pan=0, tilt=0, zoom=100, auto_focus=True))
    assert camera.position() != board
    assert camera.move(Position.from_json(saved)) == board


def test_clamping_and_snapping(camera: UvcCamera) -> None:
    far = camera.move(Position(pan=10**9, tilt=-(10**9), zoom=65535, focus=1))
    assert far == Position(pan=612000, tilt=-108000, zoom=500, focus=0, auto_focus=False)
    near = camera.move(Position(pan=5000, tilt=1799, zoom=334, focus=248))
    assert (near.pan, near.tilt, near.zoom, near.focus) == (3600, 0, 330, 250)
    assert camera.range("zoom") == ControlRange(100, 500, 10)
    assert ControlRange(0, 250, 5).fit(252) == 250
    assert ControlRange(0, 252, 5).fit(252) == 250  # never snaps above the maximum


def test_move_keeps_the_other_axis_and_untouched_controls(camera: UvcCamera) -> None:
    camera.move(Position(pan=3600, tilt=7200, zoom=200))
    after = camera.move(Position(tilt=-3600))
    assert (after.pan, after.tilt, after.zoom) == (3600, -3600, 200)
    assert after.auto_focus is True  # nothing asked about focus


def test_auto_focus_true_leaves_focus_alone(camera: UvcCamera, ptz: FakeDevice) -> None:
    camera.move(Position(focus=50))
    ptz.requests.clear()
    assert camera.move(Position(focus=200, auto_focus=True)).auto_focus is True
    assert [r for r in ptz.uvc_requests() if r[1] == 0x01] == [
        (SET, 0x01, 0x0800, PTZ_INDEX, b"\x01")
    ]


def test_nudge_moves_whole_steps_within_range(camera: UvcCamera) -> None:
    camera.move(Position(pan=0, tilt=0, zoom=480))
    moved = camera.nudge(pan=-2, tilt=1, zoom=1)
    assert (moved.pan, moved.tilt, moved.zoom) == (-7200, 3600, 490)
    assert camera.nudge(zoom=5).zoom == 500
    assert camera.nudge(pan=-1000).pan == -612000


def test_ranges_are_read_once(camera: UvcCamera, ptz: FakeDevice) -> None:
    pan, tilt = camera.range("pan_tilt")
    assert (pan, tilt) == (ControlRange(-612000, 612000, 3600), ControlRange(-108000, 324000, 3600))
    camera.range("pan_tilt")
    assert len(ptz.uvc_requests()) == 3  # GET_MIN, GET_MAX, GET_RES
    with pytest.raises(ValueError, match="on or off"):
        camera.range("auto_focus")


def test_position_json_validation() -> None:
    assert Position.from_json({"pan": 3600, "auto_focus": True}) == Position(3600, auto_focus=True)
    assert Position(zoom=3).as_json() == {"zoom": 3}
    with pytest.raises(ValueError, match="unknown position key 'roll'"):
        Position.from_json({"roll": 1})
    with pytest.raises(ValueError, match=r"pan: 1\.5 is not a whole number"):
        Position.from_json({"pan": 1.5})
    with pytest.raises(ValueError, match="zoom: True is not a whole number"):
        Position.from_json({"zoom": True})
    with pytest.raises(ValueError, match="auto_focus: 1 is not true or false"):
        Position.from_json({"auto_focus": 1})


# -- a camera without PTZ ------------------------------------------------------------------


def test_webcam_without_ptz(backend: FakeBackend) -> None:
    webcam = device(backend, 0x6366)
    camera = UvcCamera(WEBCAM, backend=backend)
    assert camera.info.controls == ("auto_focus",) and not camera.info.has_ptz
    with pytest.raises(NoCameraControl, match=f"camera {WEBCAM} has no pan/tilt"):
        camera.move(Position(pan=0, auto_focus=False))
    with pytest.raises(NoCameraControl, match="has no zoom"):
        camera.nudge(zoom=1)
    with pytest.raises(NoCameraControl, match="has no focus"):
        camera.range("focus")
    assert webcam.uvc_requests() == []  # refused before anything was sent
    assert camera.nudge() == Position(auto_focus=True)


# -- failures ------------------------------------------------------------------------------


def test_unplugged_camera(backend: FakeBackend, ptz: FakeDevice, camera: UvcCamera) -> None:
    camera.get("zoom")
    ptz.unplug()
    with pytest.raises(UvcError, match=rf"camera {PTZ} is gone \(unplugged\?\): GET_CUR pan_tilt"):
        camera.position()
    camera.close()
    with pytest.raises(UvcError, match="is closed"):
        camera.get("zoom")
    with pytest.raises(UvcError, match=f"camera {PTZ} is not plugged in"):
        UvcCamera(PTZ, backend=backend)
    assert [c.product_id for c in find_usb_cameras(backend)] == [0x6366]


def test_busy_interface_says_uvcvideo_holds_it(ptz: FakeDevice, camera: UvcCamera) -> None:
    ptz.busy = True
    with pytest.raises(UvcError) as caught:
        camera.get("zoom")
    message = str(caught.value)
    assert f"camera {PTZ}: GET_CUR zoom failed" in message
    assert "interface 0 is busy" in message and "uvcvideo" in message
    assert ptz.detach_calls == 0  # the kernel driver (and the picture) is left alone
    assert ptz.uvc_requests() == []
    ptz.busy = False
    assert camera.get("zoom") == 100


def test_stall_reports_the_cameras_reason(camera: UvcCamera, ptz: FakeDevice) -> None:
    camera.range("zoom")
    ptz.refuse_next = 0x01
    with pytest.raises(UvcError, match=rf"{PTZ} refused SET_CUR zoom \(request stalled: not ready"):
        camera.move(Position(zoom=200))
    # After the STALL it asked VC_REQUEST_ERROR_CODE_CONTROL (entity 0, the interface).
    assert ptz.uvc_requests()[-1] == (GET, 0x81, 0x0200, 0x0000, 1)


def test_fake_stalls_like_a_device(ptz: FakeDevice, backend: FakeBackend) -> None:
    """The fake itself: out-of-range SET_CUR and unknown selectors STALL with errno 32."""
    import usb.core

    [found] = [d for d in usb.core.find(find_all=True, backend=backend) if d.idProduct == 0x0853]
    with pytest.raises(usb.core.USBError) as caught:
        found.ctrl_transfer(SET, 0x01, 0x0B00, PTZ_INDEX, b"\xff\xff")
    assert caught.value.errno == 32
    assert bytes(found.ctrl_transfer(GET, 0x81, 0x0200, 0, 1)) == b"\x04"  # out of range
    with pytest.raises(usb.core.USBError):
        found.ctrl_transfer(GET, 0x81, 0x0F00, PTZ_INDEX, 2)  # roll: not on this camera
    assert bytes(found.ctrl_transfer(GET, 0x81, 0x0200, 0, 1)) == b"\x06"  # invalid control
    assert ptz.controls[CT_FOCUS_AUTO].current == (1,)
    assert found.serial_number == "PTZ0001"
    assert usb_microphone().vc_interface is None and plain_webcam().vc_interface == 2
