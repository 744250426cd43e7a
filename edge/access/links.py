"""Join links of a room: one for the class, one per pupil of the class."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import ifaddr

from edge.access.tokens import Grant, TokenSigner, load_or_create_secret
from edge.config.settings import Config
from edge.school.roster import Pupil, RosterStore, read_roster


@dataclass(frozen=True)
class Link:
    kind: str
    room: str
    class_name: str
    student_id: str | None
    name: str | None
    url: str
    whep: str
    token: str

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        return {
            "kind": data["kind"],
            "room": data["room"],
            "class": data["class_name"],
            **{k: data[k] for k in ("student_id", "name", "url", "whep", "token")},
        }


def secret_path(config: Config) -> Path:
    return config.site.data_dir / "secret"


def staff_key(config: Config) -> str:
    """The key staff send (`Authorization: Bearer KEY`) to control lessons from afar;
    made on first use, readable only by whoever can read the data dir."""
    return load_or_create_secret(config.site.data_dir / "staff-key").hex()


def signer_for(config: Config) -> TokenSigner:
    return TokenSigner(load_or_create_secret(secret_path(config)))


def lan_address() -> str:
    """The first non-loopback IPv4 address of this machine, for links pupils can open."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                return ip.ip
    return "127.0.0.1"


def public_url(config: Config, host: str | None = None, port: int | None = None) -> str:
    if config.site.http.public_url:
        return config.site.http.public_url.rstrip("/")
    host = host or config.site.http.host
    if host in ("0.0.0.0", "::", ""):
        host = lan_address()
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.site.http.certificate is not None else "http"
    return f"{scheme}://{host}:{port or config.site.http.port}"


def open_roster(config: Config) -> RosterStore:
    """The roster in the data dir; an empty one is first filled from the config's
    `roster` CSV (the demo's pupils, or a school's first list)."""
    store = RosterStore(config.site.data_dir / "lessons.db")
    if store.is_empty() and config.roster_path is not None:
        classes = {room.class_name for room in config.rooms.values()}
        store.import_pupils(read_roster(config.roster_path, classes), dt.datetime.now(dt.UTC))
    return store


def room_links(
    config: Config,
    signer: TokenSigner,
    roster: RosterStore,
    room: str,
    base_url: str,
    now: float | None = None,
) -> list[Link]:
    """The class link, then one link per pupil of the room's class (class-list order)."""
    settings = config.rooms[room]
    expires = int((time.time() if now is None else now) + config.site.links.valid_days * 86400)
    whep = f"{base_url}/whep/{room}"
    class_name = settings.class_name

    def link(pupil: Pupil | None) -> Link:
        generation = pupil.generation if pupil else roster.class_generation(class_name)
        grant = Grant(room, class_name, pupil.id if pupil else None, expires, generation)
        token = signer.issue(grant)
        return Link(
            "student" if pupil else "class",
            room,
            class_name,
            pupil.id if pupil else None,
            pupil.name if pupil else None,
            f"{base_url}/join/{token}",
            whep,
            token,
        )

    return [link(None)] + [link(p) for p in roster.pupils(class_name)]
