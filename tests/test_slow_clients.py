"""Slow clients (a row of the security issue): 300 half-sent requests used to hold 300 file
descriptors for as long as their senders liked. Now a connection whose request headers are
not complete HEADER_SECONDS after it opened is closed, however slowly it trickles; one
address holds at most PER_ADDRESS connections and all together at most half the file
limit, the rest refused at once; a body that trickles in is answered 408 after
BODY_SECONDS; and a pupil is served all along."""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from edge.access.connections import BODY_SECONDS, HEADER_SECONDS, MAX_CONNECTIONS, PER_ADDRESS
from tests.conftest import SMALL_ROOM, Service, run_service, write_site
from tests.test_systemd import UNIT, unit_settings

SLOW = [f"127.0.0.{n}" for n in range(2, 6)]  # 4 addresses × 75: 300 half-sent requests
EACH = 75
GREEDY = "127.0.0.9"  # opens PER_ADDRESS + EXTRA
EXTRA = 40
TRICKLER = "127.0.0.10"  # sends a login body a byte at a time
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: "  # its headers never end
LOGIN_HEADERS = (
    b"POST /login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 1000\r\n\r\npassword="
)
STEP = 0.25  # seconds between rounds of trickling and looking


def open_fds(service: Service) -> int:
    return len(os.listdir(f"/proc/{service.process.pid}/fd"))


def port_of(service: Service) -> int:
    return int(service.base.rsplit(":", 1)[1])


@dataclass
class Client:
    """A raw connection from a chosen loopback address: what the service sent, when its
    first bytes came and when the service ended it (end of file or reset)."""

    sock: socket.socket
    opened: float
    received: bytes = b""
    answered: float | None = None
    closed: float | None = None

    def poll(self) -> None:
        if self.closed is not None:
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self.closed = time.monotonic()
        elif self.answered is None:
            self.answered = time.monotonic()
        self.received += data

    def trickle(self, data: bytes) -> None:
        if self.closed is None:
            with contextlib.suppress(OSError):  # closed by the service: `poll` notes it
                self.sock.send(data)


def connect(address: str, port: int, first: bytes) -> Client:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))
    sock.sendall(first)
    sock.setblocking(False)
    return Client(sock, time.monotonic())


def site(tmp: Path) -> list[str]:
    return ["--config", str(write_site(tmp / "site", {"p101": SMALL_ROOM}))]


