"""Encoders (PyAV): H.264 constrained baseline for video (VP8 twins on demand), Opus for
audio.

One encoder per rendition; every consumer shares its packets. Packets carry
`pts` in the encoder's `time_base`, derived from the frames' capture times, so
gaps stay gaps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import av
import numpy as np

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
OPUS_FRAME_SAMPLES = 960  # 20 ms

if TYPE_CHECKING:
    Packet = av.Packet[Any]
else:
    Packet = av.Packet


class _Layer:
    """A packet's temporal layer, one object per packet: PyAV keys `Packet.opaque` by
    the value's `id()` and forgets the key when any packet holding it is freed, so a
    shared value (the small int 0) vanished from every packet as soon as one went."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def set_temporal_layer(packet: Packet, index: int | None) -> None:
    """Mark a VP8 packet with its temporal layer (0: base), or with none."""
    packet.opaque = None if index is None else _Layer(index)


def temporal_layer(packet: Packet) -> int | None:
    """The temporal layer `set_temporal_layer` marked, or None (not layered)."""
    mark = packet.opaque
    return mark.index if isinstance(mark, _Layer) else None


VideoCodec = Literal["h264", "vp8"]
VP8_CPU_USED = 16  # libvpx realtime speed (0..16), its fastest: ~5 ms of CPU a 720p frame


