"""A classroom at run time: its sources, one encoder per rendition, one bus per rendition,
and the parts it owns: its camera control, its classroom (who takes part), its recorder."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import av

from capture import (
    MAX_ABANDONED,
    AlsaMicrophone,
    AudioEncoder,
    BackgroundEncoder,
    MediaKind,
    ScreenGrab,
    Source,
    SourcePipeline,
    Speaker,
    TestBoard,
    TestCamera,
    TestTone,
    V4L2Camera,
    VideoCodec,
    VideoEncoder,
    slate,
)
from capture.supervise import run_every_step
from edge.config.settings import (
    AlsaSource,
    BoardSource,
    CameraSource,
    MicSource,
    RoomSettings,
    ScreenSource,
    TestVideoSource,
    V4L2Source,
    VideoRendition,
)
from edge.school.lessons import Lesson
from webrtc import Feeds, LayerView, OnDemand, PacketBus, VideoLine

if TYPE_CHECKING:
    from edge.live.classroom import Classroom
    from edge.live.ptz import CameraControl
    from edge.recording.recorder import Recorder

logger = logging.getLogger(__name__)

DUCKED_GAIN = 0.15  # about -16 dB: the microphone a talking pupil hears while heard
CAMERA_PAUSED = "Camera tạm tắt"
CAMERA_PAUSED_DETAIL = "Thầy cô đã tạm tắt camera lớp học. Tiếng vẫn nghe bình thường."
RECONNECTING = {
    "camera": ("Camera đang kết nối lại", "Tiếng vẫn nghe bình thường. Hình sẽ trở lại ngay."),
    "board": ("Hình bảng đang kết nối lại", "Tiếng vẫn nghe bình thường. Hình sẽ trở lại ngay."),
}


def video_source(name: str, config: CameraSource | BoardSource, top: VideoRendition) -> Source:
    if isinstance(config, TestVideoSource):
        width, height = config.width or top.width, config.height or top.height
        fps = config.fps or top.fps
        if name == "board":
            return TestBoard(name, width=width, height=height, fps=fps)
        return TestCamera(name, width=width, height=height, fps=fps)
    if isinstance(config, V4L2Source):
        return V4L2Camera(
            name,
            config.device,
            input_format=config.input_format,
            width=config.width,
            height=config.height,
            fps=config.fps,
        )
    if isinstance(config, ScreenSource):
        return ScreenGrab(
            name, config.display, fps=config.fps, width=config.width, height=config.height
        )
    raise TypeError(f"unknown video source {config!r}")


def video_encoder(
    source: str,
    rendition: VideoRendition,
    origin: float,
    codec: VideoCodec = "h264",
    temporal_layers: int = 1,
) -> VideoEncoder:
    """The encoder of one rendition of `source` ("camera" or "board"); a VP8 one is a
    twin, named `{source}/vp8/{rendition}`, that starts inactive (`Room.twins`)."""
    vp8 = codec == "vp8"
    kind = BackgroundEncoder if vp8 else VideoEncoder  # a twin never delays the H.264 ones
    return kind(
        f"{source}/vp8/{rendition.name}" if vp8 else f"{source}/{rendition.name}",
        width=rendition.width,
        height=rendition.height,
        fps=rendition.fps,
        bitrate=rendition.bitrate_kbps * 1000,
        origin=origin,
        keyframe_interval=rendition.keyframe_interval,
        preset=rendition.preset,
        stills=rendition.stills,
        codec=codec,
        active=not vp8,
        temporal_layers=temporal_layers,
    )


def audio_source(config: MicSource) -> Source:
    if isinstance(config, AlsaSource):
        return AlsaMicrophone("mic", config.device, channels=config.channels)
    return TestTone("mic", volume=config.volume)


class Room:
    """One classroom at run time, owning its parts: capture threads, encoders and buses,
    the camera control, the classroom (who takes part), the recorder; `stop()` stops them
    all, each step even when one fails."""

    classroom: Classroom  # attached by the service once the room exists (it needs the room)
    recorder: Recorder | None = None  # None: this room is not recorded

    def __init__(
        self,
        name: str,
        settings: RoomSettings,
        camera: CameraControl,
    ) -> None:
        self.name = name
        self.settings = settings
        self.camera = camera
        self.live = False  # viewers may join: the scheduler says a lesson is live
        self.lesson: Lesson | None = None
        self.capturing = False
        self.warmed_at = 0.0
        self.warmed_origin = time.monotonic()
        self.buses: dict[str, PacketBus] = {}
        self.pipelines: list[SourcePipeline] = []
        origin = self.origin = time.monotonic()  # the buses' time zero
        video = (
            ("camera", settings.camera, settings.camera_renditions),
            ("board", settings.board, settings.board_renditions),
        )
        self._video_feeds: list[VideoLine | None] = []
        self._vp8_feeds: list[VideoLine | None] = []
        self.twin_encoders: list[VideoEncoder] = []
        for source_name, source_config, renditions in video:
            if source_config is None:
                self._video_feeds.append(None)
                self._vp8_feeds.append(None)
                continue
            h264 = [video_encoder(source_name, r, origin) for r in renditions]
            # the top twin of a fast source in two temporal layers: a weak VP8 viewer gets
            # half its frame rate ("half") from the same encode
            twins = [
                video_encoder(source_name, r, origin, "vp8", 2 if i == 0 and r.fps >= 20 else 1)
                for i, r in enumerate(renditions)
            ]
            self.twin_encoders += twins
            encoders = h264 + twins  # the twins last: they never delay the H.264 ones
            top = renditions[0]
            source = video_source(source_name, source_config, top)
            title, detail = RECONNECTING[source_name]
            missing = slate(top.width, top.height, title, detail)
            fps = getattr(source_config, "fps", None) or top.fps
            self._add(source, encoders, "video", missing, missing_after=max(1.0, 3 / fps))
            layered = [
                LayerView(
                    f"{name}/{source_name}/vp8/half",
                    self.buses[encoder.name],
                    nominal_bitrate=encoder.bitrate * 6 // 10,
                )
                for encoder in twins
                if encoder.temporal_layers == 2
            ]
            for feeds, buses in (
                (self._video_feeds, [self.buses[encoder.name] for encoder in h264]),
                (self._vp8_feeds, [self.buses[encoder.name] for encoder in twins] + layered),
            ):
                feeds.append(
                    VideoLine(
                        buses,
                        can_pause=source_name == "camera",  # the board stays, as stills at worst
                    )
                )
        self.twins = OnDemand(f"room {name}: VP8 twins", self._run_twins)
        self._audio_feed: PacketBus | None = None
        self.speaker = Speaker(settings.speaker.device) if settings.speaker is not None else None
        self.mic_encoder: AudioEncoder | None = None
        self.ducking_encoder: AudioEncoder | None = None
        if settings.mic is not None:
            bitrate = settings.audio.bitrate_kbps * 1000
            self.mic_encoder = AudioEncoder("mic", bitrate=bitrate, origin=origin)
            audio_encoders = [self.mic_encoder]
            if self.speaker is not None:  # what a pupil who talks hears back
                speaker = self.speaker
                self.ducking_encoder = AudioEncoder(
                    "mic/ducked",
                    bitrate=bitrate,
                    origin=origin,
                    gain=lambda: DUCKED_GAIN if speaker.level > 0 else 1.0,
                    active=False,
                )
                audio_encoders.append(self.ducking_encoder)
            self._add(audio_source(settings.mic), audio_encoders, "audio")
            self._audio_feed = self.buses["mic"]
        self.camera_paused = False

    def _add(
        self,
        source: Source,
        encoders: list[VideoEncoder] | list[AudioEncoder],
        kind: MediaKind,
        missing: av.VideoFrame | None = None,
        *,
        missing_after: float = 1.0,
    ) -> None:
        for encoder in encoders:
            self.buses[encoder.name] = PacketBus(
                f"{self.name}/{encoder.name}",
                kind,
                request_keyframe=encoder.request_keyframe,
                queue_size=30 if kind == "video" else 25,
                nominal_bitrate=encoder.bitrate,
                self_contained=isinstance(encoder, VideoEncoder) and encoder.stills,
                codec=encoder.codec if isinstance(encoder, VideoEncoder) else "h264",
            )
        for encoder in encoders:
            if isinstance(encoder, BackgroundEncoder):  # it hands its packets on itself
                encoder.sink = lambda rendition, packet: self.buses[rendition].publish_threadsafe(
                    packet
                )
        self.pipelines.append(
            SourcePipeline(
                source,
                encoders,
                lambda rendition, packet: self.buses[rendition].publish_threadsafe(packet),
                missing=missing,
                missing_after=missing_after,
            )
        )

    def feeds(self) -> Feeds:
        return Feeds(
            video=self._video_feeds, audio=self._audio_feed, vp8=self._vp8_feeds, twins=self.twins
        )

    def _run_twins(self, on: bool) -> None:
        # the encoding threads see it at their next frame (and drop the codec when off)
        for encoder in self.twin_encoders:
            encoder.active = on

    async def warm(self) -> None:
        """Open the devices and start the encoders (a lesson is about to begin)."""
        if not self.capturing:
            self.capturing = True
            loop = asyncio.get_running_loop()
            for bus in self.buses.values():
                bus.bind(loop)
            self.warmed_at = loop.time()
            self.warmed_origin = time.monotonic()
            for pipeline in self.pipelines:
                pipeline.start()
            if self.speaker is not None:
                self.speaker.start()
            await self.twins.start()

    async def cool(self) -> None:
        """Release the devices (no lesson for a while)."""
        if self.capturing:
            self.capturing = False
            await self.twins.stop()
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.pipelines))
            if self.speaker is not None:
                await asyncio.to_thread(self.speaker.stop)

    def pause_camera(self, paused: bool) -> None:
        """Privacy: a slate goes out (and is recorded) instead of the camera's picture."""
        self.camera_paused = paused
        top = self.settings.camera_renditions[0]
        for pipeline in self.pipelines:
            if pipeline.source.name == "camera":
                pipeline.cover = (
                    slate(top.width, top.height, CAMERA_PAUSED, CAMERA_PAUSED_DETAIL)
                    if paused
                    else None
                )

    def missing_devices(self) -> list[tuple[str, str | None]]:
        """Sources giving nothing now (a video source's slate is out, a microphone has
        failed for a while), with the reason."""
        return [(p.source.name, p.source.error) for p in self.pipelines if p.showing_missing]

    def recent_hangs(self, within: float = 60.0) -> list[tuple[str, float, bool]]:
        """Sources whose device or encoder hung in the last `within` seconds: (name,
        seconds ago, whether fresh threads took over; False: a restart is needed)."""
        now = time.monotonic()
        return [
            (p.source.name, now - p.last_hang[0], p.source.abandoned < MAX_ABANDONED)
            for p in self.pipelines
            if p.last_hang is not None and now - p.last_hang[0] <= within
        ]

    def mic_silent_seconds(self) -> float | None:
        """Seconds since the classroom microphone last heard something, while live."""
        encoder = self.mic_encoder
        if not self.live or encoder is None or not self.capturing:
            return None
        since = encoder.loud_at if encoder.loud_at is not None else self.warmed_origin
        return max(time.monotonic() - since, 0.0)

    async def stop(self) -> None:
        self.live = False
        steps: list[tuple[str, Callable[[], object]]] = []
        if self.recorder is not None:
            steps.append((f"room {self.name}: recorder", self.recorder.stop))
        steps.append((f"room {self.name}: classroom", self.classroom.stop))
        steps += [
            (f"room {self.name}: devices", self.cool),
            (f"room {self.name}: camera control", self.camera.close),
        ]
        await run_every_step(steps)

    def health(self, now: float) -> dict[str, object]:
        sources = {
            p.source.name: {
                "state": p.source.state,
                "error": p.source.error,
                "frames": p.source.frames,
                "missing": p.showing_missing,
                "hangs": p.hangs,
                "last_hang": None if p.last_hang is None else p.last_hang[1],
                "failing_seconds": None
                if p.source.failing_since is None
                else round(time.monotonic() - p.source.failing_since, 1),
            }
            for p in self.pipelines
        }
        buses = {}
        stalled = False
        encoders = {name: e for p in self.pipelines for name, e in p.encoders.items()}
        for name, bus in self.buses.items():
            encoder = encoders[name]
            age = None if bus.last_packet_at is None else round(now - bus.last_packet_at, 2)
            # stalled: no packet for 5 s, or for two and a half frames of a slow rendition
            # (an audio encoder at rest, the ducked microphone, sends none on purpose)
            fps = encoder.fps if isinstance(encoder, VideoEncoder) else 50.0
            resting = not encoder.active  # a twin nobody watches, the ducked mic at rest
            late = not resting and (age is None or age > max(5.0, 2.5 / fps))
            stalled = stalled or (self.capturing and now - self.warmed_at > 10 and late)
            buses[name] = {
                "packets": bus.packets,
                "viewers": bus.subscribers,
                "last_packet_age": age,
            }
        return {  # with the room's state (edge/live/state.py) in /healthz
            "sources": sources,
            "renditions": buses,
            "stalled": stalled,
            "device_missing": self.capturing and any(p.showing_missing for p in self.pipelines),
        }
