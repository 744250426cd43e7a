"""Site and room settings: TOML files validated by pydantic.

`edge.toml` holds the site; every `rooms/NAME.toml` beside it is one classroom.
Errors read `FILE:LINE: key.path: what is wrong (what is expected)`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
import re
import ssl
import tomllib
import types
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.config.tomlpos import key_lines, line_of
from edge.school.timetable import (
    DEFAULT_EXCLUDED,
    BellSchedule,
    Period,
    SchoolCalendar,
    TimetableError,
    check_overlaps,
    make_period,
    number_by_start,
    read_csv,
    read_ics,
)

DEFAULT_CONFIG = Path("/etc/classroom-edge/edge.toml")
DEMO_DIR = Path(__file__).parent / "demo"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- site


class HttpSettings(Model):
    host: str = Field("0.0.0.0", description="Address the HTTP server binds to")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the HTTP server")
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="Base URL pupils reach the service at (join links use it); "
        "default: http://<this machine's LAN address>:<port>",
    )
    cors_origins: list[str] = Field(
        ["*"], description="Origins allowed to call the WHEP endpoint (a player on the school site)"
    )
    certificate: Path | None = Field(
        None,
        description="TLS certificate chain (PEM, relative to edge.toml): serve https "
        "(browsers let a pupil's microphone work only on a secure page)",
    )
    private_key: Path | None = Field(
        None, description="The certificate's private key (PEM, relative to edge.toml)"
    )
    trusted_proxies: list[str] = Field(
        [],
        max_length=16,
        description="Addresses of reverse proxies (nginx, Caddy) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; e.g. ['127.0.0.1'] when nginx on this machine "
        "terminates https",
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> HttpSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError(
                "certificate and private_key go together (expected both paths, or neither)"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise ValueError(
                    f"not an address: {address!r} (expected an IP address or network)"
                ) from None
        return value


class IceServerSettings(Model):
    urls: list[Annotated[str, Field(pattern=r"^(stun|stuns|turn|turns):\S+$")]] = Field(
        ..., min_length=1, description="STUN/TURN URLs, e.g. stun:stun.school.edu.vn:3478"
    )
    username: str | None = Field(None, description="TURN user name")
    credential: str | None = Field(None, description="TURN password")


TurnUrl = Annotated[str, Field(pattern=r"^turns?:[^\s?]+(\?transport=(udp|tcp))?$")]


class TurnSettings(Model):
    """TURN servers sharing a secret with this service (coturn `use-auth-secret`): each
    page and session gets credentials minted from it, valid `ttl_minutes`."""

    urls: list[TurnUrl] = Field(
        ...,
        min_length=1,
        max_length=8,
        description="TURN URLs, e.g. turn:turn.school.edu.vn:3478?transport=udp, "
        "turn:turn.school.edu.vn:443?transport=tcp, turns:turn.school.edu.vn:443?transport=tcp",
    )
    secret_file: Path = Field(
        ...,
        description="File holding coturn's static-auth-secret (relative to edge.toml), read "
        "at start; never sent to a page",
    )
    ttl_minutes: int = Field(
        720,
        ge=5,
        le=1440,
        description="How long minted credentials stay valid (a page loaded in the morning "
        "still reconnects in the afternoon)",
    )


class LinkSettings(Model):
    valid_days: int = Field(
        300, ge=1, le=800, description="How long join links stay valid (a school year by default)"
    )


class WebRtcSettings(Model):
    ice_servers: list[IceServerSettings] = Field(
        [], description="STUN/TURN servers; empty on a school LAN with no NAT to cross"
    )
    connect_timeout: float = Field(
        30.0,
        ge=5,
        le=300,
        description="Seconds a new viewer may take to connect before it is dropped",
    )
    max_viewers: int = Field(200, ge=1, le=2000, description="Viewer sessions per mini-PC")
    viewer_workers: int | None = Field(
        None,
        ge=0,
        le=16,
        description="Processes that serve the viewers, each on a core of its own; 0: the "
        "service's own process serves them; none: one per core but one (the encoders')",
    )
    media_process: bool = Field(
        True,
        description="Capture, encode and record each room in a process of its own, apart "
        "from the web pages, the database, the timetable and the other rooms (false: in "
        "the service's process)",
    )
    max_per_pupil: int = Field(
        3, ge=1, le=10, description="Sessions one pupil's own link may hold at once (devices)"
    )
    max_per_class_link: int = Field(
        45,
        ge=1,
        le=2000,
        description="Sessions a class link may hold at once (it is shared in the parents' group)",
    )
    max_per_address: int = Field(
        60,
        ge=1,
        le=2000,
        description="Sessions from one client address (families behind one carrier share one)",
    )
    turn: TurnSettings | None = Field(
        None, description="TURN with time-limited credentials from a shared secret ([webrtc.turn])"
    )
    udp_ports: str | None = Field(
        None,
        pattern=r"^\s*\d{4,5}\s*-\s*\d{4,5}\s*$",
        description='UDP ports of the media sockets, e.g. "40000-40199": one port a viewer '
        "(none: any free port)",
    )
    public_address: str | None = Field(
        None,
        description="The school's public IP address forwarding udp_ports to this mini-PC; "
        "offered to viewers beside the LAN address",
    )

    @field_validator("udp_ports")
    @classmethod
    def _port_range(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        first, last = (int(p) for p in value.split("-"))
        if not 1024 <= first <= last <= 65535:
            raise ValueError(
                f"not a port range: {value!r} (expected FIRST-LAST within 1024-65535, "
                "e.g. 40000-40199)"
            )
        viewers = info.data.get("max_viewers")
        if isinstance(viewers, int) and last - first + 1 < viewers:
            raise ValueError(
                f"{last - first + 1} ports are too few for max_viewers = {viewers} "
                f"(expected at least {viewers} ports: each viewer holds one)"
            )
        return f"{first}-{last}"

    @field_validator("public_address")
    @classmethod
    def _public_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"not an IP address: {value!r} (expected e.g. 203.0.113.7 or 2001:db8::7)"
            ) from None
        if "udp_ports" in info.data and info.data["udp_ports"] is None:
            raise ValueError(
                "public_address needs udp_ports (expected the forwarded range, "
                'e.g. udp_ports = "40000-40199")'
            )
        return str(address)


ClockTime = Annotated[
    dt.time | str,
    Field(description="A time of day, 07:00 or TOML's 07:00:00"),
]


def _time_of_day(value: dt.time | str) -> dt.time:
    if isinstance(value, dt.time):
        return value
    match = re.fullmatch(r"\s*(\d{1,2})[:hH](\d{2})?\s*", value)
    if match is None or int(match.group(1)) > 23 or int(match.group(2) or 0) > 59:
        raise ValueError(f"not a time of day: {value!r} (expected HH:MM, e.g. 07:00)")
    return dt.time(int(match.group(1)), int(match.group(2) or 0))


class BellSettings(Model):
    period_minutes: int = Field(45, ge=10, le=120, description="Length of one period (tiết)")
    morning: list[ClockTime] = Field(
        ["07:00", "07:50", "08:45", "09:40", "10:30"],
        max_length=8,
        description="Bell time of each morning period, tiết 1 first",
    )
    afternoon: list[ClockTime] = Field(
        ["13:30", "14:20", "15:15", "16:05"],
        max_length=8,
        description="Bell time of each afternoon period, tiết 1 first",
    )

    @field_validator("morning", "afternoon")
    @classmethod
    def _ascending(cls, values: list[dt.time | str]) -> list[dt.time | str]:
        times = [_time_of_day(v) for v in values]
        if times != sorted(set(times)):
            raise ValueError('bell times must rise (expected e.g. ["07:00", "07:50"])')
        return times  # type: ignore[return-value]

    def schedule(self) -> BellSchedule:
        return BellSchedule(
            morning=tuple(_time_of_day(t) for t in self.morning),
            afternoon=tuple(_time_of_day(t) for t in self.afternoon),
            period_minutes=self.period_minutes,
        )


DateSpan = Annotated[
    dt.date | str,
    Field(description='A date (2026-11-20) or an inclusive range "2027-02-14..2027-02-22"'),
]


def _date_span(value: dt.date | str) -> tuple[dt.date, dt.date]:
    if isinstance(value, dt.date):
        return value, value
    first, dots, last = value.partition("..")
    try:
        start = dt.date.fromisoformat(first.strip())
        end = dt.date.fromisoformat(last.strip()) if dots else start
    except ValueError:
        raise ValueError(
            f'not a date or range: {value!r} (expected 2026-11-20 or "2027-02-14..2027-02-22")'
        ) from None
    if end < start:
        raise ValueError(f"range ends before it starts: {value!r} (expected FIRST..LAST)")
    return start, end


class TermSettings(Model):
    name: str = Field("", max_length=64, description="e.g. Học kỳ I")
    start: dt.date = Field(..., description="First school day of the term")
    end: dt.date = Field(..., description="Last school day of the term")

    @model_validator(mode="after")
    def _ordered(self) -> TermSettings:
        if self.end < self.start:
            raise ValueError(f"term {self.name or self.start} ends before it starts")
        return self


class CalendarSettings(Model):
    terms: list[TermSettings] = Field(
        [], description="School terms; outside them no lesson streams (none: always in term)"
    )
    holidays: list[DateSpan] = Field([], description="Days off: dates or FIRST..LAST ranges")

    @field_validator("holidays")
    @classmethod
    def _spans(cls, values: list[dt.date | str]) -> list[dt.date | str]:
        for value in values:
            _date_span(value)
        return values

    def calendar(self) -> SchoolCalendar:
        return SchoolCalendar(
            terms=tuple((t.start, t.end) for t in self.terms),
            holidays=tuple(_date_span(h) for h in self.holidays),
        )


class ScheduleSettings(Model):
    lead_minutes: float = Field(
        2, ge=0, le=30, description="Minutes before the bell to open devices and start encoders"
    )
    grace_minutes: float = Field(
        2, ge=0, le=30, description="Minutes a lesson stays live after its end"
    )
    rollover_minutes: float = Field(
        10,
        ge=0,
        le=60,
        description="A break this short between two lessons keeps viewers connected across it",
    )
    always_live_lesson_minutes: int = Field(
        60,
        ge=5,
        le=1440,
        description="An always-live room's stream is recorded as lessons this long, back to "
        "back (each then archived on its own)",
    )
    max_period_minutes: int = Field(
        45, ge=10, le=240, description="A timetable period longer than this is an error"
    )
    excluded_subjects: list[str] = Field(
        list(DEFAULT_EXCLUDED),
        description="Subjects never streamed (matched without case or diacritics); PE by default",
    )


class RecordingSettings(Model):
    enabled: bool = Field(True, description="Record every lesson (rooms may opt out: record)")
    retention_days: float = Field(
        30, ge=0, le=3650, description="Days local copies are kept after they are archived"
    )
    min_free_mb: int = Field(
        2048,
        ge=0,
        le=10_000_000,
        description="Below this much free disk, archived lessons are deleted, oldest first",
    )
    stop_below_mb: int = Field(
        500,
        ge=0,
        le=1_000_000,
        description="Below this much free disk recording pauses (streaming goes on), so the "
        "disk never fills up",
    )
    compose: bool = Field(
        True, description="Make lesson.mp4 (board large, camera inset) after each lesson"
    )
    compose_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="CPU niceness of the composing; 19 also puts it in the idle scheduling"
        " class (the CPU only when nothing else wants it)",
    )


TIME_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class LibrarySettings(Model):
    kind: Literal["directory", "rclone"] = Field(
        "directory", description="directory: a local or mounted NAS/SMB path; rclone: a remote"
    )
    path: Path | None = Field(
        None,
        description="Directory target: the library's root (relative: to the data dir); "
        "none: lessons stay in the recordings folder",
    )
    remote: str | None = Field(
        None,
        pattern=r"^[\w.-]+:\S*$",
        description="rclone target: REMOTE:PATH as named in the rclone config",
    )
    rclone_config: Path | None = Field(
        None, description="rclone.conf to use (default: rclone's own lookup)"
    )
    rclone_binary: str = Field("rclone", min_length=1, description="The rclone command")
    rate_limit_kbps: int = Field(
        0, ge=0, le=10_000_000, description="Upload cap, kb/s (0: none); keeps the uplink free"
    )
    window: str | None = Field(
        None, description='Upload only in this daily window, e.g. "17:00-06:30" (none: any time)'
    )
    pause_while_live: bool = Field(
        True, description="Hold uploads while a lesson is live in any room of this mini-PC"
    )
    retry_base_seconds: float = Field(
        30, ge=0.1, le=3600, description="First wait after a failed upload; doubles each time"
    )
    retry_max_seconds: float = Field(
        3600, ge=1, le=86400, description="Longest wait between upload attempts"
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = TIME_WINDOW.match(value)
        if found is None or int(found.group(1)) > 23 or int(found.group(3)) > 23:
            raise ValueError(f'not a time window: {value!r} (expected e.g. "17:00-06:30")')
        if int(found.group(2)) > 59 or int(found.group(4)) > 59:
            raise ValueError(f'not a time window: {value!r} (expected e.g. "17:00-06:30")')
        return value

    @model_validator(mode="after")
    def _target(self) -> LibrarySettings:
        if self.kind == "rclone" and self.remote is None:
            raise ValueError('kind = "rclone" needs remote (expected e.g. remote = "nas:hoc-lieu")')
        return self

    def daily_window(self) -> tuple[dt.time, dt.time] | None:
        found = TIME_WINDOW.match(self.window or "")
        if found is None:
            return None
        a, b, c, d = (int(g) for g in found.groups())
        return dt.time(a, b), dt.time(c, d)


class RelaySettings(Model):
    kind: Literal["janus"] = Field(
        description="Relay through a Janus streaming mountpoint per room (the pupils' page "
        "plays from Janus); without [relay] the service serves viewers itself"
    )
    api_url: str = Field(
        ...,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="Janus HTTP API base the service uses, e.g. http://10.77.0.2:8088/janus",
    )
    admin_url: str = Field(
        ...,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="Janus Admin API, e.g. http://10.77.0.2:7088/admin",
    )
    admin_secret_file: Path = Field(
        ..., description="File holding Janus's admin_secret (relative to this file)"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="Janus HTTP API base the pupils' browsers use; default api_url",
    )
    rtp_host: str | None = Field(
        None, min_length=1, description="Where Janus listens for our RTP; default api_url's host"
    )
    port_base: int | None = Field(
        None,
        ge=1024,
        le=65000,
        description="First UDP port of the mountpoints (room N uses base + 10N .. base + 10N + 9: "
        "camera and board three substreams and RTCP each, the microphone, its ducked copy); "
        "default: Janus picks from its rtp_port_range",
    )
    beat_seconds: int = Field(
        30, ge=5, le=300, description="How often a pupil's page says it still watches"
    )


class AttendanceSettings(Model):
    present_share: float = Field(
        0.5, gt=0, le=1, description="Share of the period a pupil must watch to count present"
    )
    late_minutes: float = Field(
        10, ge=0, le=45, description="A first join this many minutes after the bell is late"
    )


ROOM_NAME = r"^[A-Za-z0-9_-]{1,64}$"
HUB_KEY_BYTES = 16  # a room's key file holds at least this many bytes (not counting spaces)


class HubRoomSettings(Model):
    class_name: str = Field(
        ...,
        alias="class",
        pattern=r"^[\w.-]{1,16}$",
        description="The class taught there, e.g. 6A1",
    )
    key_file: Path = Field(
        ...,
        description="The room's key (relative to this file): the same bytes as the room's "
        "[hub] key_file, e.g. made by `head -c 32 /dev/urandom | base64`",
    )


class SchoolHubSettings(Model):
    """[school_hub]: this process is the school hub the rooms report to."""

    rooms: dict[Annotated[str, Field(pattern=ROOM_NAME)], HubRoomSettings] = Field(
        ..., min_length=1, max_length=100, description="[school_hub.rooms.NAME]: each room"
    )
    bell_grace_seconds: int = Field(
        30, ge=0, le=50, description="A room not live this long after its bell is shown red"
    )
    lost_after_seconds: int = Field(
        90, ge=10, le=3600, description="A room silent this long is shown as unreachable"
    )
    max_skew_seconds: int = Field(
        300, ge=10, le=3600, description="A report signed further from the hub's time is refused"
    )


class HubLinkSettings(Model):
    """[hub] of a room file: the school hub this room reports to."""

    url: str = Field(
        ..., pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="The hub's address"
    )
    key_file: Path = Field(
        ..., description="This room's key (relative to the room file); the hub has the same"
    )
    beat_seconds: float = Field(15, ge=1, le=60, description="Seconds between heartbeats")
    retry_base_seconds: float = Field(
        5, ge=0.1, le=600, description="First wait after a failed delivery (doubles each time)"
    )
    retry_max_seconds: float = Field(
        300, ge=1, le=3600, description="Longest wait between two delivery attempts"
    )


class SiteSettings(Model):
    school: str = Field(..., min_length=1, description="School name, shown to pupils")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="IANA time zone of the school")
    data_dir: Path = Field(Path("/var/lib/classroom-edge"), description="Where state lives")
    roster: Path | None = Field(
        None, description="CSV of pupils (Mã định danh, Họ và tên, Lớp), relative to this file"
    )
    http: HttpSettings = Field(default_factory=HttpSettings)  # type: ignore[arg-type]
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)  # type: ignore[arg-type]
    links: LinkSettings = Field(default_factory=LinkSettings)  # type: ignore[arg-type]
    bells: BellSettings = Field(default_factory=BellSettings)  # type: ignore[arg-type]
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)  # type: ignore[arg-type]
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)  # type: ignore[arg-type]
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)  # type: ignore[arg-type]
    library: LibrarySettings = Field(default_factory=LibrarySettings)  # type: ignore[arg-type]
    attendance: AttendanceSettings = Field(default_factory=AttendanceSettings)  # type: ignore[arg-type]
    relay: RelaySettings | None = Field(None, description="[relay]: Janus relay (absent: off)")
    school_hub: SchoolHubSettings | None = Field(
        None, description="[school_hub]: serve /school for the rooms of the school (absent: off)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected e.g. Asia/Ho_Chi_Minh)"
            ) from None
        return value


# ---------------------------------------------------------------- rooms


class VideoRendition(Model):
    name: str = Field("high", pattern=r"^[a-z0-9_-]{1,32}$", description="Rendition name")
    width: int = Field(..., ge=160, le=3840, multiple_of=2, description="Encoded width, px")
    height: int = Field(..., ge=120, le=2160, multiple_of=2, description="Encoded height, px")
    fps: float = Field(..., gt=0, le=60, description="Encoded frames per second")
    bitrate_kbps: int = Field(..., ge=50, le=20000, description="Target bitrate, kb/s")
    keyframe_interval: float = Field(2.0, ge=0.5, le=10, description="Seconds between IDRs at most")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="x264 speed preset: faster uses less CPU, slower looks better"
    )
    stills: bool = Field(
        False,
        description="Every frame a keyframe, `fps` of them a second (board stills for the "
        "worst links)",
    )


USB_IDENTITY = r"^usb:[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:\S+)?$"
STABLE_DEVICE = r"^(/dev/v4l/by-(id|path)/\S+|usb:[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:\S+)?)$"


class TestVideoSource(Model):
    kind: Literal["test"] = Field(description="Synthetic source with a burned-in clock")
    width: int | None = Field(None, ge=160, le=3840, multiple_of=2, description="Picture width")
    height: int | None = Field(None, ge=120, le=2160, multiple_of=2, description="Picture height")
    fps: float | None = Field(None, gt=0, le=60, description="Frames per second")
    ptz: str | None = Field(
        None,
        pattern=USB_IDENTITY,
        description="A USB PTZ head to steer while the picture is synthetic (a drill)",
    )

    @property
    def control(self) -> str | None:
        return self.ptz


class V4L2Source(Model):
    kind: Literal["v4l2"] = Field(description="A UVC camera or HDMI capture card")
    device: str = Field(
        ...,
        pattern=STABLE_DEVICE,
        description="A stable identity, usb:VID:PID[:SERIAL] or a /dev/v4l/by-id (or by-path) "
        "path, as `classroom-edge devices` prints it (never /dev/videoN)",
    )
    input_format: Literal["mjpeg", "yuyv422", "h264"] = Field("mjpeg", description="Device format")
    width: int = Field(1280, ge=160, le=3840, multiple_of=2, description="Capture width")
    height: int = Field(720, ge=120, le=2160, multiple_of=2, description="Capture height")
    fps: float = Field(30, gt=0, le=60, description="Capture frame rate")
    ptz: str | None = Field(
        None,
        pattern=USB_IDENTITY,
        description="The USB camera whose pan/tilt/zoom/focus to drive (UVC), usb:VID:PID"
        "[:SERIAL]; default: `device` when it is a usb: identity",
    )

    @property
    def control(self) -> str | None:
        """The USB identity to send UVC control requests to, if any."""
        return self.ptz or (self.device if self.device.startswith("usb:") else None)


class PresetSettings(Model):
    """A saved camera position: [presets.NAME] (the admin page writes these)."""

    pan: int | None = Field(None, ge=-648000, le=648000, description="Pan, arc seconds")
    tilt: int | None = Field(None, ge=-648000, le=648000, description="Tilt, arc seconds")
    zoom: int | None = Field(None, ge=0, le=65535, description="Zoom (objective focal length)")
    focus: int | None = Field(None, ge=0, le=65535, description="Focus (absolute)")
    auto_focus: bool | None = Field(None, description="Automatic focus on or off")
    label: str = Field("", max_length=32, description="Button text; default from the name")


class ScreenSource(Model):
    kind: Literal["x11grab"] = Field(description="The X11 screen of this mini-PC (smart board)")
    display: str = Field(
        ":0.0", pattern=r"^[\w.-]*:\d+(\.\d+)?(\+\d+,\d+)?$", description="X display"
    )
    fps: float = Field(5, gt=0, le=30, description="Capture frame rate")
    width: int | None = Field(None, ge=160, le=7680, multiple_of=2, description="Grab width")
    height: int | None = Field(None, ge=120, le=4320, multiple_of=2, description="Grab height")


class TestAudioSource(Model):
    kind: Literal["test"] = Field(description="A synthetic tone with beeps")
    volume: float = Field(
        1.0, ge=0, le=1, description="Loudness of the tone; 0 is a silent microphone (a drill)"
    )


class AlsaSource(Model):
    kind: Literal["alsa"] = Field(description="An ALSA capture device")
    device: str = Field(
        "default", min_length=1, description="ALSA name, e.g. plughw:CARD=USB,DEV=0"
    )
    channels: int = Field(1, ge=1, le=2, description="Channels captured (mono is sent)")


class SpeakerSettings(Model):
    kind: Literal["alsa"] = Field(description="ALSA playback: the classroom speakers")
    device: str = Field(
        "default", min_length=1, description="ALSA name, e.g. plughw:CARD=PCH,DEV=0"
    )


SOURCE_KINDS = {"test", "v4l2", "x11grab", "alsa"}
UNION_TAGS = SOURCE_KINDS | {"path", "inline"}  # tags pydantic puts into error paths
NOT_A_TIMETABLE = "not_a_timetable"  # the error type of a timetable neither path nor tables
CameraSource = Annotated[TestVideoSource | V4L2Source, Field(discriminator="kind")]
BoardSource = Annotated[TestVideoSource | V4L2Source | ScreenSource, Field(discriminator="kind")]
MicSource = Annotated[TestAudioSource | AlsaSource, Field(discriminator="kind")]


def _camera_renditions() -> list[VideoRendition]:
    return [
        VideoRendition.model_validate(
            {"name": "high", "width": 1280, "height": 720, "fps": 30, "bitrate_kbps": 1200}
        ),
        VideoRendition.model_validate(
            {"name": "low", "width": 640, "height": 360, "fps": 15, "bitrate_kbps": 200}
        ),
    ]


def _board_renditions() -> list[VideoRendition]:
    return [
        VideoRendition.model_validate(
            {"name": "high", "width": 1920, "height": 1080, "fps": 5, "bitrate_kbps": 500}
        ),
        VideoRendition.model_validate(
            {
                "name": "stills",
                "width": 1920,
                "height": 1080,
                "fps": 0.1,
                "bitrate_kbps": 50,
                "stills": True,
            }
        ),
    ]


class AudioSettings(Model):
    bitrate_kbps: int = Field(32, ge=8, le=256, description="Opus bitrate, kb/s")


class InlinePeriod(Model):
    day: int | str = Field(..., description="Thứ: 2..7 or Thứ Hai..Thứ Bảy (Monday..Saturday)")
    session: str | None = Field(None, description="Buổi: sáng | chiều (with `period`)")
    period: int | None = Field(None, ge=1, le=10, description="Tiết within the session")
    start: ClockTime | None = Field(None)
    end: ClockTime | None = Field(None)
    subject: str = Field(..., min_length=1, max_length=64, description="Môn")
    teacher: str = Field("", max_length=64, description="Giáo viên")
    class_name: str | None = Field(
        None, alias="class", description="Lớp; default: the room's class"
    )


class InlineTimetable(Model):
    period: list[InlinePeriod] = Field(
        ..., max_length=80, description="[[timetable.period]] tables, one per weekly period"
    )


def _timetable_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "path"
    return "inline" if isinstance(value, dict | InlineTimetable) else None


class RoomSettings(Model):
    class_name: str = Field(
        ..., alias="class", pattern=r"^[\w.-]{1,16}$", description="The class taught here, e.g. 6A1"
    )
    always_live: bool = Field(
        False,
        description="Stream all the time (a hall, an event); else lessons follow the timetable",
    )
    camera: CameraSource | None = Field(None, description="The room camera ([camera] table)")
    board: BoardSource | None = Field(None, description="The smart board picture ([board] table)")
    mic: MicSource | None = Field(None, description="The classroom microphone ([mic] table)")
    speaker: SpeakerSettings | None = Field(
        None, description="The classroom speakers ([speaker]): a pupil allowed to speak"
    )
    camera_renditions: list[VideoRendition] = Field(
        default_factory=_camera_renditions,
        min_length=1,
        max_length=4,
        description="Encodings of the camera, each encoded once",
    )
    board_renditions: list[VideoRendition] = Field(
        default_factory=_board_renditions,
        min_length=1,
        max_length=4,
        description="Encodings of the board, each encoded once",
    )
    audio: AudioSettings = Field(default_factory=AudioSettings)  # type: ignore[arg-type]
    timetable: (
        Annotated[
            Annotated[str, Tag("path")] | Annotated[InlineTimetable, Tag("inline")],
            Discriminator(
                _timetable_kind,
                custom_error_type=NOT_A_TIMETABLE,
                custom_error_message="a .csv or .ics path, or [[timetable.period]] tables",
            ),
        ]
        | None
    ) = Field(
        None,
        description="A .csv or .ics file (relative to the room file), or inline "
        "[[timetable.period]] tables",
    )
    excluded_subjects: list[str] | None = Field(
        None, description="Subjects never streamed here; default: the site's [schedule] list"
    )
    record: bool = Field(True, description="Record this room's lessons (with [recordings])")
    presets: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,24}$")], PresetSettings] = Field(
        default_factory=dict,
        max_length=12,
        description="Camera positions by name ([presets.board], [presets.teacher], "
        "[presets.class]), saved from the admin page",
    )
    start_preset: str | None = Field(
        None, description="The preset the camera goes to when a lesson's devices open"
    )
    hub: HubLinkSettings | None = Field(
        None, description="[hub]: the school hub this room reports to (absent: none)"
    )

    @field_validator("start_preset")
    @classmethod
    def _known_preset(cls, value: str | None, info: ValidationInfo) -> str | None:
        presets = info.data.get("presets")
        if value is not None and presets is not None and value not in presets:
            known = ", ".join(presets) or "none saved yet"
            raise ValueError(f"no preset {value!r} (expected one of: {known})")
        return value

    @field_validator("timetable")
    @classmethod
    def _timetable_file(cls, value: str | InlineTimetable | None) -> str | InlineTimetable | None:
        if isinstance(value, str) and not value.lower().endswith((".csv", ".ics")):
            raise ValueError(f"not a timetable file: {value!r} (expected a .csv or .ics path)")
        return value

    @model_validator(mode="after")
    def _verify_sources(self) -> RoomSettings:
        if self.camera is None and self.board is None and self.mic is None:
            raise ValueError("a room needs at least one of [camera], [board], [mic]")
        for field_name in ("camera_renditions", "board_renditions"):
            names = [r.name for r in getattr(self, field_name)]
            if len(names) != len(set(names)):
                raise ValueError(f"{field_name}: rendition names must be unique, got {names}")
        return self


# ---------------------------------------------------------------- loading


@dataclass
class Config:
    """A validated site with its rooms; `path` is None for the embedded demo."""

    site: SiteSettings
    rooms: dict[str, RoomSettings]
    path: Path | None
    demo: bool = False
    roster_path: Path | None = None
    room_files: dict[str, Path] = field(default_factory=dict)
    timetables: dict[str, list[Period]] = field(default_factory=dict)  # each room's class only

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.site.timezone)

    def excluded_subjects(self, room: str) -> list[str]:
        own = self.rooms[room].excluded_subjects
        return own if own is not None else self.site.schedule.excluded_subjects


class ConfigError(Exception):
    """Invalid configuration; `problems` are ready-to-print lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_TABLE_TYPES = {"model_type", "model_attributes_type", "dict_type"}


