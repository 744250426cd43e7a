"""Capture: media sources, device access and encoders. Knows nothing of WebRTC."""

from .device import AlsaMicrophone, ScreenGrab, V4L2Camera
from .encoder import AudioEncoder, Encoder, Packet, VideoEncoder
from .pipeline import PacketSink, SourcePipeline
from .playback import Speaker
from .source import Frame, MediaKind, Source, SourceError
from .synthetic import TestBoard, TestCamera, TestTone, slate
from .timecode import burn_timestamp, read_timestamp

__all__ = [
    "AlsaMicrophone",
    "AudioEncoder",
    "Encoder",
    "Frame",
    "MediaKind",
    "Packet",
    "PacketSink",
    "ScreenGrab",
    "Source",
    "SourceError",
    "SourcePipeline",
    "Speaker",
    "TestBoard",
    "TestCamera",
    "TestTone",
    "V4L2Camera",
    "VideoEncoder",
    "burn_timestamp",
    "read_timestamp",
    "slate",
]
