"""Network namespaces of the test's own, joined by veth pairs.

Chromium offers no loopback ICE candidate, so a browser test puts the service and the
browser on two hosts of their own: `ip netns` + a veth pair, addresses in a /24 that
exists only inside these namespaces.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str
    device: str

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]


@contextlib.contextmanager
def two_hosts(tag: str | None = None) -> Iterator[tuple[Host, Host]]:
    """(server, client) in two new namespaces; removed on exit."""
    tag = tag or f"{os.getpid() % 10000}"
    subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    server = Host(f"ce-srv-{tag}", f"{subnet}.1", f"ces{tag}")
    client = Host(f"ce-cli-{tag}", f"{subnet}.2", f"cec{tag}")
    try:
        for host in (server, client):
            ip("netns", "add", host.namespace)
            ip("-n", host.namespace, "link", "set", "lo", "up")
        ip("link", "add", server.device, "netns", server.namespace, "type", "veth", "peer",
           "name", client.device, "netns", client.namespace)  # fmt: skip
        for host in (server, client):
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.device)
            ip("-n", host.namespace, "link", "set", host.device, "up")
        yield server, client
    finally:
        for host in (server, client):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "delete", host.namespace)


def available() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        with two_hosts("probe"):
            return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


@dataclass(frozen=True)
class Link:
    """One spoke of a star: the server's end (address, device) and the client host."""

    server_address: str
    server_device: str
    client: Host


@contextlib.contextmanager
def star(clients: int, tag: str | None = None) -> Iterator[tuple[str, list[Link]]]:
    """(server namespace, links): a server joined to `clients` hosts, each by a veth
    pair of its own (its own /24), so one client's link can be shaped alone."""
    tag = tag or f"{os.getpid() % 10000}"
    server = f"ce-hub-{tag}"
    base = 100 + os.getpid() % 50
    links = [
        Link(
            f"10.{base}.{i}.1",
            f"ceh{tag}x{i}",
            Host(f"ce-spoke-{tag}-{i}", f"10.{base}.{i}.2", f"cep{tag}x{i}"),
        )
        for i in range(clients)
    ]
    namespaces = [server, *(link.client.namespace for link in links)]
    try:
        for namespace in namespaces:
            ip("netns", "add", namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
        for link in links:
            client = link.client
            ip("link", "add", link.server_device, "netns", server, "type", "veth", "peer",
               "name", client.device, "netns", client.namespace)  # fmt: skip
            for namespace, address, device in (
                (server, link.server_address, link.server_device),
                (client.namespace, client.address, client.device),
            ):
                ip("-n", namespace, "addr", "add", f"{address}/24", "dev", device)
                ip("-n", namespace, "link", "set", device, "up")
        yield server, links
    finally:
        for namespace in namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "delete", namespace)


def shape(namespace: str, device: str, rate_kbit: int | None, latency_ms: int = 100) -> None:
    """Limit what leaves `device` to `rate_kbit` (tc tbf, a queue of `latency_ms`), or
    lift the limit (None)."""
    command = ["ip", "netns", "exec", namespace, "tc", "qdisc"]
    if rate_kbit is None:
        subprocess.run([*command, "del", "dev", device, "root"], check=True, timeout=20)
        return
    tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "16kbit", "latency", f"{latency_ms}ms"]
    subprocess.run(
        [*command, "add", "dev", device, "root", *tbf],
        check=True,
        timeout=20,
    )