def _choices(values: Sequence[object]) -> str:
    return "one of: " + ", ".join(str(value) for value in values)


def _expected(error: dict[str, Any], path: Sequence[str | int]) -> tuple[str, str]:
    """(problem, expected) in words a person wrote, for one pydantic error at `path`."""
    message = str(error["msg"])
    kind = error["type"]
    got = f"got {error.get('input')!r}"
    if kind == "missing":
        return "missing", "a value"
    if kind == "extra_forbidden":
        return "unknown key", "a key documented in config/edge.toml and config/rooms/example.toml"
    if kind == "literal_error":
        choices = _choices(_QUOTED.findall(str(error.get("ctx", {}).get("expected", ""))))
        if path and path[-1] == "kind":
            return f"unknown kind {error.get('input')!r}", choices
        return got, choices
    if kind in _TABLE_TYPES:
        if path and all(isinstance(part, str) for part in path):
            return got, f"a [{'.'.join(str(part) for part in path)}] table"
        return got, "a table"
    if kind == NOT_A_TIMETABLE:
        return got, message
    if message.startswith("Input should be "):
        return got, message.removeprefix("Input should be ")
    if message.startswith("String should match pattern"):
        return got, message.removeprefix("String should ").replace("match pattern", "text matching")
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        if message.endswith(")") and " (expected " in message:
            problem, _, expected = message[:-1].partition(" (expected ")
            return problem, expected
        return message, "see the commented example in config/"
    return message, "see the commented example in config/"


