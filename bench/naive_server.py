"""A naive WHEP server that encodes per viewer, the usual aiortc way (baseline for fanout.py).

The same synthetic sources as the classroom-edge demo (`TestCamera` 1280×720@30,
`TestBoard` 1920×1080@5, `TestTone` 48 kHz) are wrapped in aiortc tracks and fanned
out with `aiortc.contrib.media.MediaRelay`; every viewer's `RTCRtpSender` then runs
aiortc's own encoders (libx264 via `H264Encoder`, libopus via `OpusEncoder`) on the
shared raw frames, in the event loop's default thread pool. That is what
classroom-edge is designed to avoid: it encodes once and packetizes once for all.

Video subscriptions are unbuffered (a late sender gets the newest frame, older ones
are skipped): with aiortc's default `buffered=True` a saturated server would queue
raw 720p frames without bound. Audio keeps the default buffered subscription.

    python bench/naive_server.py --host 127.0.0.1 --port 8090

`POST /whep/{room}` takes any bearer token; the offer's first video m-line gets the
camera, the second the board, audio the tone. `DELETE /whep/{room}/{id}` ends a
session, `GET /healthz` tells how many sessions are open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from fractions import Fraction

import av
import uvicorn
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from capture import Frame, Source, TestBoard, TestCamera, TestTone
from webrtc import gather_only

logger = logging.getLogger("naive_server")

VIDEO_TIME_BASE = Fraction(1, 90000)
QUEUE_FRAMES = 2  # frames waiting for the relay; older ones are dropped


class SourceTrack(MediaStreamTrack):
    """A capture thread's frames as an aiortc track, with pts in the right time base."""

    def __init__(self, source: Source, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._event_loop = loop
        self._queue: asyncio.Queue[tuple[Frame, float]] = asyncio.Queue(QUEUE_FRAMES)
        self._origin = time.monotonic()
        self._samples = 0
        self.dropped = 0

    def start(self) -> None:
        self.source.start(self._from_thread)

    def _from_thread(self, frame: Frame, captured_at: float) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._event_loop.call_soon_threadsafe(self._push, frame, captured_at)

    def _push(self, frame: Frame, captured_at: float) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((frame, captured_at))

    async def recv(self) -> Frame:
        frame, captured_at = await self._queue.get()
        if isinstance(frame, av.AudioFrame):
            frame.pts = self._samples
            frame.time_base = Fraction(1, frame.sample_rate)
            self._samples += frame.samples
        else:
            frame.pts = round((captured_at - self._origin) / VIDEO_TIME_BASE)
            frame.time_base = VIDEO_TIME_BASE
        return frame


def h264_first() -> list[RTCRtpCodecCapability]:
    """H.264 (and RTX) only, like classroom-edge, so both servers send the same codec."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]


class NaiveServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, SourceTrack] = {}
        self.sessions: dict[str, RTCPeerConnection] = {}

    async def start(self) -> None:
        gather_only(["127.0.0.1"])
        loop = asyncio.get_running_loop()
        self.tracks = {
            "camera": SourceTrack(TestCamera("camera"), loop),
            "board": SourceTrack(TestBoard("board"), loop),
            "mic": SourceTrack(TestTone("mic"), loop),
        }
        for track in self.tracks.values():
            track.start()

    async def stop(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.sessions.values()))
        self.sessions.clear()
        for track in self.tracks.values():
            track.stop()
            await asyncio.to_thread(track.source.stop)

    async def answer(self, offer: str) -> tuple[str, str]:
        session_id = secrets.token_urlsafe(12)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.sessions[session_id] = pc

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.sessions.pop(session_id, None)
                await pc.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.setCodecPreferences(h264_first())
            videos = iter(("camera", "board"))
            for transceiver in pc.getTransceivers():
                name = next(videos, None) if transceiver.kind == "video" else "mic"
                if name is None:
                    continue
                buffered = transceiver.kind == "audio"
                pc.addTrack(self.relay.subscribe(self.tracks[name], buffered=buffered))
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            self.sessions.pop(session_id, None)
            await pc.close()
            raise
        return session_id, str(pc.localDescription.sdp)

    async def delete(self, session_id: str) -> bool:
        pc = self.sessions.pop(session_id, None)
        if pc is None:
            return False
        await pc.close()
        return True


def create_app(server: NaiveServer) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="naive per-viewer encoder", lifespan=lifespan)

    @app.post("/whep/{room}")
    async def whep_post(room: str, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
            return Response("offer must be application/sdp", status_code=415)
        offer = (await request.body()).decode("utf-8", "replace")
        try:
            session_id, answer = await server.answer(offer)
        except Exception as exc:
            logger.warning("offer refused: %s", exc)
            return Response(f"cannot answer: {exc}", status_code=400)
        return Response(
            answer,
            status_code=201,
            media_type="application/sdp",
            headers={"Location": f"/whep/{room}/{session_id}"},
        )

    @app.delete("/whep/{room}/{session_id}")
    async def whep_delete(room: str, session_id: str) -> Response:
        return Response(status_code=200 if await server.delete(session_id) else 404)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        dropped = {name: track.dropped for name, track in server.tracks.items()}
        return JSONResponse(
            {"status": "ok", "viewers": len(server.sessions), "source_frames_dropped": dropped}
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    server = NaiveServer()
    config = uvicorn.Config(
        create_app(server),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    print(f"naive server on http://{args.host}:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after shutdown
        asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
