"""A fake pyusb backend: USB devices built from real descriptor bytes (standard and
class-specific) that answer control requests like hardware behind libusb would.

    backend = FakeBackend([ptz_camera(), plain_webcam(), usb_microphone()])
    usb.core.find(find_all=True, backend=backend)

A UVC camera answers GET_CUR/MIN/MAX/RES/DEF/INFO/LEN and SET_CUR on its camera terminal
from a per-control state, STALLs (USBError errno 32, as libusb reports LIBUSB_ERROR_PIPE)
unsupported selectors, requests, out-of-range values and a focus while auto focus is on
("wrong state"), and then reports why through
VC_REQUEST_ERROR_CODE_CONTROL. Every control request is recorded in `device.requests` as
(bmRequestType, bRequest, wValue, wIndex, data bytes for OUT / wLength for IN).
`device.unplug()` makes it vanish (ENODEV on open handles), `device.busy = True` makes the
VideoControl interface refuse a claim with EBUSY (uvcvideo bound), and
`device.no_permission = True` refuses open with EACCES (descriptors stay readable).
"""

from __future__ import annotations

import array
import errno
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import usb.backend
import usb.core

Request = tuple[int, int, int, int, bytes | int]

# libusb error codes (libusb.h) as pyusb's libusb1 backend raises them.
LIBUSB_ERROR_ACCESS = -3
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_BUSY = -6
LIBUSB_ERROR_PIPE = -9

CS_INTERFACE = 0x24
CT_FOCUS_ABSOLUTE = 0x06
CT_FOCUS_AUTO = 0x08
CT_ZOOM_ABSOLUTE = 0x0B
CT_PANTILT_ABSOLUTE = 0x0D
GET_INFO = 0x86
GET_LEN = 0x85
_GETS = {0x81: "cur", 0x82: "min", 0x83: "max", 0x84: "res", 0x87: "def"}
# bmControls bit of each selector (UVC 1.5, table 3-6).
_CONTROL_BITS = {
    CT_FOCUS_ABSOLUTE: 5,
    CT_ZOOM_ABSOLUTE: 9,
    CT_PANTILT_ABSOLUTE: 11,
    CT_FOCUS_AUTO: 17,
}


def usb_error(code: int, number: int, text: str) -> usb.core.USBError:
    return usb.core.USBError(text, code, number)


def stall() -> usb.core.USBError:
    return usb_error(LIBUSB_ERROR_PIPE, errno.EPIPE, "Pipe error")


# -- descriptors as bytes ------------------------------------------------------------------


def device_descriptor(
    vendor_id: int, product_id: int, *, device_class: int, strings: tuple[int, int, int]
) -> bytes:
    sub, protocol = (0x02, 0x01) if device_class == 0xEF else (0x00, 0x00)
    return struct.pack(
        "<BBHBBBBHHHBBBB",
        18,
        0x01,
        0x0200,
        device_class,
        sub,
        protocol,
        64,
        vendor_id,
        product_id,
        0x0100,
        *strings,
        1,
    )


def configuration(interfaces: int, body: bytes) -> bytes:
    total = 9 + len(body)
    return struct.pack("<BBHBBBBB", 9, 0x02, total, interfaces, 1, 0, 0x80, 250) + body


def interface(number: int, alternate: int, endpoints: int, cls: int, sub: int) -> bytes:
    return struct.pack("<BBBBBBBBB", 9, 0x04, number, alternate, endpoints, cls, sub, 0, 0)


def endpoint(address: int, attributes: int, max_packet: int, interval: int) -> bytes:
    return struct.pack("<BBBBHB", 7, 0x05, address, attributes, max_packet, interval)


