"""What the control process and the media process say to each other (`edge.live.mediahost`,
`edge.live.remote`): a small, typed, versioned message set on a control socket, one JSON
object a line. Encoded packets do not pass here: the media process writes them to media
sockets (`webrtc.feed`) handed to it on a socket of their own (`webrtc.handover`).

Control → media: `Hello` (first, once), `Warm`, `Cool`, `Preview`, `Talk`, `EndTalk`,
`BeginTake`, `EndTake`, `Forward`, `Unforward` (each with `req`), `Pause`, `Twins`, `Duck`,
`FailTake`. Media → control: `Ready` (first, once), `Done`, `Picture`, `Answered` and
`Taken` (replies, with the request's `req`), `Opened` (a take opened a file), `Talking` (a
talk session connected or closed), `Status` (every `status_every` seconds: the heartbeat,
with every room's sources and encoders and every take's progress).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from edge.recording.recordings import MediaFile
from edge.recording.take import TakeEnd, TakePlan, TakeProgress

VERSION = 2
MAX_LINE = 8 << 20  # bytes of one message (a preview picture is at most a few hundred KiB)
CONTROL_FEED = -1  # the handover key of the control process's own media socket


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(Message):
    type: Literal["hello"] = "hello"
    version: int = VERSION
    rooms: dict[str, dict[str, Any]]  # room name -> its settings (`RoomSettings`, JSON)
    origin: float  # the buses' time zero (CLOCK_MONOTONIC: one clock for every process)
    order: list[str]  # bus names in wire order: a media frame names its bus by index
    status_every: float = 0.25
    # the peer connections' settings (a talking pupil's microphone), as the service's own
    addresses: list[str] | None = None  # the only addresses of host candidates
    ports: tuple[int, int] | None = None  # first and last UDP port
    public_address: str | None = None


class Warm(Message):
    type: Literal["warm"] = "warm"
    req: int
    room: str


class Cool(Message):
    type: Literal["cool"] = "cool"
    req: int
    room: str


class Preview(Message):
    type: Literal["preview"] = "preview"
    req: int
    room: str
    source: str


class Pause(Message):
    type: Literal["pause"] = "pause"
    room: str
    paused: bool


class Twins(Message):
    type: Literal["twins"] = "twins"
    room: str
    on: bool


class Duck(Message):
    type: Literal["duck"] = "duck"
    room: str
    on: bool  # the ducked microphone for a talking pupil: encode it


class IceServerSpec(Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Talk(Message):
    """A talking pupil's WHIP offer, for the room's speakers; answered with `Answered`."""

    type: Literal["talk"] = "talk"
    req: int
    room: str
    offer: str
    ice_servers: list[IceServerSpec]


class EndTalk(Message):
    type: Literal["end-talk"] = "end-talk"
    req: int
    room: str
    session: str


class BeginTake(Message):
    """Record `room`'s buses as `plan` asks, under the number `take` (a part)."""

    type: Literal["begin-take"] = "begin-take"
    req: int
    room: str
    take: int
    plan: TakePlan


class EndTake(Message):
    type: Literal["end-take"] = "end-take"
    req: int
    take: int


class FailTake(Message):
    """Stop writing take `take` (the disk is nearly full); it is ended later."""

    type: Literal["fail-take"] = "fail-take"
    take: int
    error: str


class RelayStream(Message):
    mid: str
    buses: list[str]  # renditions ("camera/low", …), cheapest first
    payload_type: int


class Forward(Message):
    """Push `room`'s `streams` as RTP to Janus at `host` (`webrtc.relay.RtpForwarder`)."""

    type: Literal["forward"] = "forward"
    req: int
    room: str
    host: str
    streams: list[RelayStream]
    ports: dict[str, list[int]]
    rtcp_ports: dict[str, int]


class Unforward(Message):
    type: Literal["unforward"] = "unforward"
    req: int
    room: str


class Ready(Message):
    type: Literal["ready"] = "ready"
    version: int = VERSION
    pid: int


class Done(Message):
    type: Literal["done"] = "done"
    req: int
    error: str | None = None


class Picture(Message):
    type: Literal["picture"] = "picture"
    req: int
    jpeg: str | None  # base64; None: that source is not capturing


class Answered(Message):
    type: Literal["answered"] = "answered"
    req: int
    session: str | None  # None: refused, as `status`, `title`, `detail` say
    sdp: str | None = None
    status: int = 201
    title: str = ""
    detail: str = ""


class Talking(Message):
    """A talk session connected, or closed (ended, failed, never connected)."""

    type: Literal["talking"] = "talking"
    room: str
    session: str
    state: Literal["connected", "closed"]


class Taken(Message):
    type: Literal["taken"] = "taken"
    req: int
    ended: TakeEnd | None  # None: no such take
    error: str | None = None


class Opened(Message):
    type: Literal["opened"] = "opened"
    take: int
    file: MediaFile


class SourceStatus(Message):
    """One source's pipeline (`capture.SourcePipeline`), as `Room.health` shows it."""

    name: str
    state: str
    error: str | None
    frames: int
    missing: bool  # its slate goes out (or a microphone has failed for a while)
    hangs: int
    last_hang: tuple[float, str] | None  # (CLOCK_MONOTONIC time, what hung)
    abandoned: int  # threads left stuck in a device or encoder call
    failing_since: float | None  # CLOCK_MONOTONIC time


class EncoderStatus(Message):
    name: str  # the rendition, e.g. "camera/high"
    source: str
    frames: int
    encode_seconds: float
    active: bool
    fps: float  # 50 for sound (20 ms frames)
    keyframe_requests: int = 0  # asked of its bus, by viewers wherever they are


class RoomStatus(Message):
    sources: list[SourceStatus] = []
    encoders: list[EncoderStatus] = []
    mic_loud_at: float | None = None  # CLOCK_MONOTONIC time the microphone last heard sound
    speaker_error: str | None = None  # the classroom speakers do not play: why


class Status(Message):
    type: Literal["status"] = "status"
    rooms: dict[str, RoomStatus]
    takes: dict[int, TakeProgress] = {}


ToMedia = Annotated[
    Hello
    | Warm
    | Cool
    | Preview
    | Pause
    | Twins
    | Duck
    | Talk
    | EndTalk
    | BeginTake
    | EndTake
    | FailTake
    | Forward
    | Unforward,
    Field(discriminator="type"),
]
FromMedia = Annotated[
    Ready | Done | Picture | Answered | Taken | Opened | Talking | Status,
    Field(discriminator="type"),
]
# answered by `req`
Request = Warm | Cool | Preview | Talk | EndTalk | BeginTake | EndTake | Forward | Unforward
_to_media: TypeAdapter[ToMedia] = TypeAdapter(ToMedia)
_from_media: TypeAdapter[FromMedia] = TypeAdapter(FromMedia)


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode() + b"\n"


def to_media(line: bytes) -> ToMedia:
    return _to_media.validate_json(line)


def from_media(line: bytes) -> FromMedia:
    return _from_media.validate_json(line)
