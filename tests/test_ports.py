"""A fixed UDP port range and a public address for schools that forward ports.

aioice binds every host candidate to a random port; `webrtc.ice.gather_in` replaces its
`Connection.get_component_candidates` (a guard test below notices an upgrade that
changes what it replaces). The service in a subprocess: the candidates of its answers
and the UDP sockets it holds are in the range, the public address is offered on the
same port, a viewer finding the range used up gets a 503 problem and the next one plays
once a port is free again.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import pytest

from tests.conftest import Service, cli, run_service, write_site
from tests.whep_client import Viewer, eventually
from webrtc.ice import UdpPorts

FIRST, LAST = 41230, 41232
PUBLIC = "203.0.113.7"
ROOM = (
    'class = "6A1"\nalways_live = true\n[camera]\nkind = "test"\n'
    "[[camera_renditions]]\nwidth = 320\nheight = 180\nfps = 10\nbitrate_kbps = 150\n"
)


def test_aioice_still_binds_host_candidates_as_the_hook_expects() -> None:
    """gather_in re-implements the host part of this method: re-read aioice if it fails."""
    source = inspect.getsource(aioice.ice.Connection.get_component_candidates)
    assert "local_addr=(address, 0)" in source
    assert 'type="host"' in source and "relayed_candidate(" in source
    assert "server_reflexive_candidate(protocol, self.stun_server)" in source
    assert "self._protocols += host_protocols" in source
    parameters = inspect.signature(aioice.ice.Connection.get_component_candidates).parameters
    assert list(parameters) == ["self", "component", "addresses", "timeout"]
    relayed = inspect.signature(aioice.ice.relayed_candidate).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in relayed.values())
    assert {"turn_server", "turn_ssl", "turn_transport"} <= set(relayed)


def test_port_range_parsing() -> None:
    ports = UdpPorts.parse("40000-40199")
    assert (ports.first, ports.last, len(ports)) == (40000, 40199, 200)
    assert 40000 in ports and 40199 in ports and 40200 not in ports
    assert len(UdpPorts.parse("40000")) == 1
    for bad in ("x-y", "40199-40000", "80-90"):
        with pytest.raises(ValueError, match="not a port range"):
            UdpPorts.parse(bad)


@pytest.mark.parametrize(
    ("webrtc", "problem"),
    [
        ('max_viewers = 10\nudp_ports = "41000-41004"\n', "webrtc.udp_ports: 5 ports are too few"),
        ('udp_ports = "41000-40000"\n', "webrtc.udp_ports: not a port range"),
        ('public_address = "203.0.113.7"\n', "webrtc.public_address: public_address needs"),
        (
            'udp_ports = "41000-41999"\npublic_address = "school.vn"\n',
            "webrtc.public_address: not an IP address",
        ),
    ],
)
def test_check_config_explains_bad_port_settings(tmp_path: Path, webrtc: str, problem: str) -> None:
    config = write_site(tmp_path, {"r1": ROOM}, site=f'school = "T"\n[webrtc]\n{webrtc}')
    result = cli("check-config", "--config", str(config), check=False)
    assert result.returncode == 1
    assert re.search(rf"edge\.toml:\d+: {re.escape(problem)}", result.stderr), result.stderr


def family(pid: int) -> list[int]:
    """`pid` and its descendants (the service and its viewer workers)."""
    found, index = [pid], 0
    while index < len(found):
        for task in os.listdir(f"/proc/{found[index]}/task"):
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{found[index]}/task/{task}/children").read_text()
                found += [int(child) for child in children.split()]
        index += 1
    return found


def udp_ports_of(pid: int) -> set[int]:
    """Local ports of the UDP sockets process `pid` and its descendants hold (their fds
    matched to /proc/net)."""
    inodes = set()
    for member in family(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{member}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{member}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture(scope="module")
def ranged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("ports")
    config = write_site(
        tmp,
        {"r1": ROOM},
        # one viewer worker: it holds the whole range (two would split it 2 + 1)
        site='school = "T"\n[webrtc]\nmax_viewers = 3\nviewer_workers = 1\n'
        f'udp_ports = "{FIRST}-{LAST}"\npublic_address = "{PUBLIC}"\n',
    )
    with run_service(tmp, ["--config", str(config)]) as service:
        yield service


def candidates(answer: str) -> list[tuple[str, int, str]]:
    found = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ (\w+)", answer)
    return [(host, int(port), kind) for host, port, kind in found]


async def test_candidates_and_sockets_in_the_range(ranged: Service) -> None:
    before = udp_ports_of(ranged.process.pid)
    assert not before & set(range(FIRST, LAST + 1))
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", FIRST + 1))  # someone else holds one port of the range
    viewers = [Viewer(ranged.whep("r1"), ranged.token("r1"), 1, audio=False) for _ in range(3)]
    try:
        responses = [await viewer.connect() for viewer in viewers[:2]]
        assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
        offered = [candidates(r.text) for r in responses]
        for found in offered:
            (host, port, _), public = found
            assert host == "127.0.0.1" and port in (FIRST, LAST)
            assert public == (PUBLIC, port, "srflx")  # the forwarded port, one to one
            assert f"raddr 127.0.0.1 rport {port}" in responses[offered.index(found)].text
        assert {found[0][1] for found in offered} == {FIRST, LAST}
        held = udp_ports_of(ranged.process.pid) - before
        assert held == {FIRST, LAST}, held
        assert await eventually(lambda: all(v.stats["camera"].frames >= 5 for v in viewers[:2]), 15)
        # the range is used up: a clear 503 problem, the service goes on
        refused = await viewers[2].connect()
        assert refused.status_code == 503, refused.text
        assert refused.json()["title"] == "No free media port"
        assert f"{FIRST}-{LAST}" in refused.json()["detail"]
        assert ranged.health()["viewers"] == 2
        # one leaves: the next viewer gets its port and plays
        await viewers[0].close()
        viewers[2] = Viewer(ranged.whep("r1"), ranged.token("r1"), 1, audio=False)
        again = await viewers[2].connect()
        assert again.status_code == 201, again.text
        assert candidates(again.text)[0][1] == offered[0][0][1]
        assert await eventually(lambda: viewers[2].stats["camera"].frames >= 5, 15)
    finally:
        blocker.close()
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.close()