def test_half_sent_requests_are_cut_off_while_a_pupil_is_served(tmp_path: Path) -> None:
    with run_service(tmp_path, site(tmp_path)) as service:
        assert httpx.get(f"{service.base}/healthz", timeout=10).status_code == 200
        baseline = open_fds(service)
        started = time.monotonic()
        login = connect(TRICKLER, port_of(service), LOGIN_HEADERS)
        slow = [connect(a, port_of(service), HALF_REQUEST) for a in SLOW for _ in range(EACH)]
        greedy = [connect(GREEDY, port_of(service), HALF_REQUEST) for _ in range(PER_ADDRESS)]
        extra = [connect(GREEDY, port_of(service), HALF_REQUEST) for _ in range(EXTRA)]
        opened = time.monotonic() - started
        held = slow + greedy
        everyone = [login, *held, *extra]
        peak, during, pupil = baseline, baseline, []
        try:
            for _ in range(int((BODY_SECONDS + 8) / STEP)):
                if all(c.closed is not None for c in everyone):
                    break
                for client in everyone:
                    client.poll()
                    client.trickle(b"a")
                peak = max(peak, open_fds(service))
                if time.monotonic() - started < HEADER_SECONDS / 2:
                    during = open_fds(service)  # the refused are gone, the held not yet
                if time.monotonic() - started < HEADER_SECONDS:
                    asked = time.monotonic()
                    answer = httpx.get(f"{service.base}/healthz", timeout=5)
                    pupil.append((answer.status_code, time.monotonic() - asked))
                time.sleep(STEP)
            after = open_fds(service)
        finally:
            for client in everyone:
                client.sock.close()
    lived = sorted(c.closed - c.opened for c in held if c.closed is not None) or [-1.0]
    refused_in = [c.closed - c.opened for c in extra if c.closed is not None]
    answered = login.answered - login.opened if login.answered is not None else -1.0
    print(
        f"opened {len(everyone)} connections in {opened:.2f} s; fds {baseline} before, "
        f"{during} while held ({peak} at most), {after} after; half-sent requests closed after "
        f"{lived[0]:.1f}–{lived[-1]:.1f} s; refused in {max(refused_in, default=-1):.2f} s "
        f"({sum(c.received.startswith(b'HTTP/1.1 503') for c in extra)} saw the 503); "
        f"/healthz {len(pupil)}× in at most {max(t for _, t in pupil):.2f} s; "
        f"slow login body answered after {answered:.1f} s"
    )
    assert all(c.closed is not None for c in held), "half-sent requests still open"
    assert lived[0] > HEADER_SECONDS - 0.5 and lived[-1] < HEADER_SECONDS + 4, lived
    assert len(refused_in) == EXTRA and max(refused_in) < 2, refused_in
    assert all(c.received == b"" or c.received.startswith(b"HTTP/1.1 503") for c in extra)
    assert all(c.received == b"" for c in held)  # closed without an answer
    assert abs(during - (baseline + len(held))) <= 5, (baseline, during)  # the extra not held
    assert after <= baseline + 5, (baseline, after)
    assert {code for code, _ in pupil} == {200} and max(t for _, t in pupil) < 1.0, pupil
    assert login.received.startswith(b"HTTP/1.1 408"), login.received
    assert b"application/problem+json" in login.received
    assert BODY_SECONDS - 0.5 < answered < BODY_SECONDS + 3 and login.closed is not None


def test_connections_stay_below_half_the_file_limit(tmp_path: Path) -> None:
    limit = 300  # the service may hold 150 connections; 200 half-sent requests come
    wrap = ["sh", "-c", f'ulimit -n {limit} && exec "$@"', "sh"]
    with run_service(tmp_path, site(tmp_path), wrap=wrap) as service:
        assert httpx.get(f"{service.base}/healthz", timeout=10).status_code == 200
        baseline = open_fds(service)
        clients = [connect(a, port_of(service), HALF_REQUEST) for a in SLOW for _ in range(50)]
        peak = baseline
        try:
            for _ in range(int(2 / STEP)):
                for client in clients:
                    client.poll()
                peak = max(peak, open_fds(service))
                time.sleep(STEP)
            refused = [c for c in clients if c.closed is not None]
            held = open_fds(service)
        finally:
            for client in clients:
                client.sock.close()
        after = baseline + 1000
        for _ in range(int(3 / STEP)):
            after = open_fds(service)
            if after <= baseline + 2:
                break
            time.sleep(STEP)
        healthy = httpx.get(f"{service.base}/healthz", timeout=10).status_code
    print(
        f"limit {limit}: fds {baseline} before, {held} while held ({peak} at most: "
        f"accepted before refused), {after} after; {len(refused)} of {len(clients)} refused"
    )
    assert len(refused) >= len(clients) - limit // 2, len(refused)
    assert held <= baseline + limit // 2 + 2 and peak < limit, (baseline, held, peak)
    assert after <= baseline + 2 and healthy == 200


def test_the_unit_leaves_room_for_every_connection() -> None:
    """Half the unit's file limit at most for connections; asyncio accepts up to uvicorn's
    backlog at once before the protocol refuses any, and those fit too."""
    files = int(unit_settings(UNIT.read_text())["Service.LimitNOFILE"][0])
    backlog = inspect.signature(uvicorn.Config).parameters["backlog"].default
    assert files // 2 >= MAX_CONNECTIONS and files > MAX_CONNECTIONS + backlog, backlog