class VideoEncoder:
    """libx264, constrained baseline, zero latency, no B-frames, Annex-B with SPS/PPS
    before every IDR; an IDR at least every `keyframe_interval` seconds and on request
    (forced ones at most one per `min_forced_interval` seconds).

    `codec="vp8"` is libvpx in realtime mode instead (no lag, error resilient, the same
    keyframe rules), for viewers whose browser has no H.264. With `temporal_layers=2`
    (VP8) every other frame is a base-layer one that only base-layer frames refer to:
    `temporal_layer(packet)` says each packet's layer (0 or 1), and a viewer given layer 0 alone
    gets half the frame rate from the same encode. `active` False makes the
    pipeline skip it and drop its codec context (a twin nobody watches costs nothing).

    `stills=True` makes every frame an IDR (for the worst links: each one decodes on
    its own, so a lost one costs nothing but its own picture); a keyframe request then
    also brings the next still forward.
    """

    def __init__(
        self,
        name: str,
        *,
        width: int,
        height: int,
        fps: float,
        bitrate: int,
        origin: float,
        keyframe_interval: float = 2.0,
        min_forced_interval: float = 1.0,
        preset: str = "veryfast",
        threads: int = 2,
        stills: bool = False,
        codec: VideoCodec = "h264",
        active: bool = True,
        temporal_layers: int = 1,
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"{name}: width and height must be even")
        self.name = name
        self.codec = codec
        self.active = active
        self.temporal_layers = temporal_layers if codec == "vp8" else 1
        self._layer_frames = 0  # frames since the codec opened: the layer pattern's phase
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.stills = stills
        self.keyframe_interval = 1 / fps if stills else keyframe_interval
        self.min_forced_interval = min_forced_interval
        self._origin = origin
        self._preset, self._threads = preset, threads
        self._codec: av.VideoCodecContext | None = None
        self._requested = threading.Event()
        self._last_keyframe = -1e9
        self._last_forced = -1e9
        self._last_frame = -1e9
        self.frames = 0
        self.keyframes = 0
        self.forced_keyframes = 0
        self.keyframe_requests = 0
        self.last_encode_seconds = 0.0
        self.encode_seconds = 0.0  # all frames so far (metrics)

    def request_keyframe(self) -> None:
        """Ask for an IDR soon; thread-safe, cheap, rate-limited inside the encoder."""
        self.keyframe_requests += 1
        self._requested.set()

    def wants(self, captured_at: float) -> bool:
        """Whether a frame captured now fits this rendition's frame rate (or, for
        stills, whether a keyframe request can be served now). An inactive encoder
        wants none and lets its codec context go (here, in the encoding thread)."""
        if not self.active:
            self._codec = None
            return False
        if captured_at - self._last_frame >= 0.9 / self.fps:
            return True
        return (
            self.stills
            and self._requested.is_set()
            and captured_at - self._last_forced >= self.min_forced_interval
        )

    def _open(self) -> av.VideoCodecContext:
        if self.codec == "vp8":
            return self._open_vp8()
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = self.width, self.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = Fraction(self.fps).limit_denominator(1000)
        codec.bit_rate = self.bitrate
        codec.thread_count = self._threads
        kbps = max(self.bitrate // 1000, 1)
        # the VBV holds one second, or one frame's share when frames are rarer (stills)
        buffer_kbit = max(kbps, round(kbps / self.fps))
        backup_keyint = 1 if self.stills else max(int(self.fps * self.keyframe_interval * 2), 2)
        codec.options = {
            "preset": self._preset,
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": ":".join(
                [
                    f"keyint={backup_keyint}",
                    f"min-keyint={backup_keyint}",
                    "scenecut=0",
                    "bframes=0",
                    "repeat-headers=1",
                    "forced-idr=1",
                    "aud=0",
                    f"vbv-maxrate={kbps}",
                    f"vbv-bufsize={buffer_kbit}",
                ]
            ),
        }
        return codec

    def _open_vp8(self) -> av.VideoCodecContext:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = self.width, self.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = Fraction(self.fps).limit_denominator(1000)
        codec.bit_rate = self.bitrate
        # one thread: libvpx's VP8 threads spin while they wait for each other (measured
        # here: 720p took 23.7 ms of CPU a frame with two threads, 5.4 ms with one)
        codec.thread_count = 1
        codec.gop_size = 1 if self.stills else max(int(self.fps * self.keyframe_interval * 2), 2)
        codec.qmin, codec.qmax = 4, 56
        rate = str(self.bitrate)
        codec.options = {
            "deadline": "realtime",
            "cpu-used": str(VP8_CPU_USED),
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",
            "static-thresh": "1",
            "maxrate": rate,
            "bufsize": rate,  # one second, as the H.264 VBV
            "undershoot-pct": "95",
            "overshoot-pct": "15",
        }
        if self.temporal_layers == 2:  # base layer: every other frame, 60 % of the bits
            kbps = max(self.bitrate // 1000, 2)
            codec.options["ts-parameters"] = (
                f"ts_number_layers=2:ts_target_bitrate={kbps * 6 // 10},{kbps}:"
                "ts_rate_decimator=2,1:ts_periodicity=2:ts_layer_id=0,1:"
                # FFmpeg's pattern 2 (last, as FFmpeg asks): a base frame refers to and
                # updates only the last base frame, a top frame updates nothing; without
                # it libvpx chains every frame to the one before, so the base layer alone
                # does not decode. The pattern restarts at every forced keyframe.
                "ts_layering_mode=2"
            )
        self._layer_frames = 0
        return codec

    def encode(self, frame: av.VideoFrame, captured_at: float) -> list[Packet]:
        codec = self._codec
        if codec is None:
            codec = self._codec = self._open()
        if (
            frame.width != self.width
            or frame.height != self.height
            or frame.format.name != "yuv420p"
        ):
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        force = captured_at - self._last_keyframe >= self.keyframe_interval
        if self._requested.is_set() and captured_at - self._last_forced >= self.min_forced_interval:
            force = True
            self._last_forced = captured_at
        if force:
            self._requested.clear()
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        frame.pts = round((captured_at - self._origin) / VIDEO_TIME_BASE)
        frame.time_base = VIDEO_TIME_BASE
        started = time.perf_counter()
        packets = list(codec.encode(frame))
        self.last_encode_seconds = time.perf_counter() - started
        self.encode_seconds += self.last_encode_seconds
        self._last_frame = captured_at
        self.frames += 1
        if force:
            self._layer_frames = 0  # FFmpeg restarts the pattern at a forced keyframe
        layer = self._layer_frames % 2 if self.temporal_layers == 2 else None
        self._layer_frames += 1
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
            set_temporal_layer(packet, layer)
            if packet.is_keyframe:
                self.keyframes += 1
                self._last_keyframe = captured_at
                self._requested.clear()
                if force:
                    self.forced_keyframes += 1
        return packets

    def close(self) -> None:
        self._codec = None


class AudioEncoder:
    """Opus, 48 kHz, mono by default, 20 ms packets, in-band FEC.

    `gain` (if given) scales each frame first: a ducked copy of the microphone. `active`
    False makes the pipeline skip it (it costs nothing while nobody needs it). `loud_at`
    is the capture time of the last frame above -50 dBFS (the console warns of a
    microphone that has gone silent).
    """

    def __init__(
        self,
        name: str,
        *,
        bitrate: int = 32000,
        channels: int = 1,
        origin: float,
        gain: Callable[[], float] | None = None,
        active: bool = True,
    ) -> None:
        self.name = name
        self.gain = gain
        self.active = active
        self.loud_at: float | None = None
        self.bitrate = bitrate
        self.channels = channels
        self._origin = origin
        self._codec: av.AudioCodecContext | None = None
        self._resampler = av.AudioResampler(
            format="s16",
            layout="mono" if channels == 1 else "stereo",
            rate=AUDIO_RATE,
            frame_size=OPUS_FRAME_SAMPLES,
        )
        self._next_pts: int | None = None
        self.frames = 0
        self.last_encode_seconds = 0.0
        self.encode_seconds = 0.0

    def wants(self, captured_at: float) -> bool:
        return self.active

    def request_keyframe(self) -> None:
        """Audio has no keyframes; present so all encoders share one interface."""

    def _measure_and_scale(self, frame: av.AudioFrame, captured_at: float) -> av.AudioFrame:
        samples = frame.to_ndarray()
        scale = 32768.0 if samples.dtype == np.int16 else 1.0
        if float(np.sqrt(np.mean((samples / scale) ** 2))) > 0.003:  # -50 dBFS
            self.loud_at = captured_at
        if self.gain is None:
            return frame
        gain = self.gain()
        if gain >= 0.999:
            return frame
        quieter: Any = (samples * gain).astype(samples.dtype)
        scaled = av.AudioFrame.from_ndarray(
            quieter, format=frame.format.name, layout=frame.layout.name
        )
        scaled.sample_rate = frame.sample_rate
        return scaled

    def _open(self) -> av.AudioCodecContext:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = AUDIO_RATE
        codec.layout = "mono" if self.channels == 1 else "stereo"
        codec.format = "s16"
        codec.bit_rate = self.bitrate
        codec.time_base = AUDIO_TIME_BASE
        codec.options = {"application": "audio", "fec": "1", "packet_loss": "10", "vbr": "on"}
        return codec

    def encode(self, frame: av.AudioFrame, captured_at: float) -> list[Packet]:
        if self._codec is None:
            self._codec = self._open()
        started = time.perf_counter()
        frame = self._measure_and_scale(frame, captured_at)
        expected = round((captured_at - self._origin) * AUDIO_RATE)
        if self._next_pts is None or expected - self._next_pts > AUDIO_RATE // 5:
            self._next_pts = expected  # start, or a gap > 200 ms: it stays a gap
        frame.pts = None
        packets: list[Packet] = []
        for chunk in self._resampler.resample(frame):
            chunk.pts = self._next_pts
            chunk.time_base = AUDIO_TIME_BASE
            self._next_pts += chunk.samples
            packets.extend(self._codec.encode(chunk))
        for packet in packets:
            packet.time_base = AUDIO_TIME_BASE
        self.frames += len(packets)
        self.last_encode_seconds = time.perf_counter() - started
        self.encode_seconds += self.last_encode_seconds
        return packets

    def close(self) -> None:
        self._codec = None


Encoder = VideoEncoder | AudioEncoder


class BackgroundEncoder(VideoEncoder):
    """A `VideoEncoder` whose encoding runs in a thread of its own, so a costly twin
    (VP8) never delays the renditions encoded in the capture thread. `encode()` only
    hands the frame over (a newer one replaces one still waiting) and returns nothing;
    the thread hands each packet to `sink(name, packet)`. The thread starts with the
    first frame (`start()`), and `close()` (what the pipeline calls on stop and on a
    hang) stops it and drops the codec context; the next frame starts a fresh one."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.sink: Callable[[str, Packet], None] = lambda name, packet: None
        self.dropped_frames = 0  # replaced while waiting: the thread was behind
        self.errors = 0
        self._mailbox: tuple[av.VideoFrame, float] | None = None
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._handed_at = -1e9

    def wants(self, captured_at: float) -> bool:
        if not super().wants(captured_at):
            return False
        # the frame rate counts from what was handed over, not from what was encoded
        return captured_at - self._handed_at >= 0.9 / self.fps or self._requested.is_set()

    def start(self) -> None:
        with self._wake:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name=f"encode-{self.name}", daemon=True
            )
            self._thread.start()

    def encode(self, frame: av.VideoFrame, captured_at: float) -> list[Packet]:
        self.start()
        with self._wake:
            if self._mailbox is not None:
                self.dropped_frames += 1
            self._mailbox = (frame, captured_at)
            self._handed_at = captured_at
            self._wake.notify()
        return []

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._mailbox is None and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                assert self._mailbox is not None
                frame, captured_at = self._mailbox
                self._mailbox = None
            if not self.active:
                continue
            # the capture thread sets pts and picture type on the frames it shares: a
            # same-size frame is copied (its pixels are never changed, only those fields)
            if (frame.width, frame.height, frame.format.name) == (
                self.width,
                self.height,
                "yuv420p",
            ):
                frame = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
            try:
                packets = VideoEncoder.encode(self, frame, captured_at)
            except (av.FFmpegError, ValueError) as exc:
                self.errors += 1
                logger.warning("encoder %s: %s; reopening", self.name, exc)
                self._codec = None
                continue
            for packet in packets:
                self.sink(self.name, packet)

    def close(self) -> None:
        """Stop the thread (waiting a moment for an encode under way) and drop the codec."""
        with self._wake:
            self._stopping = True
            self._mailbox = None
            self._wake.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        super().close()
