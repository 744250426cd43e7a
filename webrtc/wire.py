"""What the service and its viewer workers say to each other (`webrtc.workers`,
`webrtc.worker`): a small, typed, versioned message set on a control socket (one JSON
object a line), and encoded packets on a media socket (length-prefixed binary frames).

Keyframe requests go back on the media socket (two bytes, a bus index), so that they
reach the encoders without waiting for the service's event loop.

Control, service → worker: `Hello` (first, once), `Offer`, `Trickle`, `Delete`,
`SaveData`, `SetAudio`, `Describe`. Worker → service: `Ready` (first, once), `Answer`,
`Failed`, `Done`, `Described`, `Connected`, `Closed`, `Keyframe`, `Twins`, `Beat`.
A request carries `req`; its reply (`Answer`/`Failed`/`Done`/`Described`) the same.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Any, Generic, Literal, TypeVar

import av
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from capture import MediaKind, Packet, VideoCodec, set_temporal_layer, temporal_layer

VERSION = 1
MAX_LINE = 256 * 1024  # bytes of one control message (an offer is at most 64 KiB)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusSpec(Message):
    """One bus the service feeds the workers (`base`: a `LayerView` of that bus)."""

    index: int
    name: str
    kind: MediaKind
    codec: VideoCodec = "h264"
    queue_size: int = 30
    nominal_bitrate: int = 0
    self_contained: bool = False
    base: int | None = None


class LineSpec(Message):
    renditions: list[int]
    can_pause: bool = False


class RoomFeeds(Message):
    """A room's `Feeds` by bus index."""

    room: str
    video: list[LineSpec | None]
    audio: int | None
    vp8: list[LineSpec | None] = []


class Hello(Message):
    type: Literal["hello"] = "hello"
    version: int = VERSION
    worker: int
    buses: list[BusSpec]
    rooms: list[RoomFeeds]
    connect_timeout: float
    max_sessions: int
    addresses: list[str] | None = None  # host candidates only on these (`gather_only`)
    ports: tuple[int, int] | None = None  # this worker's share of `udp_ports`
    public_address: str | None = None
    beat: float = 0.5  # seconds between `Beat`s


