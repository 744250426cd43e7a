"""The V4L2 kernel ABI this package speaks (linux/videodev2.h, linux/v4l2-controls.h,
asm-generic/ioctl.h): the structures and ioctl numbers of device discovery (formats,
sizes, intervals) and of camera controls (pan, tilt, zoom, focus), in one place."""

from __future__ import annotations

import ctypes

_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30  # asm-generic/ioctl.h
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, group: str, number: int, size: int) -> int:
    return (
        direction << _IOC_DIRSHIFT
        | size << _IOC_SIZESHIFT
        | ord(group) << _IOC_TYPESHIFT
        | number << _IOC_NRSHIFT
    )


class V4l2Capability(ctypes.Structure):
    _fields_ = (
        ("driver", ctypes.c_uint8 * 16),
        ("card", ctypes.c_uint8 * 32),
        ("bus_info", ctypes.c_uint8 * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class V4l2Fmtdesc(ctypes.Structure):
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_uint8 * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class V4l2FrmsizeDiscrete(ctypes.Structure):
    _fields_ = (("width", ctypes.c_uint32), ("height", ctypes.c_uint32))


class V4l2FrmsizeStepwise(ctypes.Structure):
    _fields_ = (
        ("min_width", ctypes.c_uint32),
        ("max_width", ctypes.c_uint32),
        ("step_width", ctypes.c_uint32),
        ("min_height", ctypes.c_uint32),
        ("max_height", ctypes.c_uint32),
        ("step_height", ctypes.c_uint32),
    )


class V4l2FrmsizeUnion(ctypes.Union):
    _fields_ = (("discrete", V4l2FrmsizeDiscrete), ("stepwise", V4l2FrmsizeStepwise))


class V4l2Frmsizeenum(ctypes.Structure):
    _anonymous_ = ("size",)
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("size", V4l2FrmsizeUnion),
        ("reserved", ctypes.c_uint32 * 2),
    )


class V4l2Fract(ctypes.Structure):
    _fields_ = (("numerator", ctypes.c_uint32), ("denominator", ctypes.c_uint32))


class V4l2FrmivalStepwise(ctypes.Structure):
    _fields_ = (("min", V4l2Fract), ("max", V4l2Fract), ("step", V4l2Fract))


class V4l2FrmivalUnion(ctypes.Union):
    _fields_ = (("discrete", V4l2Fract), ("stepwise", V4l2FrmivalStepwise))


class V4l2Frmivalenum(ctypes.Structure):
    _anonymous_ = ("interval",)
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("interval", V4l2FrmivalUnion),
        ("reserved", ctypes.c_uint32 * 2),
    )


VIDIOC_QUERYCAP = _ioc(_IOC_READ, "V", 0, ctypes.sizeof(V4l2Capability))
VIDIOC_ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, "V", 2, ctypes.sizeof(V4l2Fmtdesc))
VIDIOC_ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, "V", 74, ctypes.sizeof(V4l2Frmsizeenum))
VIDIOC_ENUM_FRAMEINTERVALS = _ioc(_IOC_READ | _IOC_WRITE, "V", 75, ctypes.sizeof(V4l2Frmivalenum))

V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_DEVICE_CAPS = 0x80000000
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_FMT_FLAG_COMPRESSED = 0x0001
V4L2_FRMSIZE_TYPE_DISCRETE = 1
V4L2_FRMIVAL_TYPE_DISCRETE = 1

# ---------------------------------------------------------------- controls


class V4l2Queryctrl(ctypes.Structure):
    _fields_ = (
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("name", ctypes.c_uint8 * 32),
        ("minimum", ctypes.c_int32),
        ("maximum", ctypes.c_int32),
        ("step", ctypes.c_int32),
        ("default_value", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 2),
    )


class V4l2Control(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint32), ("value", ctypes.c_int32))


VIDIOC_G_CTRL = _ioc(_IOC_READ | _IOC_WRITE, "V", 27, ctypes.sizeof(V4l2Control))
VIDIOC_S_CTRL = _ioc(_IOC_READ | _IOC_WRITE, "V", 28, ctypes.sizeof(V4l2Control))
VIDIOC_QUERYCTRL = _ioc(_IOC_READ | _IOC_WRITE, "V", 36, ctypes.sizeof(V4l2Queryctrl))

# linux/v4l2-controls.h
V4L2_CTRL_CLASS_CAMERA = 0x009A0000
V4L2_CID_CAMERA_CLASS_BASE = V4L2_CTRL_CLASS_CAMERA | 0x900
V4L2_CID_PAN_ABSOLUTE = V4L2_CID_CAMERA_CLASS_BASE + 8
V4L2_CID_TILT_ABSOLUTE = V4L2_CID_CAMERA_CLASS_BASE + 9
V4L2_CID_FOCUS_ABSOLUTE = V4L2_CID_CAMERA_CLASS_BASE + 10
V4L2_CID_FOCUS_AUTO = V4L2_CID_CAMERA_CLASS_BASE + 12
V4L2_CID_ZOOM_ABSOLUTE = V4L2_CID_CAMERA_CLASS_BASE + 13

V4L2_CTRL_FLAG_DISABLED = 0x0001
V4L2_CTRL_FLAG_GRABBED = 0x0002
V4L2_CTRL_FLAG_READ_ONLY = 0x0004
V4L2_CTRL_FLAG_INACTIVE = 0x0010
V4L2_CTRL_FLAG_WRITE_ONLY = 0x0040