def _union_tag(
    model: type[BaseModel], error: dict[str, Any], loc: list[str | int]
) -> tuple[list[str | int], str, str]:
    """A tagged union's tag (`kind`) that is missing or unknown: its path, problem and
    the tags the union takes."""
    key = str(error.get("ctx", {}).get("discriminator", "kind")).strip("'")
    choices = _choices(union_tags(model, tuple(error["loc"]), key))
    value = error.get("input")
    if error["type"] == "union_tag_not_found" or not isinstance(value, dict) or key not in value:
        return [*loc, key], "missing", choices
    return [*loc, key], f"unknown {key} {value[key]!r}", choices


def _members(annotation: Any) -> list[Any]:
    """The types an annotation admits: Annotated, unions and Optional unwrapped."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _annotations_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[Any]:
    """The types a value at `loc` may have, `loc` a raw pydantic error path (tags included)."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for candidate in (m for c in current for m in _members(c)):
            if isinstance(part, int) and get_origin(candidate) is list:
                following += get_args(candidate)[:1]
            elif isinstance(part, str) and get_origin(candidate) is dict:
                following += get_args(candidate)[1:]
            elif isinstance(candidate, type) and issubclass(candidate, BaseModel):
                fields = _keys(candidate)
                if isinstance(part, str) and part in fields:
                    following.append(fields[part])
                elif isinstance(part, str) and part in UNION_TAGS:
                    kind = candidate.model_fields.get("kind")
                    if kind is None or part in get_args(kind.annotation):
                        following.append(candidate)
        current = following
    return current


