"""A room's media plane: its sources, one encoder and one bus per rendition, the lines a
viewer chooses among, the recording's takes, the relay's forwarder, and the classroom
speakers with the talking pupil's microphone (WHIP) they play. `LocalMedia` runs them in
this process (the media process runs one per room: `edge.live.mediahost`);
`edge.live.remote.RemoteMedia` is the control process's view of them, with mirror buses
fed from the media process. Both have the same face (`RoomMedia`), which is all `Room` and
the service use."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Iterator
from typing import Literal, Protocol

import av
from PIL import Image

from capture import (
    AlsaMicrophone,
    AudioEncoder,
    BackgroundEncoder,
    MediaKind,
    Packet,
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
from capture.supervise import cancel_all
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
from edge.live.mediawire import EncoderStatus, RoomStatus, SourceStatus
from edge.recording.take import LocalTake, OnOpen, Take, TakePlan
from webrtc import LayerView, OfferError, PacketBus, Publishers, TalkSession, VideoLine
from webrtc.ice import IceServer
from webrtc.relay import RelayMedia, RtpForwarder

logger = logging.getLogger(__name__)

DUCKED_GAIN = 0.15  # about -16 dB: the microphone a talking pupil hears while heard
CAMERA_PAUSED = "Camera tạm tắt"
CAMERA_PAUSED_DETAIL = "Thầy cô đã tạm tắt camera lớp học. Tiếng vẫn nghe bình thường."
RECONNECTING = {
    "camera": ("Camera đang kết nối lại", "Tiếng vẫn nghe bình thường. Hình sẽ trở lại ngay."),
    "board": ("Hình bảng đang kết nối lại", "Tiếng vẫn nghe bình thường. Hình sẽ trở lại ngay."),
}
PREVIEW_WIDTH = 480
TALK_CONNECT_TIMEOUT = 15.0  # s a talking pupil's microphone may take to connect
TALKS_PER_ROOM = 2  # a turn, and the next one while the first closes
NO_SPEAKERS = "Phòng này chưa cấu hình loa ([speaker]): học sinh chưa nói được."

TalkState = Literal["connected", "closed"]
OnTalk = Callable[[str, TalkState], None]  # (talk session id, what became of it)


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


def preview_jpeg(frame: av.VideoFrame) -> bytes:
    """A small JPEG of a video frame (the admin page's live preview)."""
    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
    height = max(round(image.height * PREVIEW_WIDTH / image.width) // 2 * 2, 2)
    image = image.resize((PREVIEW_WIDTH, height))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70)
    return out.getvalue()


class Forwarding(Protocol):
    """A room's streams pushed as RTP to Janus (`webrtc.relay.RtpForwarder`), wherever the
    encoders run; `media` are this process's buses of each stream."""

    media: list[RelayMedia]

    async def stop(self) -> None: ...


class RoomMedia(Protocol):
    """What `Room` uses of its media plane, wherever it runs."""

    origin: float
    buses: dict[str, PacketBus]  # by rendition ("camera/high", "mic", …)
    video_lines: list[VideoLine | None]  # camera, board (None: the room has none)
    vp8_lines: list[VideoLine | None]
    audio: PacketBus | None

    async def warm(self) -> None: ...

    async def cool(self) -> None: ...

    def pause_camera(self, paused: bool) -> None: ...

    def set_twins(self, on: bool) -> None: ...

    def set_ducking(self, on: bool) -> None: ...

    def status(self) -> RoomStatus: ...

    async def preview(self, source: str) -> bytes | None: ...

    async def take(self, plan: TakePlan, on_open: OnOpen) -> Take: ...

    async def talk(self, offer_sdp: str, ice_servers: list[IceServer]) -> tuple[str, str]: ...

    async def end_talk(self, session_id: str) -> bool: ...

    def on_talk_events(self, on_talk: OnTalk) -> None: ...

    async def forward(
        self,
        host: str,
        media: list[RelayMedia],
        ports: dict[str, list[int]],
        rtcp_ports: dict[str, int],
    ) -> Forwarding: ...


class SourcePlan:
    """One source of a room and its encoders (cheap objects: nothing runs until started)."""

    def __init__(
        self, name: str, kind: MediaKind, encoders: list[VideoEncoder] | list[AudioEncoder]
    ):
        self.name, self.kind, self.encoders = name, kind, encoders


class MediaLayout:
    """Room `room`'s encoders, buses and lines, as `settings` ask: the same in the media
    process (buses fed by the encoders) and in the control process (mirror buses).
    `make_bus(name, encoder, kind)` makes the bus of one rendition."""

    def __init__(
        self,
        room: str,
        settings: RoomSettings,
        origin: float,
        make_bus: Callable[[str, VideoEncoder | AudioEncoder, MediaKind], PacketBus],
        loud: Callable[[], bool],
    ) -> None:
        self.room, self.origin = room, origin
        self.plans: list[SourcePlan] = []
        self.buses: dict[str, PacketBus] = {}
        self.video_lines: list[VideoLine | None] = []
        self.vp8_lines: list[VideoLine | None] = []
        self.twin_encoders: list[VideoEncoder] = []
        video = (
            ("camera", settings.camera, settings.camera_renditions),
            ("board", settings.board, settings.board_renditions),
        )
        for source_name, source_config, renditions in video:
            if source_config is None:
                self.video_lines.append(None)
                self.vp8_lines.append(None)
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
            self._add(SourcePlan(source_name, "video", encoders), make_bus)
            layered: list[PacketBus] = [
                LayerView(
                    f"{room}/{source_name}/vp8/half",
                    self.buses[encoder.name],
                    nominal_bitrate=encoder.bitrate * 6 // 10,
                )
                for encoder in twins
                if encoder.temporal_layers == 2
            ]
            can_pause = source_name == "camera"  # the board stays, as stills at worst
            self.video_lines.append(
                VideoLine([self.buses[e.name] for e in h264], can_pause=can_pause)
            )
            self.vp8_lines.append(
                VideoLine([self.buses[e.name] for e in twins] + layered, can_pause=can_pause)
            )
        self.audio: PacketBus | None = None
        self.mic_encoder: AudioEncoder | None = None
        self.ducking_encoder: AudioEncoder | None = None
        if settings.mic is not None:
            bitrate = settings.audio.bitrate_kbps * 1000
            self.mic_encoder = AudioEncoder("mic", bitrate=bitrate, origin=origin)
            audio_encoders = [self.mic_encoder]
            if settings.speaker is not None:  # what a pupil who talks hears back
                self.ducking_encoder = AudioEncoder(
                    "mic/ducked",
                    bitrate=bitrate,
                    origin=origin,
                    gain=lambda: DUCKED_GAIN if loud() else 1.0,
                    active=False,
                )
                audio_encoders.append(self.ducking_encoder)
            self._add(SourcePlan("mic", "audio", audio_encoders), make_bus)
            self.audio = self.buses["mic"]

    def _add(
        self,
        plan: SourcePlan,
        make_bus: Callable[[str, VideoEncoder | AudioEncoder, MediaKind], PacketBus],
    ) -> None:
        self.plans.append(plan)
        for encoder in plan.encoders:
            self.buses[encoder.name] = make_bus(f"{self.room}/{encoder.name}", encoder, plan.kind)

    def encoders(self) -> Iterator[tuple[str, VideoEncoder | AudioEncoder]]:
        for plan in self.plans:
            for encoder in plan.encoders:
                yield plan.name, encoder


def bus_for(
    name: str,
    encoder: VideoEncoder | AudioEncoder,
    kind: MediaKind,
    request_keyframe: Callable[[], None] | None = None,
) -> PacketBus:
    """The bus an encoder feeds; its keyframe requests go straight to the encoder, or to
    `request_keyframe` (a mirror bus in another process than the encoder's)."""
    return PacketBus(
        name,
        kind,
        request_keyframe=request_keyframe or encoder.request_keyframe,
        queue_size=30 if kind == "video" else 25,
        nominal_bitrate=encoder.bitrate,
        self_contained=isinstance(encoder, VideoEncoder) and encoder.stills,
        codec=encoder.codec if isinstance(encoder, VideoEncoder) else "h264",
    )


def encoder_status(
    source: str, encoder: VideoEncoder | AudioEncoder, bus: PacketBus
) -> EncoderStatus:
    return EncoderStatus(
        keyframe_requests=bus.keyframe_requests,
        name=encoder.name,
        source=source,
        frames=encoder.frames,
        encode_seconds=encoder.encode_seconds,
        active=encoder.active,
        fps=encoder.fps if isinstance(encoder, VideoEncoder) else 50.0,
    )


class LocalMedia:
    """A room's media plane in this process: capture threads, encoders, buses (whose
    subscribers, with `serve_here`, are in this process; else only their taps read)."""

    def __init__(
        self, room: str, settings: RoomSettings, origin: float, *, serve_here: bool = True
    ) -> None:
        self.room, self.settings, self.origin = room, settings, origin
        self._serve_here = serve_here  # False: only the buses' taps (other processes) read
        self.speaker = Speaker(settings.speaker.device) if settings.speaker is not None else None
        self.talks = Publishers(
            (),
            connect_timeout=TALK_CONNECT_TIMEOUT,
            max_sessions=TALKS_PER_ROOM,
            on_connected=lambda talk: self._on_talk(talk.id, "connected"),
            on_closed=lambda talk: self._on_talk(talk.id, "closed"),
        )
        self._on_talk: OnTalk = lambda session, state: None
        self._players: set[asyncio.Task[None]] = set()
        layout = self.layout = MediaLayout(room, settings, origin, bus_for, self._loud)
        self.buses = layout.buses
        self.video_lines, self.vp8_lines, self.audio = (
            layout.video_lines,
            layout.vp8_lines,
            layout.audio,
        )
        self.pipelines: list[SourcePipeline] = []
        tops = {"camera": settings.camera_renditions, "board": settings.board_renditions}
        for plan in layout.plans:
            if plan.kind == "video":
                top = tops[plan.name][0]
                config = settings.camera if plan.name == "camera" else settings.board
                assert config is not None
                source = video_source(plan.name, config, top)
                title, detail = RECONNECTING[plan.name]
                missing: av.VideoFrame | None = slate(top.width, top.height, title, detail)
                fps = getattr(config, "fps", None) or top.fps
                missing_after = max(1.0, 3 / fps)
            else:
                assert settings.mic is not None
                source, missing, missing_after = audio_source(settings.mic), None, 1.0
            for encoder in plan.encoders:
                if isinstance(encoder, BackgroundEncoder):  # it hands its packets on itself
                    encoder.sink = self._publish
            self.pipelines.append(
                SourcePipeline(
                    source,
                    plan.encoders,
                    self._publish,
                    missing=missing,
                    missing_after=missing_after,
                )
            )
        self.capturing = False

    def _publish(self, rendition: str, packet: Packet) -> None:
        self.buses[rendition].publish_threadsafe(packet)

    def _loud(self) -> bool:
        """The speakers play a pupil's voice now: the microphone they hear back is ducked."""
        return self.speaker is not None and self.speaker.level > 0

    async def warm(self) -> None:
        if not self.capturing:
            self.capturing = True
            if self._serve_here:  # each packet to this loop too, for its subscribers
                loop = asyncio.get_running_loop()
                for bus in self.buses.values():
                    bus.bind(loop)
            for pipeline in self.pipelines:
                pipeline.start()
            if self.speaker is not None:
                self.speaker.start()
            await self.talks.start()

    async def cool(self) -> None:
        if self.capturing:
            self.capturing = False
            await self.talks.stop()
            await cancel_all(list(self._players))
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.pipelines))
            if self.speaker is not None:
                await asyncio.to_thread(self.speaker.stop)

    def on_talk_events(self, on_talk: OnTalk) -> None:
        """Who is told when a talk session connects or closes."""
        self._on_talk = on_talk

    async def talk(self, offer_sdp: str, ice_servers: list[IceServer]) -> tuple[str, str]:
        """A talking pupil's microphone (WHIP), played through the classroom speakers;
        (its session id, the SDP answer). Raises `OfferError`."""
        speaker = self.speaker
        if speaker is None:
            raise OfferError(409, "No speakers", NO_SPEAKERS)
        if not self.capturing:
            raise OfferError(409, "No lesson", "Lớp học chưa bắt đầu: em chưa nói được.")
        session, answer = await self.talks.create(offer_sdp, ice_servers)
        player = asyncio.create_task(self._play(session, speaker), name=f"talk-{self.room}")
        self._players.add(player)  # it ends with the session's track; `cool` awaits it
        player.add_done_callback(self._players.discard)
        return session.id, answer

    async def _play(self, session: TalkSession, speaker: Speaker) -> None:
        try:
            async for frame in session.frames():
                speaker.play(frame)  # type: ignore[arg-type]
        except Exception:
            logger.exception("room %s: playing talk session %s", self.room, session.id)

    async def end_talk(self, session_id: str) -> bool:
        return await self.talks.delete(session_id)

    def pause_camera(self, paused: bool) -> None:
        top = self.settings.camera_renditions[0]
        cover = (
            slate(top.width, top.height, CAMERA_PAUSED, CAMERA_PAUSED_DETAIL) if paused else None
        )
        for pipeline in self.pipelines:
            if pipeline.source.name == "camera":
                pipeline.cover = cover

    def set_twins(self, on: bool) -> None:
        # the encoding threads see it at their next frame (and drop the codec when off)
        for encoder in self.layout.twin_encoders:
            encoder.active = on

    def set_ducking(self, on: bool) -> None:
        if self.layout.ducking_encoder is not None:
            self.layout.ducking_encoder.active = on

    def status(self) -> RoomStatus:
        mic = self.layout.mic_encoder
        return RoomStatus(
            sources=[
                SourceStatus(
                    name=p.source.name,
                    state=p.source.state,
                    error=p.source.error,
                    frames=p.source.frames,
                    missing=p.showing_missing,
                    hangs=p.hangs,
                    last_hang=p.last_hang,
                    abandoned=p.source.abandoned,
                    failing_since=p.source.failing_since,
                )
                for p in self.pipelines
            ],
            encoders=[
                encoder_status(source, e, self.buses[e.name])
                for source, e in self.layout.encoders()
            ],
            mic_loud_at=None if mic is None else mic.loud_at,
            speaker_error=self.speaker.error if self.speaker is not None else None,
        )

    async def preview(self, source: str) -> bytes | None:
        frames = [p.last_frame for p in self.pipelines if p.source.name == source]
        frame = frames[0] if frames and self.capturing else None
        if not isinstance(frame, av.VideoFrame):
            return None
        return await asyncio.to_thread(preview_jpeg, frame)

    async def take(self, plan: TakePlan, on_open: OnOpen) -> LocalTake:
        """Start a take of this room's buses (written in this process)."""
        take = LocalTake(self.buses, plan, on_open)
        take.start()
        return take

    async def forward(
        self,
        host: str,
        media: list[RelayMedia],
        ports: dict[str, list[int]],
        rtcp_ports: dict[str, int],
    ) -> RtpForwarder:
        """Push `media` (streams of this room's buses) as RTP to Janus at `host`, from
        this process's loop."""
        loop = asyncio.get_running_loop()
        for stream in media:
            for bus in stream.buses:  # their packets to this loop too, for the forwarder
                bus.bind(loop)
        forwarder = RtpForwarder(host, media, ports, rtcp_ports)
        await forwarder.start()
        return forwarder