def uvc_function(
    *,
    uvc_version: int,
    vc_interface: int,
    terminal_id: int,
    bm_controls: int,
    control_size: int,
) -> bytes:
    """IAD, VideoControl interface (header, camera terminal, processing unit, output
    terminal, interrupt endpoint) and a VideoStreaming interface with one MJPEG mode."""
    vs_interface = vc_interface + 1
    processing_id, output_id = terminal_id + 1, terminal_id + 2
    camera = struct.pack(
        "<BBBBHBBHHHB",
        15 + control_size,
        CS_INTERFACE,
        0x02,
        terminal_id,
        0x0201,
        0,
        0,
        0,
        0,
        0,
        control_size,
    ) + bm_controls.to_bytes(control_size, "little")
    pu_controls = (0x000001).to_bytes(3 if uvc_version >= 0x0110 else 2, "little")
    processing = (
        struct.pack(
            "<BBBBBHB", 0, CS_INTERFACE, 0x05, processing_id, terminal_id, 0, len(pu_controls)
        )
        + pu_controls
        + b"\x00"
        + (b"\x00" if uvc_version >= 0x0110 else b"")
    )
    processing = bytes([len(processing)]) + processing[1:]
    output = struct.pack("<BBBBHBBB", 9, CS_INTERFACE, 0x03, output_id, 0x0101, 0, processing_id, 0)
    units = camera + processing + output
    header_length = 13
    header = struct.pack(
        "<BBBHHIBB",
        header_length,
        CS_INTERFACE,
        0x01,
        uvc_version,
        header_length + len(units),
        48_000_000,
        1,
        vs_interface,
    )
    interrupt = endpoint(0x83, 0x03, 16, 8) + struct.pack("<BBBH", 5, 0x25, 0x03, 16)
    frame = struct.pack(
        "<BBBBBHHIIIIBI",
        30,
        CS_INTERFACE,
        0x07,
        1,
        0,
        1280,
        720,
        1 << 20,
        1 << 26,
        1280 * 720 * 2,
        333_333,
        1,
        333_333,
    )
    mjpeg = struct.pack("<BBBBBBBBBBB", 11, CS_INTERFACE, 0x06, 1, 1, 1, 1, 0, 0, 0, 0)
    formats = mjpeg + frame
    input_header = struct.pack(
        "<BBBBHBBBBBBBB",
        14,
        CS_INTERFACE,
        0x01,
        1,
        14 + len(formats),
        0x81,
        0,
        output_id,
        0,
        0,
        0,
        1,
        0,
    )
    association = struct.pack("<BBBBBBBB", 8, 0x0B, vc_interface, 2, 0x0E, 0x03, 0, 0)
    return (
        association
        + interface(vc_interface, 0, 1, 0x0E, 0x01)
        + header
        + units
        + interrupt
        + interface(vs_interface, 0, 0, 0x0E, 0x02)
        + input_header
        + formats
        + interface(vs_interface, 1, 1, 0x0E, 0x02)
        + endpoint(0x81, 0x05, 0x1400, 1)
    )


def audio_function(first_interface: int) -> bytes:
    """A USB Audio 1.0 microphone: its AudioControl interface also carries a CS_INTERFACE
    INPUT_TERMINAL (subtype 0x02) of type 0x0201 (Microphone), a trap for a parser that
    does not check the interface class."""
    terminal = struct.pack("<BBBBHBBHBB", 12, CS_INTERFACE, 0x02, 1, 0x0201, 0, 1, 0, 0, 0)
    output = struct.pack("<BBBBHBBB", 9, CS_INTERFACE, 0x03, 2, 0x0101, 0, 1, 0)
    header = struct.pack(
        "<BBBHHBB",
        9,
        CS_INTERFACE,
        0x01,
        0x0100,
        9 + len(terminal) + len(output),
        1,
        first_interface + 1,
    )
    return (
        interface(first_interface, 0, 0, 0x01, 0x01)
        + header
        + terminal
        + output
        + interface(first_interface + 1, 0, 0, 0x01, 0x02)
        + interface(first_interface + 1, 1, 1, 0x01, 0x02)
        + endpoint(0x82, 0x05, 96, 1)
    )


# -- parsed descriptors, shaped like the libusb1 backend's --------------------------------


