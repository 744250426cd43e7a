"""Debian's Janus for the relay tests: a config folder, Janus in a network namespace of
the test's own, and a Python viewer of the streaming plugin (aiortc, Janus's HTTP API).

    with relay_hosts() as hosts, run_janus(tmp, hosts.janus, hosts.viewer_side) as janus:
        ... janus.api_url, janus.admin_url, janus.admin_secret

The star: Janus's namespace is the hub; the service's and the viewers' namespaces are
spokes, and the hub forwards between them (viewers reach the service's HTTP too).
Janus offers ICE only on the viewers' link (`ice_enforce_list`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.netns import Host, Link, ip, star

JANUS = "/usr/bin/janus"
DEBIAN_CONFIG = Path("/etc/janus/janus.jcfg")
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
HTTP_PORT, ADMIN_PORT = 8088, 7088


def available() -> bool:
    return Path(JANUS).exists() and DEBIAN_CONFIG.exists() and os.geteuid() == 0


@dataclass(frozen=True)
class RelayHosts:
    """Janus's namespace and the addresses it has on each spoke."""

    janus: str  # namespace
    service: Host  # the spoke the service runs in
    viewer: Host  # the spoke the viewers run in
    service_side: str  # Janus's address on the service's link
    viewer_side: str  # Janus's address on the viewers' link
    viewer_device: str  # Janus's device on the viewers' link

    def in_janus(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.janus, *args]