def known_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys valid in the table at `loc`, a raw pydantic error path (tags included)."""
    current = _annotations_at(model, loc)
    found = [k for c in current for m in _members(c) if _is_model(m) for k in _keys(m)]
    return list(dict.fromkeys(found))


def union_tags(model: type[BaseModel], loc: tuple[str | int, ...], key: str = "kind") -> list[str]:
    """The values of `key` that tell the members of the tagged union at `loc` apart."""
    tags = [
        tag
        for annotation in _annotations_at(model, loc)
        for member in _members(annotation)
        if _is_model(member) and key in member.model_fields
        for tag in get_args(member.model_fields[key].annotation)
    ]
    return list(dict.fromkeys(str(tag) for tag in tags))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _did_you_mean(model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, str] | None:
    key = loc[-1]
    known = known_keys(model, loc[:-1])
    if not isinstance(key, str) or not known:
        return None
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
    return hint, _choices(known)


def _problems(file: Path, text: str, error: ValidationError, model: type[BaseModel]) -> list[str]:
    lines = key_lines(text)
    problems: list[tuple[int, str]] = []
    for item in error.errors():
        # pydantic puts the tag of a discriminated union (`kind`) into the path: drop it
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p in UNION_TAGS)]
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc, problem, expected = _union_tag(model, dict(item), loc)
        else:
            problem, expected = _expected(dict(item), loc)
        if item["type"] == "missing" and loc[-1:] == ["kind"]:
            tags = union_tags(model, tuple(item["loc"][:-1]))
            expected = _choices(tags) if tags else expected
        if item["type"] == "extra_forbidden":
            problem, expected = _did_you_mean(model, tuple(item["loc"])) or (problem, expected)
        dotted = ".".join(str(p) for p in loc) or "(file)"
        line = line_of(lines, loc)
        problems.append((line, f"{file}:{line}: {dotted}: {problem} (expected {expected})"))
    return [text for _, text in sorted(problems, key=lambda p: p[0])]


def _read_toml(file: Path, drafts: Mapping[Path, str] | None = None) -> tuple[str, dict[str, Any]]:
    try:
        text = drafts[file] if drafts and file in drafts else file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{file}:1: (file): cannot read: {exc.strerror} (expected a readable file)"]
        ) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's message ends "(at line N, column M)"; lineno came in 3.14
        match = re.search(r"^(.*?)(?: \(at line (\d+), column \d+\))?$", str(exc))
        problem, line = (match.group(1), match.group(2) or "1") if match else (str(exc), "1")
        raise ConfigError([f"{file}:{line}: (toml): {problem} (expected valid TOML)"]) from None
    except RecursionError:
        raise ConfigError(
            [f"{file}:1: (toml): nested too deeply (expected a room or site file)"]
        ) from None


def load(
    path: Path | None = None,
    *,
    demo: bool = False,
    data_dir: Path | None = None,
    drafts: Mapping[Path, str] | None = None,
) -> Config:
    """Load `path` (default /etc/classroom-edge/edge.toml, else the embedded demo).

    `drafts` are texts to check in place of files (an edit not yet saved)."""
    if demo or (path is None and not DEFAULT_CONFIG.exists()):
        config = _load(DEMO_DIR / "edge.toml", demo=True, drafts=drafts)
        config.site = config.site.model_copy(update={"data_dir": data_dir or demo_data_dir()})
        return config
    config = _load(path or DEFAULT_CONFIG, demo=False, drafts=drafts)
    if data_dir is not None:
        config.site = config.site.model_copy(update={"data_dir": data_dir})
    return config


def demo_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "classroom-edge" / "demo"


def _load(file: Path, *, demo: bool, drafts: Mapping[Path, str] | None = None) -> Config:
    problems: list[str] = []
    text, data = _read_toml(file, drafts)
    site: SiteSettings | None = None
    try:
        site = SiteSettings.model_validate(data)
    except ValidationError as exc:
        problems += _problems(file, text, exc, SiteSettings)
    rooms: dict[str, RoomSettings] = {}
    room_files: dict[str, Path] = {}
    room_texts: dict[str, str] = {}
    room_dir = file.parent / "rooms"
    for room_file in sorted(room_dir.glob("*.toml")) if room_dir.is_dir() else []:
        name = room_file.stem
        if not name.replace("-", "").replace("_", "").isalnum():
            problems.append(
                f"{room_file}:1: (file): room name {name!r} is not usable in a URL "
                "(expected letters, digits, - and _)"
            )
            continue
        try:
            room_text, room_data = _read_toml(room_file, drafts)
            rooms[name] = RoomSettings.model_validate(room_data)
            room_files[name] = room_file
            room_texts[name] = room_text
        except ConfigError as exc:
            problems += exc.problems
        except ValidationError as exc:
            problems += _problems(room_file, room_text, exc, RoomSettings)
    if not rooms and not problems and (site is None or site.school_hub is None):
        problems.append(f"{file}:1: (file): no room files in {room_dir} (expected rooms/NAME.toml)")
    if site is not None and site.http.certificate is not None:
        site, tls_problems = _with_tls_files(site, file, text)
        problems += tls_problems
    if site is not None and site.webrtc.turn is not None:
        site, turn_problems = _with_turn_secret(site, file, text)
        problems += turn_problems
    roster_path = None
    if site is not None and site.roster is not None:
        roster_path = site.roster if site.roster.is_absolute() else file.parent / site.roster
        if not roster_path.is_file():
            lines = key_lines(text)
            problems.append(
                f"{file}:{line_of(lines, ('roster',))}: roster: no such file "
                f"{roster_path} (expected a CSV of pupils)"
            )
    if roster_path is not None and roster_path.is_file() and rooms:
        problems += _roster_problems(roster_path, {room.class_name for room in rooms.values()})
    if site is not None and site.school_hub is not None:
        site, hub_problems = _with_hub_keys(site, file, text)
        problems += hub_problems
    for name, room in list(rooms.items()):
        if room.hub is not None:
            fixed, key_problems = _with_link_key(room, room_files[name], room_texts[name])
            rooms[name] = fixed
            problems += key_problems
    timetables: dict[str, list[Period]] = {}
    for name, room in rooms.items():
        if site is None:
            break
        try:
            timetables[name] = _room_timetable(room, room_files[name], room_texts[name], site)
        except ConfigError as exc:
            problems += exc.problems
    if problems or site is None:
        raise ConfigError(problems)
    return Config(
        site=site,
        rooms=rooms,
        path=None if demo else file,
        demo=demo,
        roster_path=roster_path,
        room_files=room_files,
        timetables=timetables,
    )


def _roster_problems(path: Path, classes: set[str]) -> list[str]:
    """What `run` would refuse in the roster CSV it fills an empty data dir from."""
    from edge.school.roster import RosterError, read_roster

    try:
        read_roster(path, classes)
    except RosterError as exc:
        return exc.problems
    return []


def _with_tls_files(site: SiteSettings, file: Path, text: str) -> tuple[SiteSettings, list[str]]:
    """The site with its certificate and key paths made absolute, or why they are unusable."""
    http = site.http
    assert http.certificate is not None and http.private_key is not None
    cert, key = (
        p if p.is_absolute() else file.parent / p for p in (http.certificate, http.private_key)
    )
    lines = key_lines(text)
    where = f"{file}:{line_of(lines, ('http', 'certificate'))}: http.certificate"
    for path, key_name in ((cert, "certificate"), (key, "private_key")):
        if not path.is_file():
            line = line_of(lines, ("http", key_name))
            return site, [
                f"{file}:{line}: http.{key_name}: no such file {path} (expected a PEM file)"
            ]
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return site, [
            f"{where}: cannot use {cert} with {key}: {reason} "
            "(expected a PEM certificate chain and its unencrypted private key)"
        ]
    fixed = http.model_copy(update={"certificate": cert, "private_key": key})
    return site.model_copy(update={"http": fixed}), []


def _key_problem(path: Path) -> str | None:
    """Why `path` cannot be a room's key, or None."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        return f"{problem} {path}"
    if len(key) < HUB_KEY_BYTES:
        return f"{path} holds {len(key)} bytes"
    return None