@dataclass
class DeviceDescriptor:
    bLength: int
    bDescriptorType: int
    bcdUSB: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bMaxPacketSize0: int
    idVendor: int
    idProduct: int
    bcdDevice: int
    iManufacturer: int
    iProduct: int
    iSerialNumber: int
    bNumConfigurations: int
    bus: int = 1
    address: int = 1
    port_number: int | None = None
    port_numbers: tuple[int, ...] | None = None
    speed: int | None = 3


@dataclass
class EndpointDescriptor:
    bLength: int
    bDescriptorType: int
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class InterfaceDescriptor:
    bLength: int
    bDescriptorType: int
    bInterfaceNumber: int
    bAlternateSetting: int
    bNumEndpoints: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    iInterface: int
    extra_descriptors: list[int] = field(default_factory=list)
    endpoints: list[EndpointDescriptor] = field(default_factory=list)


@dataclass
class ConfigDescriptor:
    bLength: int
    bDescriptorType: int
    wTotalLength: int
    bNumInterfaces: int
    bConfigurationValue: int
    iConfiguration: int
    bmAttributes: int
    bMaxPower: int
    extra_descriptors: list[int] = field(default_factory=list)
    interfaces: list[list[InterfaceDescriptor]] = field(default_factory=list)


def parse_configuration(blob: bytes) -> ConfigDescriptor:
    """Splits a configuration descriptor like libusb: descriptors that follow the
    configuration, an interface or an endpoint go to its `extra`."""
    config = ConfigDescriptor(*struct.unpack_from("<BBHBBBBB", blob))
    assert config.wTotalLength == len(blob), "wTotalLength must be the blob's length"
    owner: ConfigDescriptor | InterfaceDescriptor | EndpointDescriptor = config
    by_number: dict[int, list[InterfaceDescriptor]] = {}
    offset = blob[0]
    while offset < len(blob):
        length, kind = blob[offset], blob[offset + 1]
        block = blob[offset : offset + length]
        assert length >= 2 and len(block) == length, f"bad descriptor at {offset}"
        if kind == 0x04:
            current = InterfaceDescriptor(*struct.unpack("<BBBBBBBBB", block))
            by_number.setdefault(current.bInterfaceNumber, []).append(current)
            owner = current
        elif kind == 0x05:
            assert isinstance(owner, InterfaceDescriptor | EndpointDescriptor)
            point = EndpointDescriptor(*struct.unpack("<BBBBHB", block))
            interface_of = current
            interface_of.endpoints.append(point)
            owner = point
        else:
            owner.extra_descriptors.extend(block)
        offset += length
    config.interfaces = list(by_number.values())
    assert config.bNumInterfaces == len(config.interfaces)
    return config


# -- UVC controls --------------------------------------------------------------------------


@dataclass
class FakeControl:
    """One camera terminal control: each field a tuple, one value per axis."""

    layout: str
    minimum: tuple[int, ...]
    maximum: tuple[int, ...]
    resolution: tuple[int, ...]
    default: tuple[int, ...]
    current: tuple[int, ...]
    requests: frozenset[str] = frozenset({"cur", "min", "max", "res", "def"})

    @property
    def size(self) -> int:
        return struct.calcsize(self.layout)

    def answer(self, request: str) -> bytes:
        values = {
            "cur": self.current,
            "min": self.minimum,
            "max": self.maximum,
            "res": self.resolution,
            "def": self.default,
        }[request]
        return struct.pack(self.layout, *values)

    def accepts(self, values: tuple[int, ...]) -> int:
        """0 when SET_CUR may take these values, else the UVC request error code."""
        for value, low, high, step in zip(
            values, self.minimum, self.maximum, self.resolution, strict=True
        ):
            if not low <= value <= high:
                return 0x04  # out of range
            if step > 0 and (value - low) % step:
                return 0x08  # invalid value within range
        return 0


