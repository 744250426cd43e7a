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
