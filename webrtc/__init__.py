"""WebRTC: the packet bus, viewer sessions (aiortc) and WHEP, talk sessions and WHIP.
Knows nothing of school life."""

from .bus import PacketBus, Subscription
from .choice import VideoLine
from .departures import quiet_departures
from .ice import IceServer, gather_only, is_loopback, rtc_configuration
from .sdp import MAX_OFFER_BYTES, OfferError
from .session import Feeds, ViewerSession
from .whep import SessionManager
from .whip import Publishers, TalkSession

__all__ = [
    "MAX_OFFER_BYTES",
    "Feeds",
    "IceServer",
    "OfferError",
    "PacketBus",
    "Publishers",
    "SessionManager",
    "Subscription",
    "TalkSession",
    "VideoLine",
    "ViewerSession",
    "gather_only",
    "is_loopback",
    "quiet_departures",
    "rtc_configuration",
]