class IceServerSpec(Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Offer(Message):
    type: Literal["offer"] = "offer"
    req: int
    session: str  # the id the service gave it
    room: str
    sdp: str
    save_data: bool = False
    ice_servers: list[IceServerSpec] = []


class Trickle(Message):
    type: Literal["trickle"] = "trickle"
    req: int
    session: str
    body: str


class Delete(Message):
    type: Literal["delete"] = "delete"
    req: int
    session: str


class SaveData(Message):
    type: Literal["save_data"] = "save_data"
    session: str
    on: bool


class SetAudio(Message):
    type: Literal["set_audio"] = "set_audio"
    session: str
    bus: int


class Describe(Message):
    type: Literal["describe"] = "describe"
    req: int
    session: str


class Ready(Message):
    type: Literal["ready"] = "ready"
    version: int = VERSION
    pid: int


class Answer(Message):
    type: Literal["answer"] = "answer"
    req: int
    session: str
    sdp: str
    timing: dict[str, float] = {}  # ms answering took in the worker ("negotiate", "gather")


class Failed(Message):
    type: Literal["failed"] = "failed"
    req: int
    status: int
    title: str
    detail: str


class Done(Message):
    type: Literal["done"] = "done"
    req: int
    found: bool = True


class Described(Message):
    type: Literal["described"] = "described"
    req: int
    state: dict[str, Any] | None


class Connected(Message):
    type: Literal["connected"] = "connected"
    session: str


class Closed(Message):
    type: Literal["closed"] = "closed"
    session: str


class Keyframe(Message):
    type: Literal["keyframe"] = "keyframe"
    bus: int


class Twins(Message):
    type: Literal["twins"] = "twins"
    room: str
    hold: bool  # True: a viewer needs the VP8 twins; False: one that did has gone


class BusCounts(Message):
    subscribers: int
    dropped: int
    resyncs: int


class Beat(Message):
    type: Literal["beat"] = "beat"
    sessions: int
    peer_connections: int
    lag: float  # the worker loop's worst lateness lately, seconds
    buses: dict[int, BusCounts] = {}
    drops: dict[str, int] = {}  # datagrams its media ports dropped so far, by cause


ToWorker = Annotated[
    Hello | Offer | Trickle | Delete | SaveData | SetAudio | Describe,
    Field(discriminator="type"),
]
FromWorker = Annotated[
    Ready | Answer | Failed | Done | Described | Connected | Closed | Keyframe | Twins | Beat,
    Field(discriminator="type"),
]
_to_worker: TypeAdapter[ToWorker] = TypeAdapter(ToWorker)
_from_worker: TypeAdapter[FromWorker] = TypeAdapter(FromWorker)


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode() + b"\n"


def to_worker(line: bytes) -> ToWorker:
    return _to_worker.validate_json(line)


def from_worker(line: bytes) -> FromWorker:
    return _from_worker.validate_json(line)


# Media frames: length (of what follows), bus index, flags, temporal layer, pts, time base.
_FRAME = struct.Struct("!IHBbqII")
FRAME_HEADER = _FRAME.size
KEYFRAME, LAYERED, GAP = 1, 2, 4  # flags; GAP: packets before this one were dropped


def pack_frame(index: int, packet: Packet) -> bytes:
    """One packet as a media frame (the same bytes go to every worker)."""
    data = bytes(packet)
    layer = temporal_layer(packet)
    flags = (KEYFRAME if packet.is_keyframe else 0) | (LAYERED if layer is not None else 0)
    base = packet.time_base or Fraction(1, 90000)
    return (
        _FRAME.pack(
            _FRAME.size - 4 + len(data),
            index,
            flags,
            layer or 0,
            packet.pts or 0,
            base.numerator,
            base.denominator,
        )
        + data
    )


KEYFRAME_REQUEST = struct.Struct("!H")  # worker -> service on the media socket: a bus index


def gap_frame() -> bytes:
    """Tells a worker that packets were dropped on the way (it resyncs at keyframes)."""
    return _FRAME.pack(_FRAME.size - 4, 0xFFFF, GAP, 0, 0, 1, 1)


class FrameReader:
    """Splits the media socket's byte stream into (bus index, packet, gap) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, Packet | None]]:
        """Whole frames so far: (bus index, packet), or (-1, None) for a gap."""
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, Packet | None]] = []
        position = 0
        while len(buffer) - position >= FRAME_HEADER:
            length, index, flags, layer, pts, num, den = _FRAME.unpack_from(buffer, position)
            end = position + 4 + length
            if len(buffer) < end:
                break
            if flags & GAP:
                frames.append((-1, None))
            else:
                packet = av.Packet(bytes(buffer[position + FRAME_HEADER : end]))
                packet.pts = pts
                packet.time_base = Fraction(num, den)
                packet.is_keyframe = bool(flags & KEYFRAME)
                if flags & LAYERED:
                    set_temporal_layer(packet, layer)
                frames.append((index, packet))
            position = end
        del buffer[:position]
        return frames


Reply = TypeVar("Reply")


class Pending(Generic[Reply]):
    """Requests sent on a control socket and awaiting their reply, matched by `req` (the
    service's links to its viewer workers and to the media process); a reply that has
    not come after `within` seconds is a TimeoutError."""

    def __init__(self, within: float) -> None:
        self.within = within
        self._futures: dict[int, asyncio.Future[Reply]] = {}
        self._last_req = 0

    def next_req(self) -> int:
        self._last_req += 1
        return self._last_req

    async def ask(self, req: int, send: Callable[[], None]) -> Reply:
        """`send()` the request numbered `req`, then its reply (or the error of
        `fail_all` if the link ends meanwhile)."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._futures[req] = future
        try:
            send()
            async with asyncio.timeout(self.within):
                return await future
        finally:
            self._futures.pop(req, None)

    def answer(self, req: int, reply: Reply) -> bool:
        """Hand `reply` to whoever awaits request `req`; False: nobody does."""
        future = self._futures.pop(req, None)
        if future is None:
            return False
        if not future.done():
            future.set_result(reply)
        return True

    def fail_all(self, error: Exception) -> None:
        """The link ended: every request still awaiting its reply gets `error`."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)