KEY_EXPECTED = f"a file of at least {HUB_KEY_BYTES} random bytes, e.g. base64 of 32"


def _with_hub_keys(site: SiteSettings, file: Path, text: str) -> tuple[SiteSettings, list[str]]:
    """[school_hub] with each room's key file made absolute, or why one is unusable (a
    missing file, too short, or the same key as another room's: it could sign its rows)."""
    hub = site.school_hub
    assert hub is not None
    lines = key_lines(text)
    problems: list[str] = []
    rooms: dict[str, HubRoomSettings] = {}
    owners: dict[bytes, str] = {}
    for name, room in hub.rooms.items():
        path = room.key_file if room.key_file.is_absolute() else file.parent / room.key_file
        where = f"{file}:{line_of(lines, ('school_hub', 'rooms', name, 'key_file'))}: "
        where += f"school_hub.rooms.{name}.key_file"
        wrong = _key_problem(path)
        if wrong is not None:
            problems.append(f"{where}: room {name}: {wrong} (expected {KEY_EXPECTED})")
            continue
        key = path.read_bytes().strip()
        if key in owners:
            problems.append(
                f"{where}: room {name}: the same key as room {owners[key]} "
                "(expected a key of its own: a room must not sign another room's rows)"
            )
        owners.setdefault(key, name)
        rooms[name] = room.model_copy(update={"key_file": path})
    fixed = hub.model_copy(update={"rooms": rooms})
    return site.model_copy(update={"school_hub": fixed}), problems


