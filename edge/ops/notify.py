"""systemd's notification protocol (sd_notify), spoken over `$NOTIFY_SOCKET` ourselves:
READY=1 once the service listens, WATCHDOG=1 from the event loop, STATUS= lines for
`systemctl status`, STOPPING=1 when it shuts down. Outside systemd it does nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import faulthandler
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from capture.supervise import cancel_all, supervised
from edge.live.state import room_state
from edge.school.lessons import Lesson

if TYPE_CHECKING:
    from edge.live.service import EdgeService

logger = logging.getLogger(__name__)

STATUS_SECONDS = 5.0  # how often the status text is looked at (sent only when it changed)


def notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    """The datagram socket's address from `NOTIFY_SOCKET` ('@' = abstract namespace)."""
    path = environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if path.startswith("/"):
        return path
    if path:
        logger.warning("NOTIFY_SOCKET=%r: not a socket path; not notifying systemd", path)
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `WATCHDOG_USEC`), or None when systemd
    watches no process or another one (`WATCHDOG_PID`)."""
    watched = environ.get("WATCHDOG_PID", "")
    if watched and watched != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """Tells systemd how the service is. `start()` (once the HTTP server listens) sends
    READY=1 and the first status, then pings the watchdog from the event loop, so that a
    blocked loop misses its pings and systemd restarts the service; `stop()` sends
    STOPPING=1. `status` gives the text for `systemctl status`."""

    def __init__(
        self,
        status: Callable[[], str],
        *,
        environ: Mapping[str, str] | None = None,
        status_seconds: float = STATUS_SECONDS,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.address = notify_address(environ)
        self.watchdog = watchdog_interval(environ) if self.address is not None else None
        self.status = status
        self.status_seconds = status_seconds
        self.sent_status: str | None = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed = False
        self._status_failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines; False if it could not be sent."""
        if self.address is None:
            return False
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)  # never wait on systemd from the event loop
        try:
            self._socket.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a year of the same warning helps nobody
                logger.warning("sd_notify to %r failed: %s", self.address, exc)
            self._failed = True
            return False
        self._failed = False
        return True

    async def start(self) -> None:
        if self.address is None:
            return
        if self.watchdog is not None:
            faulthandler.enable()  # a watchdog kill (SIGABRT) leaves every thread's stack
        status = self._status()
        self.send("READY=1", *([f"STATUS={status}"] if status else []))
        self.sent_status = status
        self._task = supervised("sd-notify", self._run)
        logger.info(
            "systemd notified (watchdog %s)",
            f"every {self.watchdog:.1f} s" if self.watchdog else "off",
        )

    async def stop(self) -> None:
        if self.address is None:
            return
        self.send("STOPPING=1", "STATUS=Stopping")
        if self._task is not None:
            await cancel_all([self._task])
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _status(self) -> str:
        try:
            text = " ".join(self.status().split())  # one line
        except Exception:  # the watchdog goes on whatever the status does
            if not self._status_failed:
                logger.exception("building the systemd status")
            self._status_failed = True
            return self.sent_status or ""
        self._status_failed = False
        return text

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = next_status = loop.time()
        while True:
            now = loop.time()
            if self.watchdog is not None and now >= next_ping:
                self.send("WATCHDOG=1")
                next_ping = now + self.watchdog
            if now >= next_status:
                status = self._status()
                if status != self.sent_status:
                    self.send(f"STATUS={status}")
                    self.sent_status = status
                next_status = now + self.status_seconds
            wake = min(next_status, next_ping) if self.watchdog is not None else next_status
            await asyncio.sleep(max(0.0, wake - loop.time()))


def room_status(outlook: Mapping[str, Lesson | None], now: dt.datetime, zone: dt.tzinfo) -> str:
    """'Live: 6A1 Toán until 08:00', 'Next: 6A1 Văn at 08:05', or 'Idle: ...'."""

    def clock(moment: dt.datetime) -> str:
        local = moment.astimezone(zone)
        day = "" if local.date() == now.astimezone(zone).date() else f"{local:%d/%m} "
        return f"{day}{local:%H:%M}"

    live, upcoming = outlook.get("live"), outlook.get("next")
    coming = (
        f"{upcoming.class_name} {upcoming.subject} at {clock(upcoming.start)}" if upcoming else ""
    )
    if live is not None:
        text = f"Live: {live.class_name} {live.subject}"
        end = live.ends_at or live.end
        if end is None or live.kind == "always":
            return text
        if end > now:
            return f"{text} until {clock(end)}"
        # past its end: the grace minutes, or held until the next one's bell (rollover)
        return f"{text} closing (ended {clock(end)}){f', next {coming}' if coming else ''}"
    return f"Next: {coming}" if coming else "Idle: no lesson to stream"


def status_text(
    rooms: Mapping[str, str], *, viewers: int | None = None, degraded: bool = False
) -> str:
    """The rooms' lines joined ('p101 Live: ...; p102 Next: ...'; one room unnamed),
    then the viewers and a degraded health, for `systemctl status`."""
    parts = (
        list(rooms.values())
        if len(rooms) == 1
        else [f"{name} {text}" for name, text in sorted(rooms.items())]
    )
    text = "; ".join(parts) or "No rooms"
    if viewers is not None:
        text += f" · {viewers} viewer{'' if viewers == 1 else 's'}"
    if degraded:
        text += " · DEGRADED (see /healthz)"
    return text


def service_status(service: EdgeService) -> str:
    """The running service's status text, from its scheduler and health."""
    zone = service.config.zone
    rooms = {}
    for name in service.rooms:
        state = room_state(service, name)
        rooms[name] = room_status({"live": state.lesson, "next": state.next}, state.now, zone)
    health = service.health()
    return status_text(
        rooms, viewers=len(service.sessions.sessions), degraded=health["status"] != "ok"
    )
