"""WebRTC: the packet bus, viewer sessions (aiortc) and WHEP, talk sessions and WHIP.
Knows nothing of school life.

`webrtc.viewer` (not imported here: the service does not need it) is the other side, a
WHEP viewer on aiortc that decodes: the drill's loopback viewer and the tests' viewer.
"""

from .bus import LayerView, PacketBus, Subscription
from .choice import PageReport, RemoteChoice, VideoLine
from .departures import quiet_departures
from .ice import IceServer, gather_only, is_loopback, rtc_configuration
from .sdp import MAX_OFFER_BYTES, OfferError
from .session import Feeds, ViewerSession
from .twins import OnDemand
from .viewers import Viewer, Viewers
from .whep import SessionManager
from .whip import Publishers, TalkSession
from .workers import WorkerPool

__all__ = [
    "MAX_OFFER_BYTES",
    "Feeds",
    "IceServer",
    "LayerView",
    "OfferError",
    "OnDemand",
    "PacketBus",
    "PageReport",
    "Publishers",
    "RemoteChoice",
    "SessionManager",
    "Subscription",
    "TalkSession",
    "VideoLine",
    "Viewer",
    "ViewerSession",
    "Viewers",
    "WorkerPool",
    "gather_only",
    "is_loopback",
    "quiet_departures",
    "rtc_configuration",
]