def _with_link_key(room: RoomSettings, file: Path, text: str) -> tuple[RoomSettings, list[str]]:
    """The room with its [hub] key file made absolute, or why it is unusable."""
    link = room.hub
    assert link is not None
    path = link.key_file if link.key_file.is_absolute() else file.parent / link.key_file
    wrong = _key_problem(path)
    if wrong is not None:
        line = line_of(key_lines(text), ("hub", "key_file"))
        return room, [f"{file}:{line}: hub.key_file: {wrong} (expected {KEY_EXPECTED})"]
    return room.model_copy(update={"hub": link.model_copy(update={"key_file": path})}), []


def _with_turn_secret(site: SiteSettings, file: Path, text: str) -> tuple[SiteSettings, list[str]]:
    """The site with [webrtc.turn]'s secret file made absolute, or why it is unusable."""
    turn = site.webrtc.turn
    assert turn is not None
    path = turn.secret_file if turn.secret_file.is_absolute() else file.parent / turn.secret_file
    where = f"{file}:{line_of(key_lines(text), ('webrtc', 'turn', 'secret_file'))}"
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        return site, [
            f"{where}: webrtc.turn.secret_file: {problem} {path} "
            "(expected a file holding coturn's static-auth-secret)"
        ]
    if not secret:
        return site, [
            f"{where}: webrtc.turn.secret_file: {path} is empty "
            "(expected coturn's static-auth-secret)"
        ]
    fixed = turn.model_copy(update={"secret_file": path})
    webrtc = site.webrtc.model_copy(update={"turn": fixed})
    return site.model_copy(update={"webrtc": webrtc}), []