@contextlib.contextmanager
def relay_hosts(tag: str | None = None) -> Iterator[RelayHosts]:
    """Janus's hub namespace with two spokes (service, viewers), routed through the hub."""
    with star(2, tag) as (hub, links):
        service_link, viewer_link = links
        subprocess.run(
            ["ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            timeout=20,
        )
        for link in (service_link, viewer_link):
            _default_route(link)
        yield RelayHosts(
            hub,
            service_link.client,
            viewer_link.client,
            service_link.server_address,
            viewer_link.server_address,
            viewer_link.server_device,
        )


def _default_route(link: Link) -> None:
    ip("-n", link.client.namespace, "route", "add", "default", "via", link.server_address)


def write_config(
    folder: Path,
    *,
    admin_secret: str,
    ice_interface: str,
    rtp_ports: str = "20000-20999",
    debug_level: int = 3,
) -> Path:
    """Janus's config folder: Debian's janus.jcfg edited (token auth, admin secret, only
    the HTTP transport and the streaming plugin), HTTP on all addresses of its namespace
    with the Admin API, a streaming plugin without demo mountpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    text = DEBIAN_CONFIG.read_text()
    keep_plugins = {"libjanus_streaming.so"}
    plugins = sorted(p.name for p in (LIB / "plugins").glob("*.so") if p.name not in keep_plugins)
    transports = sorted(
        p.name for p in (LIB / "transports").glob("*.so") if p.name != "libjanus_http.so"
    )
    general = (
        "general: {\n"
        f'\tconfigs_folder = "{folder}"\n'
        f"\tdebug_level = {debug_level}\n"
        f'\tadmin_secret = "{admin_secret}"\n'
        "\ttoken_auth = true\n"
        "\tsession_timeout = 60\n"
    )
    text = text.replace("general: {\n", general, 1)
    text = text.replace('\tconfigs_folder = "/etc/janus"', "\t# configs_folder: above", 1)
    text = text.replace('\tadmin_secret = "janusoverlord"', "\t# admin_secret: above", 1)
    text = text.replace("\tdebug_level = 4", "\t# debug_level: above", 1)
    text = text.replace("media: {\n", f'media: {{\n\trtp_port_range = "{rtp_ports}"\n', 1)
    text = text.replace("nat: {\n", f'nat: {{\n\tice_enforce_list = "{ice_interface}"\n', 1)
    text = text.replace("plugins: {\n", f'plugins: {{\n\tdisable = "{",".join(plugins)}"\n', 1)
    text = text.replace(
        "transports: {\n", f'transports: {{\n\tdisable = "{",".join(transports)}"\n', 1
    )
    text = text.replace("events: {\n", "events: {\n\tbroadcast = false\n", 1)
    (folder / "janus.jcfg").write_text(text)
    (folder / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '\tjson = "plain"\n\tbase_path = "/janus"\n\thttp = true\n'
        f"\tport = {HTTP_PORT}\n\thttps = false\n}}\n"
        "admin: {\n"
        '\tadmin_base_path = "/admin"\n\tadmin_http = true\n'
        f"\tadmin_port = {ADMIN_PORT}\n\tadmin_https = false\n}}\n"
        'cors: {\n\tallow_origin = "*"\n}\n'
    )
    (folder / "janus.plugin.streaming.jcfg").write_text(
        f'general: {{\n\trtp_port_range = "{rtp_ports}"\n\tevents = false\n}}\n'
    )
    return folder


@dataclass
class Janus:
    process: subprocess.Popen[str]
    api_url: str  # as the service reaches it
    admin_url: str
    admin_secret: str
    viewer_api_url: str  # as the viewers (browsers) reach it
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None


def relay_config(tmp: Path, janus: Janus, *, always_live: bool = True) -> Path:
    """The embedded demo with a [relay] table pointing at this Janus; with `always_live`
    False its room has no lesson until staff start one."""
    folder = tmp / "config"
    shutil.copytree(Path(__file__).resolve().parent.parent / "edge" / "config" / "demo", folder)
    if not always_live:
        room = folder / "rooms" / "demo.toml"
        room.write_text(room.read_text().replace("always_live = true", "always_live = false"))
    (folder / "janus-admin.secret").write_text(janus.admin_secret + "\n")
    edge = folder / "edge.toml"
    edge.write_text(
        edge.read_text()
        + "\n[relay]\n"
        + 'kind = "janus"\n'
        + f'api_url = "{janus.api_url}"\n'
        + f'admin_url = "{janus.admin_url}"\n'
        + 'admin_secret_file = "janus-admin.secret"\n'
        + f'public_url = "{janus.viewer_api_url}"\n'
    )
    return edge


@contextlib.contextmanager
def run_janus(tmp: Path, hosts: RelayHosts, start_timeout: float = 30.0) -> Iterator[Janus]:
    """Janus in `hosts.janus`; stopped (SIGTERM, then SIGKILL) on exit."""
    admin_secret = secrets.token_hex(12)
    folder = write_config(tmp / "janus", admin_secret=admin_secret, ice_interface=hosts.viewer_side)
    log = tmp / "janus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            hosts.in_janus(JANUS, "-F", str(folder), "-C", str(folder / "janus.jcfg")),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    janus = Janus(
        process,
        f"http://{hosts.service_side}:{HTTP_PORT}/janus",
        f"http://{hosts.service_side}:{ADMIN_PORT}/admin",
        admin_secret,
        f"http://{hosts.viewer_side}:{HTTP_PORT}/janus",
        log,
    )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"janus exited: {log.read_text()[-3000:]}")
            # ready once its HTTP API answers /info from the service's side (as curl -sf did
            # before), not merely once its ports listen
            info = subprocess.run(
                hosts.service.command(sys.executable, "-c", GET_OK, f"{janus.api_url}/info"),
                capture_output=True,
                timeout=15,
            )
            if info.returncode == 0 and _listening(hosts, ADMIN_PORT):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"janus did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield janus
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listening(hosts: RelayHosts, port: int) -> bool:
    found = subprocess.run(
        hosts.in_janus("ss", "-ltnH", f"sport = :{port}"),
        capture_output=True,
        text=True,
        timeout=10,
    )
    return bool(found.stdout.strip())


# ------------------------------------------------------------ a streaming viewer


class JanusClientError(RuntimeError):
    pass


@dataclass
class StreamingViewer:
    """One viewer of a streaming mountpoint over Janus's HTTP API, with aiortc.

    `watch()` creates the Janus session (with the token), attaches the streaming plugin,
    asks to watch, answers Janus's offer (after ICE gathering) and starts; a task keeps
    the session alive (every 25 s) until `close()`. The tracks arrive by mid in `tracks`;
    reading them is up to the caller (bench/viewers.py's patches count RTP without
    decoding)."""

    api_url: str
    token: str
    mountpoint: int
    timeout: float = 20.0
    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    mids: dict[str, Any] = field(default_factory=dict)  # mid → RTCRtpReceiver
    session_id: int | None = None
    handle_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None
    _keepalive: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._client is not None
        body = {**body, "transaction": secrets.token_hex(6), "token": self.token}
        response = await self._client.post(f"{self.api_url}{path}", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        if answer.get("janus") == "error":
            raise JanusClientError(str(answer.get("error")))
        return answer

    async def _event(self, deadline: float) -> dict[str, Any]:
        """The next event with a plugin payload or JSEP (long-poll GET)."""
        assert self._client is not None
        while time.monotonic() < deadline:
            response = await self._client.get(
                f"{self.api_url}/{self.session_id}",
                params={"maxev": 1, "token": self.token},
                timeout=max(1.0, deadline - time.monotonic()) + 5,
            )
            response.raise_for_status()
            event: dict[str, Any] = response.json()
            self.events.append(event)
            if event.get("janus") == "event":
                return event
        raise JanusClientError("no event from Janus in time")

    async def watch(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout)
        deadline = time.monotonic() + self.timeout
        created = await self._post("", {"janus": "create"})
        self.session_id = int(created["data"]["id"])
        attached = await self._post(
            f"/{self.session_id}", {"janus": "attach", "plugin": "janus.plugin.streaming"}
        )
        self.handle_id = int(attached["data"]["id"])
        self._keepalive = asyncio.create_task(self._keep_alive())
        where = f"/{self.session_id}/{self.handle_id}"
        await self._post(
            where, {"janus": "message", "body": {"request": "watch", "id": self.mountpoint}}
        )
        event = await self._event(deadline)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data or "jsep" not in event:
            raise JanusClientError(f"watch refused: {data}")
        await self.pc.setRemoteDescription(
            RTCSessionDescription(event["jsep"]["sdp"], event["jsep"]["type"])
        )
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid is not None:
                self.mids[transceiver.mid] = transceiver.receiver
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)  # aiortc gathers before it returns
        local = self.pc.localDescription
        await self._post(
            where,
            {
                "janus": "message",
                "body": {"request": "start"},
                "jsep": {"type": local.type, "sdp": local.sdp},
            },
        )

    async def _keep_alive(self) -> None:
        for _ in range(10_000):  # 25 s each: ~70 hours at most
            await asyncio.sleep(25)
            with contextlib.suppress(httpx.HTTPError, JanusClientError):
                await self._post(f"/{self.session_id}", {"janus": "keepalive"})

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._client is not None and self.session_id is not None:
            with contextlib.suppress(httpx.HTTPError, JanusClientError):
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
        await self.pc.close()
        if self._client is not None:
            await self._client.aclose()


def admin_request(janus: Janus, hosts: RelayHosts, body: dict[str, Any]) -> dict[str, Any]:
    """An Admin API request from inside Janus's namespace (the test's own view)."""
    body = {"transaction": secrets.token_hex(6), "admin_secret": janus.admin_secret, **body}
    url = f"http://127.0.0.1:{ADMIN_PORT}/admin"
    done = subprocess.run(
        hosts.in_janus(sys.executable, "-c", POST_JSON, url, json.dumps(body)),
        capture_output=True,
        text=True,
        timeout=20,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Janus Admin API {url}: {done.stderr.strip()[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


POST_JSON = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST")
with urllib.request.urlopen(request, timeout=10) as answer:
    sys.stdout.write(answer.read().decode())
"""
"""POSTs argv[2] to argv[1] and prints the answer: Python's own, no curl needed."""

