"""Capture: media sources, device access and encoders. Knows nothing of WebRTC."""

from .device import AlsaMicrophone, ScreenGrab, V4L2Camera
from .discovery import AmbiguousDevice, DeviceMissing, resolve_camera
from .encoder import (
    AudioEncoder,
    BackgroundEncoder,
    Encoder,
    Packet,
    VideoCodec,
    VideoEncoder,
    set_temporal_layer,
    temporal_layer,
)
from .pipeline import MAX_ABANDONED, PacketSink, SourcePipeline
from .playback import Speaker
from .source import Frame, MediaKind, Source, SourceError
from .synthetic import TestBoard, TestCamera, TestTone, slate
from .timecode import burn_timestamp, read_timestamp
from .uvc import (
    CONTROL_NAMES,
    ControlRange,
    NoCameraControl,
    Position,
    UsbCamera,
    UvcCamera,
    UvcError,
    find_usb_cameras,
    parse_identity,
)
from .v4l2ctl import V4l2Head

__all__ = [
    "CONTROL_NAMES",
    "MAX_ABANDONED",
    "AlsaMicrophone",
    "AmbiguousDevice",
    "AudioEncoder",
    "BackgroundEncoder",
    "ControlRange",
    "DeviceMissing",
    "Encoder",
    "Frame",
    "MediaKind",
    "NoCameraControl",
    "Packet",
    "PacketSink",
    "Position",
    "ScreenGrab",
    "Source",
    "SourceError",
    "SourcePipeline",
    "Speaker",
    "TestBoard",
    "TestCamera",
    "TestTone",
    "UsbCamera",
    "UvcCamera",
    "UvcError",
    "V4L2Camera",
    "V4l2Head",
    "VideoCodec",
    "VideoEncoder",
    "burn_timestamp",
    "find_usb_cameras",
    "parse_identity",
    "read_timestamp",
    "resolve_camera",
    "set_temporal_layer",
    "slate",
    "temporal_layer",
]
