"""A viewer session: one aiortc peer connection fed from the shared packet buses."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import MediaDescription

from capture import VideoCodec

from . import packer, sendloop
from .bus import PacketBus
from .choice import (
    Level,
    LinkReport,
    RateController,
    VideoLine,
    build_ladder,
    level_costs,
    save_data_cap,
)
from .pacer import Clock, Pacer
from .packer import SenderCodec
from .resync import Resequencer, SequenceShift
from .sdp import OfferError, SdpFragment, parse_offer, with_rejected, without_sections
from .track import PacketTrack
from .twins import Hold

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feeds:
    """What a room offers a viewer: video lines in m-line order (camera, then board;
    None where the room has no such source) and the audio bus; `vp8` the same lines'
    VP8 twins, which `twins` switches on while a viewer needs them."""

    video: Sequence[VideoLine | None]
    audio: PacketBus | None
    vp8: Sequence[VideoLine | None] = ()
    twins: Hold | None = None


@dataclass
class VideoOutput:
    """One video m-line being served."""

    line: VideoLine
    track: PacketTrack
    sender: RTCRtpSender
    codec: SenderCodec


ADAPT_INTERVAL = 0.5  # seconds between rendition choices
UNPACED = 1e9  # bits/s
DELIVERED_AGE = 3.0  # seconds a stream's last delivered rate counts


def _codecs(kind: str, video: VideoCodec = "h264") -> list[RTCRtpCodecCapability]:
    """Only what the shared encoders produce: H.264 packetization-mode 1 (or VP8), Opus."""
    wanted = f"video/{video}" if kind == "video" else "audio/opus"
    chosen = []
    for codec in RTCRtpSender.getCapabilities(kind).codecs:
        mime = codec.mimeType.lower()
        mode = str(codec.parameters.get("packetization-mode", "1"))
        if (mime == wanted and mode == "1") or (mime == "video/rtx" and kind == "video"):
            chosen.append(codec)
    return chosen


def _takes(media: MediaDescription, kind: str, video: VideoCodec = "h264") -> bool:
    """Whether an offered m-line has a codec in common with `_codecs(kind, video)`."""
    ours = [
        RTCRtpCodecParameters(
            mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=c.parameters
        )
        for c in _codecs(kind, video)
        if c.mimeType.lower() != "video/rtx"
    ]
    return bool(find_common_codecs(ours, media.rtp.codecs))


def video_codec(media: MediaDescription) -> VideoCodec | None:
    """What a video m-line of an offer gets: H.264 when it takes it (the encoders run
    anyway), else VP8 (twins), else None: no codec in common, the line is rejected."""
    if _takes(media, "video", "h264"):
        return "h264"
    return "vp8" if _takes(media, "video", "vp8") else None


class ViewerSession:
    """Answers one WHEP offer and streams until closed (`close()` is idempotent).

    Every `adapt()` (the session manager calls it each `ADAPT_INTERVAL`) reads the
    viewer's receiver reports and REMB, updates its link estimate and switches each
    video line to the rendition the link carries; `save_data` caps it at the lowest.
    """

    def __init__(
        self,
        session_id: str,
        pc: RTCPeerConnection,
        feeds: Feeds,
        *,
        save_data: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        self.id = session_id
        self.pc = pc
        self.feeds = feeds
        self.save_data = save_data
        self._clock = clock
        self.created_at = clock()
        self.connected_at: float | None = None
        self.outputs: list[VideoOutput] = []
        self.codecs: list[VideoCodec | None] = []  # per offered video m-line; None: rejected
        self.rejected: set[str] = set()  # mids answered with port 0 (no codec in common)
        self._primary_mid: str | None = None  # the first m-line answered: trickle goes there
        self._holds_twins = False
        self.audio: tuple[RTCRtpSender, PacketTrack] | None = None
        self.ladder: list[Level] = []
        self.controller: RateController | None = None
        self.pacer = Pacer(rate=UNPACED, clock=clock)
        self.resequencer = Resequencer(clock)
        self.send_loops: list[sendloop.SendLoop] = []
        self.remote_ufrag: str | None = None
        self.info: dict[str, Any] = {}
        self._watched: list[tuple[RTCRtpSender, SequenceShift]] = []  # video, then audio
        self._sent_at_report: dict[int, int] = {}  # SSRC -> bytes sent by the last report
        self._rtt_at: dict[int, datetime] = {}  # SSRC -> time of the last report's RTT
        self._delivered: collections.deque[tuple[float, float]] = collections.deque()
        self._nacks_seen = (0, 0)  # video packets named lost, and sent, at the last tick
        self._last_tick = clock()
        self._last_sent = 0
        self._closed = asyncio.Event()
        self._closing = False
        self.answer_ms: dict[str, float] = {}  # what answering took: "negotiate", "gather"

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    @property
    def tracks(self) -> list[PacketTrack]:
        tracks = [output.track for output in self.outputs]
        return tracks + ([self.audio[1]] if self.audio else [])

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer (m-lines: first video = camera, second = board, audio = mic)
        and return the answer with all candidates gathered (no trickle from us). Viewing
        is receiving only: whatever the offer's directions, we only send (a pupil's turn
        to speak is a WHIP session of its own). A video line takes H.264, else the VP8
        twins; one with neither is rejected (port 0) and the rest still answered; only
        an offer left with nothing to receive is refused."""
        description = parse_offer(offer_sdp)
        feeds = self.feeds
        audio_feed = feeds.audio
        index = 0
        for media in description.media:
            if media.kind not in ("audio", "video"):
                continue
            line: VideoLine | None = None
            bus: PacketBus | None = None
            codec: VideoCodec = "h264"
            if media.kind == "video":
                chosen = video_codec(media)
                self.codecs.append(chosen)
                lines = feeds.vp8 if chosen == "vp8" else feeds.video
                line = lines[index] if index < len(lines) else None
                index += 1
                if chosen is None:
                    self.rejected.add(str(media.rtp.muxId))
                    continue
                codec = chosen
            elif not _takes(media, "audio"):
                self.rejected.add(str(media.rtp.muxId))
                continue
            else:
                bus, audio_feed = audio_feed, None
            if self._primary_mid is None:
                self._primary_mid = str(media.rtp.muxId)
            direction = "sendonly" if line or bus else "inactive"
            transceiver = self.pc.addTransceiver(media.kind, direction=direction)
            transceiver.setCodecPreferences(_codecs(media.kind, codec))
            if line is not None:
                if codec == "vp8" and not self._holds_twins and feeds.twins is not None:
                    feeds.twins.acquire()  # before the first subscription asks for a keyframe
                    self._holds_twins = True
                track = PacketTrack("video")
                sender_codec = packer.attach(transceiver.sender, track)
                self._send_loop(transceiver.sender, track, sender_codec)
                self.outputs.append(VideoOutput(line, track, transceiver.sender, sender_codec))
            elif bus is not None:
                track = PacketTrack("audio", bus)
                self._send_loop(transceiver.sender, track, packer.attach(transceiver.sender, track))
                self.audio = (transceiver.sender, track)
        if not self.tracks:
            raise OfferError(
                400,
                "Nothing to receive",
                "the offer asks for no stream this room has in a codec it sends "
                "(video: H.264 constrained baseline packetization-mode=1 or VP8; audio: Opus)",
            )
        self._start_level()
        ice = description.media[0].ice
        self.remote_ufrag = ice.usernameFragment if ice else None
        served = without_sections(offer_sdp, self.rejected) if self.rejected else offer_sdp
        started = time.perf_counter()
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(served, "offer"))
        except Exception as exc:
            raise OfferError(
                400,
                "Unsupported offer",
                f"cannot negotiate the offer ({exc}); video must allow H.264 "
                "(constrained baseline, packetization-mode=1) or VP8, and audio Opus",
            ) from exc
        answer = await self.pc.createAnswer()
        negotiated = time.perf_counter()
        await self.pc.setLocalDescription(answer)  # gathers all our candidates: no trickle
        gathered = time.perf_counter()
        self.answer_ms = {
            "negotiate": (negotiated - started) * 1000,
            "gather": (gathered - negotiated) * 1000,
        }
        self._pace()
        await self.pacer.start()
        sdp = str(self.pc.localDescription.sdp)
        return with_rejected(sdp, offer_sdp, self.rejected) if self.rejected else sdp

    def _send_loop(self, sender: RTCRtpSender, track: PacketTrack, codec: SenderCodec) -> None:
        """The sender's RTP goes out by our lean loop, numbered by the resequencer and
        paced by the pacer (`_pace` sets both up before the sender starts)."""
        self.send_loops.append(sendloop.install(sender, track, codec, self.pacer, self.resequencer))

    def _start_level(self) -> None:
        self.ladder = build_ladder([output.line for output in self.outputs])
        costs = self.costs()
        self.controller = RateController(start_estimate=costs[-1] * 1.3)
        self._apply(self.controller.update(LinkReport(self._clock(), 0, 0.0), costs, self.cap))

    def _pace(self) -> None:
        # Retransmissions never wait (they are dropped while the pacer is overdrawn):
        # aiortc sends them from its RTCP receive path, which must never wait.
        for priority, output in enumerate(self.outputs):
            self.pacer.priorities[output.sender._ssrc] = priority
            self.pacer.retransmission_ssrcs.add(output.sender._rtx_ssrc)
            shift = self.resequencer.watch(output.sender, output.track.request_keyframe)
            output.codec.shift = shift
            self._watched.append((output.sender, shift))
        if self.audio is not None:
            sender = self.audio[0]
            self._watched.append((sender, self.resequencer.watch(sender, renumber=False)))
        # the send loops number, pace and count the media themselves; what aiortc still
        # sends itself (RTCP, retransmissions) passes the transport's layers
        for transceiver in self.pc.getTransceivers():  # one transport with BUNDLE
            self.pacer.wrap(transceiver.sender.transport)
            self.resequencer.wrap(transceiver.sender.transport)  # numbers, then pacing
        self.pacer.rate = self._pacing_rate()

    @property
    def cap(self) -> int | None:
        """With `save_data`, the best level that keeps every line at its cheapest."""
        if not self.save_data:
            return None
        return save_data_cap(self.ladder, [output.line for output in self.outputs])

    def costs(self) -> list[float]:
        """Bits/s each level costs on the wire, audio included."""
        audio = self.feeds.audio.wire_bitrate() if self.audio and self.feeds.audio else 0.0
        return level_costs(self.ladder, audio)

    def _apply(self, level: int) -> None:
        for output, bus in zip(self.outputs, self.ladder[level], strict=True):
            output.track.switch(bus)

    def set_audio(self, bus: PacketBus | None) -> None:
        """Send this viewer another audio bus (a ducked microphone while they talk)."""
        if self.audio is not None and bus is not None:
            self.audio[1].switch(bus)

    def set_save_data(self, save_data: bool) -> None:
        """The page's "save data" switch; takes effect at once."""
        self.save_data = save_data
        if self.controller is not None:
            now = self._clock()
            self._apply(self.controller.update(LinkReport(now, 0, 0.0), self.costs(), self.cap))

    async def _receiver_reports(self) -> tuple[float | None, float | None, float | None]:
        """(loss in the receiver reports that came since the last call, weighted by what
        each stream sent; the bits/s that got through in them; the worst round-trip
        time in them)."""
        weighted = weight = 0.0
        rtts: list[float] = []
        for sender, shift in self._watched:
            lost, expected = shift.take_loss()
            if expected > 0:
                sent = self.pacer.sent_by_ssrc[sender._ssrc]
                share = sent - self._sent_at_report.get(sender._ssrc, 0)
                self._sent_at_report[sender._ssrc] = sent
                weighted += lost / expected * share
                weight += share
            for stats in (await sender.getStats()).values():
                # (stats.ssrc is the reporter's SSRC, the same for all of a peer's streams)
                if stats.type != "remote-inbound-rtp" or stats.roundTripTime is None:
                    continue
                if self._rtt_at.get(sender._ssrc) != stats.timestamp:  # a fresh report
                    self._rtt_at[sender._ssrc] = stats.timestamp
                    rtts.append(stats.roundTripTime)
        loss = weighted / weight if weight > 0 else None
        # each stream's receiver reports on its own timer: add up the latest of each, and
        # take the best sum of the last seconds (a quiet moment delivers little because
        # little was sent, not because the link carries little)
        now = self._clock()
        fresh = [s.delivered for _, s in self._watched if now - s.delivered_at <= DELIVERED_AGE]
        if fresh:
            self._delivered.append((now, sum(d for d in fresh if d is not None)))
        while self._delivered and now - self._delivered[0][0] > DELIVERED_AGE:
            self._delivered.popleft()
        delivered = max((d for _, d in self._delivered), default=None)
        return loss, delivered if loss is not None else None, max(rtts, default=None)

    def _nack_loss(self) -> float | None:
        """The share of video packets sent since the last tick that the viewer named
        lost. NACKs come about a round trip after a loss, receiver reports a second or
        more later and mixed with what went before: the first sign of a link thinning."""
        shifts = [shift for sender, shift in self._watched if sender.kind == "video"]
        nacked = sum(shift.nacked for shift in shifts)
        sent = sum(shift.sent_packets for shift in shifts)
        last_nacked, last_sent = self._nacks_seen
        self._nacks_seen = (nacked, sent)
        if sent <= last_sent:
            return None
        return min((nacked - last_nacked) / (sent - last_sent), 1.0)

    async def adapt(self, server_lag: float = 0.0) -> None:
        """Read the viewer's reports and switch renditions to what its link carries;
        `server_lag`: how late our event loop ran lately (it reads reports late)."""
        if self.controller is None or self.pc.connectionState != "connected":
            return
        now = self._clock()
        interval = now - self._last_tick
        loss, delivered, rtt = await self._receiver_reports()
        nack_loss = self._nack_loss()
        if nack_loss is not None:
            loss = nack_loss if loss is None else max(loss, nack_loss)
        sent = self.pacer.sent_bytes - self._last_sent
        self._last_tick, self._last_sent = now, self.pacer.sent_bytes
        report = LinkReport(now, sent * 8, interval, loss, rtt, delivered, server_lag)
        self._apply(self.controller.update(report, self.costs(), self.cap))
        self.pacer.rate = self._pacing_rate()

    def _pacing_rate(self) -> float:
        controller = self.controller
        rate = controller.pacing_rate(self._clock()) if controller is not None else None
        return UNPACED if rate is None else rate

    async def status(self) -> dict[str, Any]:
        """`describe()`, as a viewer in a worker process answers it."""
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """What the viewer gets now, for the page and for health."""
        controller = self.controller
        chosen = {id(o.line): o.track.target for o in self.outputs}
        vp8 = list(self.feeds.vp8) + [None] * (len(self.feeds.video) - len(self.feeds.vp8))
        video: list[str | None] = []
        for lines in zip(self.feeds.video, vp8, strict=True):
            bus = next((chosen[id(x)] for x in lines if x is not None and id(x) in chosen), None)
            video.append(None if bus is None else bus.rendition)
        return {
            "video": video,
            "codecs": self.codecs,
            "level": controller.level if controller else 0,
            "levels": len(self.ladder),
            "save_data": self.save_data,
            "poor": controller.poor if controller else False,
            "estimate_kbps": round(controller.estimate / 1000) if controller else None,
            "costs_kbps": [round(cost / 1000) for cost in self.costs()],
            "loss": round(controller.last_loss, 3) if controller else None,
            "reason": controller.reason if controller else "",
            "remb_kbps": [
                None if o.codec.remb is None else round(o.codec.remb / 1000) for o in self.outputs
            ],
            "sent_bytes": self.pacer.sent_bytes,
            "resyncs": [o.codec.shift.resyncs if o.codec.shift else 0 for o in self.outputs],
            "nacked": [o.codec.shift.nacked if o.codec.shift else 0 for o in self.outputs],
        }

    async def add_candidates(self, fragment: SdpFragment) -> None:
        if fragment.ufrag is not None and fragment.ufrag != self.remote_ufrag:
            raise OfferError(
                422, "ICE restart not supported", "start a new session with a new offer instead"
            )
        for candidate in fragment.candidates:
            if candidate.sdpMid in self.rejected:  # bundled: one transport, ours
                candidate.sdpMid, candidate.sdpMLineIndex = self._primary_mid, None
            if candidate.sdpMid is None:
                candidate.sdpMid = self.pc.getTransceivers()[0].mid
            await self.pc.addIceCandidate(candidate)
        if fragment.end_of_candidates:
            await self.pc.addIceCandidate(None)

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            for track in self.tracks:
                track.stop()
            if self._holds_twins and self.feeds.twins is not None:
                self._holds_twins = False
                self.feeds.twins.release()
            await self.pacer.stop()
            await self.pc.close()
        except Exception:  # closing must never fail the caller
            logger.exception("closing session %s", self.id)
        finally:
            self._closed.set()