def _room_timetable(
    room: RoomSettings, room_file: Path, room_text: str, site: SiteSettings
) -> list[Period]:
    """The periods of the room's class from its timetable (a file or inline tables)."""
    if room.timetable is None:
        return []
    bells = site.bells.schedule()
    longest = site.schedule.max_period_minutes
    lines = key_lines(room_text)
    where = f"{room_file}:{line_of(lines, ('timetable',))}: timetable"
    if isinstance(room.timetable, str):
        path = Path(room.timetable)
        path = Path(os.path.normpath(room_file.parent / path))  # absolute stays absolute
        if not path.is_file():
            raise ConfigError([f"{where}: no such file {path} (expected a .csv or .ics file)"])
        try:
            if path.suffix.lower() == ".csv":
                periods = read_csv(path, bells=bells, max_minutes=longest)
            else:
                periods = read_ics(
                    path,
                    timezone=zoneinfo.ZoneInfo(site.timezone),
                    bells=bells,
                    max_minutes=longest,
                    class_name=room.class_name,
                )
        except TimetableError as exc:
            raise ConfigError(exc.problems) from None
        source = str(path)
    else:
        periods, problems = [], []
        keys: dict[str, str] = {}  # "FILE:LINE" of a period -> its key path
        for index, entry in enumerate(room.timetable.period):
            line = line_of(lines, ("timetable", "period", index))
            keys[f"{room_file}:{line}"] = f"timetable.period.{index}"
            try:
                periods.append(
                    make_period(
                        weekday=entry.day,
                        class_name=entry.class_name or room.class_name,
                        subject=entry.subject,
                        teacher=entry.teacher,
                        source=f"{room_file}:{line}",
                        bells=bells,
                        max_minutes=longest,
                        session=entry.session,
                        number=entry.period,
                        start=entry.start,
                        end=entry.end,
                    )
                )
            except ValueError as exc:
                problems.append(f"{room_file}:{line}: timetable.period.{index}: {exc}")
        periods = number_by_start(periods)
        for overlap in check_overlaps(periods):
            where, _, rest = overlap.partition(": ")
            problems.append(f"{where}: {keys.get(where, 'timetable')}: {rest}")
        if problems:
            raise ConfigError(problems)
        source = "the inline timetable"
    own = [p for p in periods if p.class_name == room.class_name]
    if not own and not room.always_live:
        raise ConfigError(
            [
                f"{where}: no periods of class {room.class_name} in {source} "
                f"(expected rows with Lớp = {room.class_name})"
            ]
        )
    return own