def pan_tilt(current: tuple[int, int] = (0, 0)) -> FakeControl:
    """±170° pan, -30°…+90° tilt, 1° steps (arc seconds)."""
    return FakeControl(
        "<ii",
        (-170 * 3600, -30 * 3600),
        (170 * 3600, 90 * 3600),
        (3600, 3600),
        (0, 0),
        current,
    )


def zoom(current: int = 100) -> FakeControl:
    return FakeControl("<H", (100,), (500,), (10,), (100,), (current,))


def focus(current: int = 0) -> FakeControl:
    return FakeControl("<H", (0,), (250,), (5,), (0,), (current,))


def auto_focus(on: bool = True) -> FakeControl:
    return FakeControl("<B", (0,), (1,), (1,), (1,), (int(on),), frozenset({"cur", "def"}))


# -- devices -------------------------------------------------------------------------------


class FakeDevice:
    """One USB device: descriptors, strings, UVC control state, failure switches."""

    def __init__(
        self,
        *,
        vendor_id: int,
        product_id: int,
        configuration_blob: bytes,
        strings: Sequence[str | None] = (None, None, None),
        device_class: int = 0x00,
        bus: int = 1,
        address: int = 1,
        vc_interface: int | None = None,
        terminal_id: int | None = None,
        controls: dict[int, FakeControl] | None = None,
    ) -> None:
        self.strings: dict[int, str] = {}
        indexes: list[int] = []
        for text in strings:
            if text is None:
                indexes.append(0)
            else:
                self.strings[len(self.strings) + 1] = text
                indexes.append(len(self.strings))
        self.device_blob = device_descriptor(
            vendor_id,
            product_id,
            device_class=device_class,
            strings=(indexes[0], indexes[1], indexes[2]),
        )
        self.descriptor = DeviceDescriptor(*struct.unpack("<BBHBBBBHHHBBBB", self.device_blob))
        self.descriptor.bus, self.descriptor.address = bus, address
        self.configuration_blob = configuration_blob
        self.configuration = parse_configuration(configuration_blob)
        self.vc_interface = vc_interface
        self.terminal_id = terminal_id
        self.controls = controls or {}
        self.requests: list[Request] = []
        self.handles: set[FakeHandle] = set()
        self.claimed: set[int] = set()
        self.detach_calls = 0
        self.plugged = True
        self.busy = False
        self.no_permission = False
        self.error_code = 0  # VC_REQUEST_ERROR_CODE_CONTROL
        self.refuse_next: int | None = None  # error code for the next UVC request

    def unplug(self) -> None:
        self.plugged = False

    def uvc_requests(self) -> list[Request]:
        """The class-specific requests (GET_DESCRIPTOR and friends left out)."""
        return [r for r in self.requests if r[0] in (0xA1, 0x21)]

    def control_transfer(
        self, request_type: int, request: int, value: int, index: int, data: array.array[int]
    ) -> int:
        if not self.plugged:
            raise no_device()
        inbound = bool(request_type & 0x80)
        self.requests.append(
            (request_type, request, value, index, len(data) if inbound else bytes(data))
        )
        if request_type == 0x80 and request == 0x06:
            return _fill(data, self._descriptor(value >> 8, value & 0xFF, index))
        if request_type in (0xA1, 0x21) and index & 0xFF == self.vc_interface:
            return self._uvc(request, value, index >> 8, data)
        raise stall()

    def _descriptor(self, kind: int, number: int, language: int) -> bytes:
        if kind == 0x01:
            return self.device_blob
        if kind == 0x02 and number == 0:
            return self.configuration_blob
        if kind == 0x03 and number == 0:
            return bytes([4, 0x03]) + struct.pack("<H", 0x0409)
        if kind == 0x03 and number in self.strings and language == 0x0409:
            text = self.strings[number].encode("utf-16-le")
            return bytes([2 + len(text), 0x03]) + text
        raise stall()

    def _uvc(self, request: int, value: int, entity: int, data: array.array[int]) -> int:
        selector = value >> 8
        if entity == 0 and selector == 0x02 and request == 0x81 and len(data) == 1:
            return _fill(data, bytes([self.error_code]))  # does not reset the code
        code, answer = self._uvc_answer(request, selector, entity, data)
        self.error_code = code
        if code:
            raise stall()
        if answer is None:
            return len(data)
        return _fill(data, answer)

    def _uvc_answer(
        self, request: int, selector: int, entity: int, data: array.array[int]
    ) -> tuple[int, bytes | None]:
        if self.refuse_next is not None:
            code, self.refuse_next = self.refuse_next, None
            return code, None
        if entity != self.terminal_id:
            return 0x05, None  # invalid unit
        control = self.controls.get(selector)
        if control is None:
            return 0x06, None  # invalid control
        if request == GET_INFO:
            return 0, bytes([0x03])  # supports GET and SET
        if request == GET_LEN:
            return 0, struct.pack("<H", control.size)
        if request in _GETS and _GETS[request] in control.requests:
            if len(data) != control.size:
                return 0x07, None
            return 0, control.answer(_GETS[request])
        if request == 0x01 and len(data) == control.size:
            focusing = self.controls.get(CT_FOCUS_AUTO)
            if selector == CT_FOCUS_ABSOLUTE and focusing is not None and focusing.current[0]:
                return 0x02, None  # wrong state: auto focus owns the focus
            values = struct.unpack(control.layout, bytes(data))
            refusal = control.accepts(values)
            if refusal == 0:
                control.current = values
            return refusal, None
        return 0x07, None  # invalid request


