"""A viewer session: one aiortc peer connection fed from the shared packet buses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from . import packer
from .bus import PacketBus, Subscription
from .sdp import OfferError, SdpFragment, parse_offer
from .track import PacketTrack

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feeds:
    """What a room offers a viewer: video buses in m-line order (camera, then board)
    and the audio bus."""

    video: Sequence[PacketBus | None]
    audio: PacketBus | None


def _codecs(kind: str) -> list[RTCRtpCodecCapability]:
    """Only what the shared encoders produce: H.264 packetization-mode 1, Opus."""
    wanted = "video/h264" if kind == "video" else "audio/opus"
    chosen = []
    for codec in RTCRtpSender.getCapabilities(kind).codecs:
        mime = codec.mimeType.lower()
        mode = str(codec.parameters.get("packetization-mode", "1"))
        if (mime == wanted and mode == "1") or (mime == "video/rtx" and kind == "video"):
            chosen.append(codec)
    return chosen


class ViewerSession:
    """Answers one WHEP offer and streams until closed (`close()` is idempotent)."""

    def __init__(self, session_id: str, pc: RTCPeerConnection, feeds: Feeds) -> None:
        self.id = session_id
        self.pc = pc
        self.feeds = feeds
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.subscriptions: list[Subscription] = []
        self.remote_ufrag: str | None = None
        self.info: dict[str, Any] = {}
        self._closed = asyncio.Event()
        self._closing = False

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer (m-lines: first video = camera, second = board, audio = mic)
        and return the answer with all candidates gathered (no trickle from us)."""
        description = parse_offer(offer_sdp)
        video_feeds = list(self.feeds.video)
        audio_feed = self.feeds.audio
        for media in description.media:
            if media.kind not in ("audio", "video"):
                continue
            if media.kind == "video":
                bus = video_feeds.pop(0) if video_feeds else None
            else:
                bus, audio_feed = audio_feed, None
            transceiver = self.pc.addTransceiver(
                media.kind, direction="sendonly" if bus else "inactive"
            )
            transceiver.setCodecPreferences(_codecs(media.kind))
            if bus is not None:
                subscription = bus.subscribe()
                self.subscriptions.append(subscription)
                sender = transceiver.sender
                sender.replaceTrack(PacketTrack(subscription))
                packer.attach(sender, bus.packer, bus.request_keyframe)
        if not self.subscriptions:
            raise OfferError(
                400, "Nothing to receive", "the offer asks for no stream this room has"
            )
        ice = description.media[0].ice
        self.remote_ufrag = ice.usernameFragment if ice else None
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise OfferError(
                400,
                "Unsupported offer",
                f"cannot negotiate the offer ({exc}); video must allow H.264 "
                "(constrained baseline, packetization-mode=1) and audio Opus",
            ) from exc
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    async def add_candidates(self, fragment: SdpFragment) -> None:
        if fragment.ufrag is not None and fragment.ufrag != self.remote_ufrag:
            raise OfferError(
                422, "ICE restart not supported", "start a new session with a new offer instead"
            )
        for candidate in fragment.candidates:
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
            for subscription in self.subscriptions:
                subscription.close()
            await self.pc.close()
        except Exception:  # closing must never fail the caller
            logger.exception("closing session %s", self.id)
        finally:
            self._closed.set()