GET_OK = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
    sys.exit(0 if answer.status == 200 else 1)
"""
"""Exits 0 when a GET of argv[1] answers 200 (any error: a traceback and exit 1)."""


def mountpoint_info(
    janus: Janus, hosts: RelayHosts, mountpoint: int, secret: str | None = None
) -> dict[str, Any] | None:
    """The streaming plugin's `info` of a mountpoint (all of it with the secret), None
    when there is none."""
    answer = admin_request(
        janus,
        hosts,
        {
            "janus": "message_plugin",
            "plugin": "janus.plugin.streaming",
            "request": {"request": "info", "id": mountpoint}
            | ({"secret": secret} if secret else {}),
        },
    )
    response: dict[str, Any] = answer.get("response", {})
    info: dict[str, Any] | None = response.get("info")
    return info


def tokens(janus: Janus, hosts: RelayHosts) -> list[str]:
    answer = admin_request(janus, hosts, {"janus": "list_tokens"})
    return [str(t["token"]) for t in answer.get("data", {}).get("tokens", [])]


# ------------------------------------------------------------ viewers process

VIDEO_MIDS = ("camera", "board")


async def _viewers(args: argparse.Namespace) -> None:
    """N relay viewers: POST /relay/ROOM to the service, then watch on Janus; one JSON
    line `ready` once all have a keyframe on both video mids (`--cheap`: packets; or the
    time is up), then `snap` on stdin answers the counts, `quit` leaves (DELETE) and
    exits. With `--cheap`, bench/cheap_viewer.py's path counts RTP headers instead of
    aiortc's receivers (nothing decrypted; no keyframes counted)."""
    from bench.cheap_viewer import CheapPath

    if not args.cheap:
        from bench import viewers as counting  # patches aiortc: count RTP, decode nothing
    paths: dict[int, CheapPath] = {}  # id() of a viewer -> its cheap path

    # idle connections close before the service's 5 s keep-alive ends, else a join may
    # go out on a connection the service is closing at that moment (httpx.ReadError)
    limits = httpx.Limits(keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        joining = asyncio.Semaphore(4)

        async def join_one() -> tuple[dict[str, Any], StreamingViewer]:
            async with joining:
                answer = await client.post(
                    args.relay, headers={"Authorization": f"Bearer {args.token}"}
                )
                answer.raise_for_status()
                join: dict[str, Any] = answer.json()
                viewer = StreamingViewer(join["janus"], join["token"], int(join["mountpoint"]))
                await viewer.watch()
                if args.cheap:
                    paths[id(viewer)] = CheapPath(viewer.pc, {mid: mid for mid in viewer.mids})
                return join, viewer

        pairs = await asyncio.gather(*(join_one() for _ in range(args.count)))
        joined = [join for join, _ in pairs]
        watchers = [viewer for _, viewer in pairs]

        async def beat_all() -> list[int]:
            beats = [client.post(f"{args.relay}/{join['session']}") for join in joined]
            return [answer.status_code for answer in await asyncio.gather(*beats)]

        async def beating() -> None:  # as the page does, every beat_seconds
            for _ in range(10_000):
                await asyncio.sleep(float(joined[0]["beat_seconds"]))
                with contextlib.suppress(httpx.HTTPError):
                    await beat_all()

        beater = asyncio.create_task(beating())

        def counts() -> list[dict[str, dict[str, int]]]:
            if args.cheap:
                return [paths[id(viewer)].counts() for viewer in watchers]
            return [
                {
                    mid: dict(vars(counting.counts_of(receiver)))
                    for mid, receiver in viewer.mids.items()
                }
                for viewer in watchers
            ]

        deadline = time.monotonic() + args.ready_timeout
        while time.monotonic() < deadline:
            got = "packets" if args.cheap else "keyframes"
            if all(c.get(m, {}).get(got, 0) > 0 for c in counts() for m in VIDEO_MIDS):
                break
            await asyncio.sleep(0.2)
        print(json.dumps({"event": "ready", "joined": joined, "counts": counts()}), flush=True)
        loop = asyncio.get_running_loop()
        for _ in range(1000):
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "snap":
                print(json.dumps({"event": "snap", "counts": counts()}), flush=True)
                continue
            if line == "beat":
                print(json.dumps({"event": "beat", "statuses": await beat_all()}), flush=True)
                continue
            break
        beater.cancel()
        for path in paths.values():
            path.stop()
        for viewer in watchers:
            await viewer.close()
        statuses = []
        for join in joined:
            left = await client.delete(f"{args.relay}/{join['session']}")
            statuses.append(left.status_code)
        print(json.dumps({"event": "bye", "statuses": statuses}), flush=True)


async def _frame_widths(receiver: Any, seconds: float) -> list[tuple[float, int]]:
    """(seconds since the start, width) of each frame decoded for `seconds`."""
    started = time.monotonic()
    widths: list[tuple[float, int]] = []
    while (left := started + seconds - time.monotonic()) > 0:
        try:
            frame = await asyncio.wait_for(receiver.track.recv(), left)
        except TimeoutError:
            break
        widths.append((round(time.monotonic() - started, 3), int(frame.width)))
    return widths


async def _renditions(args: argparse.Namespace) -> None:
    """One decoding relay viewer doing what the page does about renditions: it watches
    (Janus sends the best substream), then asks for "save data" (PATCH), reads the
    state's substreams and asks Janus for them (`configure`), then reports a lossy link
    as the page's measures would (POST {"link"}); prints one JSON line of what it saw."""
    headers = {"Authorization": f"Bearer {args.token}"}
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=20, headers=headers) as client:
        answer = await client.post(args.relay)
        answer.raise_for_status()
        join: dict[str, Any] = answer.json()
        out["join_state"] = join["state"]
        session = f"{args.relay}/{join['session']}"
        viewer = StreamingViewer(join["janus"], join["token"], int(join["mountpoint"]))
        await viewer.watch()
        try:
            camera = viewer.mids["camera"]
            out["top"] = await _frame_widths(camera, 4.0)
            patched = await client.patch(session, json={"save_data": True})
            out["patch_status"] = patched.status_code
            state = (await client.get(session)).json()
            out["saving_state"] = state
            streams = [
                {"mid": mid, "send": sub is not None, "substream": sub or 0}
                for mid, sub in state["substreams"].items()
            ]
            where = f"/{viewer.session_id}/{viewer.handle_id}"
            for stream in streams:  # as the page does: one per mid (Janus 1.1)
                body = {"request": "configure", **stream}
                await viewer._post(where, {"janus": "message", "body": body})
            out["saving"] = await _frame_widths(camera, 5.0)
            await client.patch(session, json={"save_data": False})
            lossy = {"interval": 2.0, "bytes": 200_000, "packets": 700, "lost": 300, "rtt": 0.05}
            stepped = await client.post(session, json={"link": lossy})
            out["lossy_status"] = stepped.status_code
            out["lossy_state"] = stepped.json()
            bad = await client.post(session, json={"link": {**lossy, "lost": -1}})
            out["bad_report_status"] = bad.status_code
        finally:
            await viewer.close()
            await client.delete(session)
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="relay viewers for the Janus tests")
    parser.add_argument("--relay", required=True, help="http://SERVICE/relay/ROOM")
    parser.add_argument("--token", required=True, help="a join token")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--ready-timeout", type=float, default=20.0)
    parser.add_argument("--renditions", action="store_true", help="one decoding viewer")
    parser.add_argument(
        "--cheap", action="store_true", help="cheap load viewers (bench/cheap_viewer.py)"
    )
    args = parser.parse_args()
    asyncio.run(_renditions(args) if args.renditions else _viewers(args))


if __name__ == "__main__":
    main()