def _fill(buffer: array.array[int], answer: bytes) -> int:
    count = min(len(buffer), len(answer))
    buffer[:count] = array.array("B", answer[:count])
    return count


def no_device() -> usb.core.USBError:
    return usb_error(
        LIBUSB_ERROR_NO_DEVICE, errno.ENODEV, "No such device (it may have been disconnected)"
    )


@dataclass(eq=False)
class FakeHandle:
    device: FakeDevice


class FakeBackend(usb.backend.IBackend):  # type: ignore[misc]
    """The pyusb backend interface over a list of FakeDevice."""

    def __init__(self, devices: Sequence[FakeDevice]) -> None:
        super().__init__()
        self.devices = list(devices)

    def enumerate_devices(self) -> Iterator[FakeDevice]:
        return iter([device for device in self.devices if device.plugged])

    def get_parent(self, dev: FakeDevice) -> None:
        return None

    def get_device_descriptor(self, dev: FakeDevice) -> DeviceDescriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: FakeDevice, config: int) -> ConfigDescriptor:
        if config != 0:
            raise IndexError(f"Invalid configuration index {config}")
        return dev.configuration

    def get_interface_descriptor(
        self, dev: FakeDevice, intf: int, alt: int, config: int
    ) -> InterfaceDescriptor:
        interfaces = self.get_configuration_descriptor(dev, config).interfaces
        if intf >= len(interfaces):
            raise IndexError(f"Invalid interface index {intf}")
        if alt >= len(interfaces[intf]):
            raise IndexError(f"Invalid alternate setting index {alt}")
        return interfaces[intf][alt]

    def get_endpoint_descriptor(
        self, dev: FakeDevice, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        endpoints = self.get_interface_descriptor(dev, intf, alt, config).endpoints
        if ep >= len(endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        return endpoints[ep]

    def open_device(self, dev: FakeDevice) -> FakeHandle:
        if not dev.plugged:
            raise no_device()
        if dev.no_permission:
            raise usb_error(
                LIBUSB_ERROR_ACCESS, errno.EACCES, "Access denied (insufficient permissions)"
            )
        handle = FakeHandle(dev)
        dev.handles.add(handle)
        return handle

    def close_device(self, dev_handle: FakeHandle) -> None:
        dev_handle.device.handles.discard(dev_handle)

    def claim_interface(self, dev_handle: FakeHandle, intf: int) -> None:
        device = dev_handle.device
        if not device.plugged:
            raise no_device()
        if device.busy and intf == device.vc_interface:
            raise usb_error(LIBUSB_ERROR_BUSY, errno.EBUSY, "Resource busy")
        device.claimed.add(intf)

    def release_interface(self, dev_handle: FakeHandle, intf: int) -> None:
        dev_handle.device.claimed.discard(intf)
        if not dev_handle.device.plugged:
            raise no_device()

    def ctrl_transfer(
        self,
        dev_handle: FakeHandle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        return dev_handle.device.control_transfer(bmRequestType, bRequest, wValue, wIndex, data)

    def is_kernel_driver_active(self, dev_handle: FakeHandle, intf: int) -> bool:
        return dev_handle.device.busy and intf == dev_handle.device.vc_interface

    def detach_kernel_driver(self, dev_handle: FakeHandle, intf: int) -> None:
        dev_handle.device.detach_calls += 1


# -- the shelf -----------------------------------------------------------------------------


def uvc_camera(
    *,
    vendor_id: int,
    product_id: int,
    strings: Sequence[str | None],
    uvc_version: int,
    controls: dict[int, FakeControl],
    vc_interface: int = 0,
    terminal_id: int = 1,
    control_size: int = 3,
    bus: int = 1,
    address: int = 2,
    extra_functions: bytes = b"",
    extra_interfaces: int = 0,
) -> FakeDevice:
    """A UVC device whose bmControls advertises exactly the given controls."""
    bm_controls = 0
    for selector in controls:
        bm_controls |= 1 << _CONTROL_BITS[selector]
    body = extra_functions + uvc_function(
        uvc_version=uvc_version,
        vc_interface=vc_interface,
        terminal_id=terminal_id,
        bm_controls=bm_controls,
        control_size=control_size,
    )
    return FakeDevice(
        vendor_id=vendor_id,
        product_id=product_id,
        strings=strings,
        device_class=0xEF,
        configuration_blob=configuration(2 + extra_interfaces, body),
        bus=bus,
        address=address,
        vc_interface=vc_interface,
        terminal_id=terminal_id,
        controls=controls,
    )


def ptz_camera(*, bus: int = 1, address: int = 4) -> FakeDevice:
    """A UVC 1.50 PTZ camera: pan/tilt, zoom, focus and auto focus; serial PTZ0001."""
    return uvc_camera(
        vendor_id=0x046D,
        product_id=0x0853,
        strings=("Logitech", "PTZ Pro Camera", "PTZ0001"),
        uvc_version=0x0150,
        controls={
            CT_PANTILT_ABSOLUTE: pan_tilt(),
            CT_ZOOM_ABSOLUTE: zoom(),
            CT_FOCUS_ABSOLUTE: focus(),
            CT_FOCUS_AUTO: auto_focus(),
        },
        bus=bus,
        address=address,
    )


def plain_webcam(*, bus: int = 1, address: int = 3) -> FakeDevice:
    """A UVC 1.00 webcam without PTZ or serial: only auto focus. Its VideoControl interface
    is number 2 (a microphone comes first) and its camera terminal is unit 3."""
    return uvc_camera(
        vendor_id=0x0C45,
        product_id=0x6366,
        strings=("Sonix", "USB 2.0 Camera", None),
        uvc_version=0x0100,
        controls={CT_FOCUS_AUTO: auto_focus()},
        vc_interface=2,
        terminal_id=3,
        bus=bus,
        address=address,
        extra_functions=audio_function(0),
        extra_interfaces=2,
    )


def usb_microphone(*, bus: int = 1, address: int = 2) -> FakeDevice:
    """A USB Audio microphone (not video), with a serial."""
    return FakeDevice(
        vendor_id=0x0D8C,
        product_id=0x0014,
        strings=("C-Media", "USB Audio Device", "MIC01"),
        configuration_blob=configuration(2, audio_function(0)),
        bus=bus,
        address=address,
    )


def classroom() -> FakeBackend:
    """The PTZ camera, the plain webcam and the microphone on bus 1."""
    return FakeBackend([usb_microphone(), plain_webcam(), ptz_camera()])
