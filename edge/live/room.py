"""A classroom at run time: its media plane (sources, encoders, buses, speakers: here or in
the room's media process, `edge.live.media`), and the parts it owns: its camera control,
its classroom (who takes part), its recorder."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from capture import MAX_ABANDONED, SourcePipeline
from capture.supervise import run_every_step
from edge.config.settings import RoomSettings
from edge.live.media import LocalMedia, RoomMedia
from edge.live.mediawire import SourceStatus
from edge.school.lessons import Lesson
from webrtc import Feeds, OnDemand, PacketBus

if TYPE_CHECKING:
    from edge.live.classroom import Classroom
    from edge.live.ptz import CameraControl
    from edge.recording.recorder import Recorder

logger = logging.getLogger(__name__)


class Room:
    """One classroom at run time, owning its parts: its media plane (`media`: in this
    process unless given), the camera control, the classroom (who takes part), the
    recorder; `stop()` stops them all, each step even when one fails."""

    classroom: Classroom  # attached by the service once the room exists (it needs the room)
    recorder: Recorder | None = None  # None: this room is not recorded

    def __init__(
        self,
        name: str,
        settings: RoomSettings,
        camera: CameraControl,
        media: RoomMedia | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.camera = camera
        self.live = False  # viewers may join: the scheduler says a lesson is live
        self.lesson: Lesson | None = None
        self.capturing = False
        self.warmed_at = 0.0
        self.warmed_origin = time.monotonic()
        self.media: RoomMedia = media or LocalMedia(name, settings, time.monotonic())
        self.origin = self.media.origin  # the buses' time zero
        self.buses: dict[str, PacketBus] = self.media.buses
        self.twins = OnDemand(f"room {name}: VP8 twins", self.media.set_twins)
        self.camera_paused = False

    @property
    def pipelines(self) -> list[SourcePipeline]:
        """The capture pipelines, when they run in this process (else none)."""
        return self.media.pipelines if isinstance(self.media, LocalMedia) else []

    def feeds(self) -> Feeds:
        media = self.media
        return Feeds(
            video=media.video_lines, audio=media.audio, vp8=media.vp8_lines, twins=self.twins
        )

    async def warm(self) -> None:
        """Open the devices and start the encoders (a lesson is about to begin)."""
        if not self.capturing:
            self.capturing = True
            loop = asyncio.get_running_loop()
            self.warmed_at = loop.time()
            self.warmed_origin = time.monotonic()
            await self.media.warm()
            await self.twins.start()

    async def cool(self) -> None:
        """Release the devices (no lesson for a while)."""
        if self.capturing:
            self.capturing = False
            await self.twins.stop()
            await self.media.cool()

    def pause_camera(self, paused: bool) -> None:
        """Privacy: a slate goes out (and is recorded) instead of the camera's picture."""
        self.camera_paused = paused
        self.media.pause_camera(paused)

    def duck(self, on: bool) -> None:
        """A pupil talks (`on`): encode the microphone they hear back, ducked while the
        speaker plays their voice."""
        self.media.set_ducking(on)

    @property
    def has_speakers(self) -> bool:
        """The room has classroom speakers: a pupil may be heard."""
        return self.settings.speaker is not None

    def speaker_error(self) -> str | None:
        """Why the classroom speakers do not play, if they do not."""
        return self.media.status().speaker_error

    def sources(self) -> list[SourceStatus]:
        return self.media.status().sources

    def missing_devices(self) -> list[tuple[str, str | None]]:
        """Sources giving nothing now (a video source's slate is out, a microphone has
        failed for a while), with the reason."""
        return [(s.name, s.error) for s in self.sources() if s.missing]

    def recent_hangs(self, within: float = 60.0) -> list[tuple[str, float, bool]]:
        """Sources whose device or encoder hung in the last `within` seconds: (name,
        seconds ago, whether fresh threads took over; False: a restart is needed)."""
        now = time.monotonic()
        return [
            (s.name, now - s.last_hang[0], s.abandoned < MAX_ABANDONED)
            for s in self.sources()
            if s.last_hang is not None and now - s.last_hang[0] <= within
        ]

    def mic_silent_seconds(self) -> float | None:
        """Seconds since the classroom microphone last heard something, while live."""
        if not self.live or self.media.audio is None or not self.capturing:
            return None
        loud_at = self.media.status().mic_loud_at
        since = loud_at if loud_at is not None else self.warmed_origin
        return max(time.monotonic() - since, 0.0)

    async def preview(self, source: str) -> bytes | None:
        """A small JPEG of what `source` sends now (None: it is not capturing)."""
        return await self.media.preview(source) if self.capturing else None

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
        status = self.media.status()
        sources = {
            s.name: {
                "state": s.state,
                "error": s.error,
                "frames": s.frames,
                "missing": s.missing,
                "hangs": s.hangs,
                "last_hang": None if s.last_hang is None else s.last_hang[1],
                "failing_seconds": None
                if s.failing_since is None
                else round(time.monotonic() - s.failing_since, 1),
            }
            for s in status.sources
        }
        buses = {}
        stalled = False
        encoders = {e.name: e for e in status.encoders}
        for name, bus in self.buses.items():
            encoder = encoders.get(name)
            age = None if bus.last_packet_at is None else round(now - bus.last_packet_at, 2)
            # stalled: no packet for 5 s, or for two and a half frames of a slow rendition
            # (an audio encoder at rest, the ducked microphone, sends none on purpose)
            fps = encoder.fps if encoder is not None else 50.0
            resting = encoder is not None and not encoder.active  # an unwatched twin, …
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
            "device_missing": self.capturing and any(s.missing for s in status.sources),
        }
